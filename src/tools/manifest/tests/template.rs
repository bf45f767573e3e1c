//! Templating tests: what renders how, what is refused when compiling, and that secrets are
//! resolved once, reported by name when missing, and scrubbed from errors.

use serde_json::json;

use super::*;

fn templates(params: &[&str]) -> Templates {
    Templates::new("demo", params.iter().map(|name| (*name).to_owned()).collect())
}

fn args(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn secrets(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect()
}

#[test]
fn text_rendering_prints_values_for_machines_and_speech() {
    let mut set = templates(&["city", "days", "fresh", "tags", "note"]);
    set.add(
        "t",
        "{{ city }}|{{ days }}|{{ fresh }}|{{ tags }}|{{ note }}|{{ args.city }}",
        Scope::Request,
    )
    .unwrap();
    let given = args(json!({"city": "São <Paulo>", "days": 3, "fresh": true, "tags": ["a", 1]}));
    let (bindings, _) = set.request_bindings(&given, &secrets(&[]), &[]).unwrap();
    // No HTML escaping, lower-case booleans, JSON lists, and an absent optional param is none.
    assert_eq!(set.render("t", &bindings).unwrap(), "São <Paulo>|3|true|[\"a\",1]||São <Paulo>");
}

#[test]
fn a_single_expression_keeps_its_json_type() {
    let mut set = templates(&["count", "query", "note"]);
    let tree = json!({
        "count": "{{ count }}",
        "label": "n={{ count }}",
        "query": "{{- query | upper -}}",
        "note": "{{ note }}",
        "nested": [{"n": "{{ count + 1 }}"}, 7, false],
    });
    set.add_tree("body", &tree, Scope::Request).unwrap();
    let (bindings, _) = set
        .request_bindings(&args(json!({"count": 5, "query": "rust"})), &secrets(&[]), &[])
        .unwrap();
    assert_eq!(
        set.render_tree("body", &tree, &bindings).unwrap(),
        json!({"count": 5, "label": "n=5", "query": "RUST", "nested": [{"n": 6}, 7, false]})
    );
}

#[test]
fn undefined_values_are_errors_not_empty_strings() {
    let mut set = templates(&[]);
    set.add("say.finished", "It is {{ result.temperature }}.", Scope::Finished).unwrap();
    let bindings = set.say_bindings(&Map::new(), Some(("result", json!({"temp": 3}))));
    assert_eq!(
        set.render("say.finished", &bindings),
        Err(TemplateError::Render {
            field: "say.finished".to_owned(),
            message: "undefined value (in say.finished:1)".to_owned(),
        })
    );
    set.add("v", "{{ result.temperature }}", Scope::Finished).unwrap();
    assert!(matches!(set.render_value("v", &bindings), Err(TemplateError::Render { .. })));
    set.add("d", "{{ result.temperature | default('unknown') }}", Scope::Finished).unwrap();
    assert_eq!(set.render("d", &bindings).unwrap(), "unknown");
}

#[test]
fn names_are_checked_when_compiling() {
    let mut set = templates(&["city"]);
    let invalid = |error: Result<(), TemplateError>| match error {
        Err(TemplateError::Invalid(message)) => message,
        other => panic!("expected an invalid template, got {other:?}"),
    };
    assert_eq!(
        invalid(set.add("a", "{{ town }}", Scope::Request)),
        "`town` is not a parameter of demo; declared: city"
    );
    assert_eq!(
        invalid(set.add("b", "{{ error }}", Scope::Finished)),
        "`error` is not a parameter of demo: `error` exists only in say.failed"
    );
    assert_eq!(
        invalid(set.add("c", "{{ secret.KEY }}", Scope::Failed)),
        "say lines are spoken, so they cannot use secrets"
    );
}

#[test]
fn loop_variables_and_globals_are_not_parameters() {
    let mut set = templates(&["city"]);
    set.add(
        "d",
        "{% for x in [1, 2] %}{{ x }}{{ loop.index }}{% endfor %}{{ range(2) }}",
        Scope::Request,
    )
    .unwrap();
    let (bindings, _) = set.request_bindings(&Map::new(), &secrets(&[]), &[]).unwrap();
    assert_eq!(set.render("d", &bindings).unwrap(), "1122[0,1]");
}

#[test]
fn secrets_are_resolved_by_name_and_missing_ones_named() {
    let mut set = templates(&["q"]);
    set.add("h", "Bearer {{ secret.API_KEY }}", Scope::Request).unwrap();
    set.add("u", "{{ secret.OTHER_KEY }}{{ q }}", Scope::Request).unwrap();
    assert_eq!(set.secrets().collect::<Vec<_>>(), ["API_KEY", "OTHER_KEY"]);

    let source = secrets(&[
        ("API_KEY", "s3cr3t-value"),
        ("OTHER_KEY", "other-value"),
        ("EXTRA", "extra-value"),
    ]);
    let (bindings, resolved) =
        set.request_bindings(&args(json!({"q": "x"})), &source, &["EXTRA".to_owned()]).unwrap();
    assert_eq!(set.render("h", &bindings).unwrap(), "Bearer s3cr3t-value");
    assert_eq!(resolved.keys().collect::<Vec<_>>(), ["API_KEY", "EXTRA", "OTHER_KEY"]);
    assert_eq!(bindings.redact("token s3cr3t-value leaked"), "token *** leaked");
    assert!(!format!("{bindings:?}").contains("s3cr3t"));

    let closure = |name: &str| (name == "API_KEY").then(|| "v".to_owned());
    assert_eq!(
        set.request_bindings(&Map::new(), &closure, &[]).unwrap_err().to_string(),
        "demo needs the environment variable OTHER_KEY"
    );
    // An empty value counts as missing: an empty key only produces a confusing 401 later.
    let empty = secrets(&[("API_KEY", ""), ("OTHER_KEY", "o")]);
    assert!(matches!(
        set.request_bindings(&Map::new(), &empty, &[]),
        Err(TemplateError::MissingSecret { name, .. }) if name == "API_KEY"
    ));
}

#[test]
fn syntax_errors_say_what_is_wrong() {
    let mut set = templates(&[]);
    assert_eq!(
        set.add("a", "{% if %}", Scope::Request),
        Err(TemplateError::Invalid("template syntax error: unexpected end of block".to_owned()))
    );
    assert_eq!(
        set.add("b", "line one\n{{ x", Scope::Request),
        Err(TemplateError::Invalid(
            "template syntax error on its line 2: unexpected end of input, expected end of \
             variable block"
                .to_owned()
        ))
    );
}

#[test]
fn single_expressions_are_recognised() {
    assert_eq!(single_expression("{{ count }}"), Some("count"));
    assert_eq!(single_expression(" {{- a + 1 -}} "), Some("a + 1"));
    assert_eq!(single_expression("{{ a }} {{ b }}"), None);
    assert_eq!(single_expression("x{{ a }}"), None);
    assert_eq!(single_expression("{% if a %}{{ a }}{% endif %}"), None);
}

#[test]
fn secret_names_follow_the_environment_convention() {
    for good in ["A", "API_KEY", "K2"] {
        assert!(is_secret_name(good), "{good}");
    }
    for bad in ["", "api_key", "2K", "_A", "A-B"] {
        assert!(!is_secret_name(bad), "{bad}");
    }
}
