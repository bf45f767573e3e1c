//! Parser and argument tests: the shipped manifests load, every class of bad manifest is
//! reported at its file, line and field, and arguments are checked the way a model needs.

use std::path::Path;

use serde_json::{Value, json};

use super::*;

fn shipped(file: &str) -> Manifest {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tools").join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    parse(Path::new("tools").join(file).as_path(), &text).unwrap()
}

/// Parses `text` as `tools/demo.toml` and returns the error as displayed.
fn error(text: &str) -> String {
    match parse(Path::new("tools/demo.toml"), text) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(error) => error.to_string(),
    }
}

fn demo(text: &str) -> Manifest {
    parse(Path::new("tools/demo.toml"), text).unwrap()
}

const HTTP: &str = "[http]\nurl = \"https://example.com/x\"\n";

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn shipped_manifests_parse() {
    let weather = shipped("get_weather.toml");
    assert_eq!(weather.name(), "get_weather");
    assert_eq!(weather.mode(), Mode::Inline { within: Duration::from_millis(2500) });
    assert_eq!(weather.retries(), 1);
    assert!(weather.annotations().read_only && weather.annotations().open_world);
    let names: Vec<&str> = weather.params().iter().map(|param| param.name.as_str()).collect();
    assert_eq!(names, ["latitude", "longitude", "place", "unit"]);

    let search = shipped("web_search.toml");
    assert_eq!(search.mode(), Mode::Job);
    assert_eq!(search.concurrency(), Some(4));
    assert_eq!(search.templates().secrets().collect::<Vec<_>>(), ["BRAVE_SEARCH_API_KEY"]);
    assert_eq!(search.root_dir(), Path::new("."));
}

#[test]
fn source_schema_lists_params_with_their_constraints() {
    let schema = Value::Object(shipped("get_weather.toml").source_schema());
    assert_eq!(
        schema,
        json!({
            "type": "object",
            "properties": {
                "latitude": {"type": "number", "minimum": -90, "maximum": 90},
                "longitude": {"type": "number", "minimum": -180, "maximum": 180},
                "place": {"type": "string", "description": "Its name", "maxLength": 80},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"], "default": "celsius"},
            },
            "required": ["latitude", "longitude"],
            "additionalProperties": false,
        })
    );
}

#[test]
fn serde_errors_name_file_line_and_field() {
    let text = "name = \"demo\"\ndescription = \"d\"\n\n[params.latitude]\ntype = \"float\"\n";
    assert_eq!(
        error(text),
        "tools/demo.toml:5: params.latitude.type: unknown variant `float`, expected one of \
         `string`, `integer`, `number`, `boolean`"
    );
    let text = "name = \"demo\"\ndescription = \"d\"\ntimout = \"3s\"\n";
    assert!(
        error(text)
            .starts_with("tools/demo.toml:3: timout: unknown field `timout`, expected one of"),
        "{}",
        error(text)
    );
    let text = format!("name = \"demo\"\ndescription = \"d\"\ntimeout = \"3 parsecs\"\n{HTTP}");
    assert!(error(&text).starts_with("tools/demo.toml:3: timeout: "), "{}", error(&text));
    let text =
        format!("name = \"demo\"\ndescription = \"d\"\n{HTTP}query = {{ count = {{ a = 1 }} }}\n");
    assert_eq!(
        error(&text),
        "tools/demo.toml:5: http.query.count: a query value is text, a number, a boolean or a \
         list of them"
    );
    let text = format!("name = \"demo\"\ndescription = \"d\"\n{HTTP}method = \"FETCH\"\n");
    assert!(error(&text).starts_with("tools/demo.toml:5: http.method: unknown variant `FETCH`"));
    let text = format!("name = \"demo\"\ndescription = \"d\"\n{HTTP}result = 3\n");
    assert_eq!(
        error(&text),
        "tools/demo.toml:5: http.result: invalid type: integer `3`, expected a JSON pointer like \
         \"/current\" or a table of name = pointer"
    );
}

#[test]
fn toml_syntax_errors_have_a_line_and_no_field() {
    let text = "name = \"demo\"\ndescription = \"d\n";
    assert!(error(text).starts_with("tools/demo.toml:2: "), "{}", error(text));
    assert_eq!(error("name = \"demo\"\nname = \"x\"\n"), "tools/demo.toml:2: duplicate key");
}

#[test]
fn missing_fields_are_named() {
    assert_eq!(error("name = \"demo\"\n"), "tools/demo.toml:1: missing field `description`");
    let text = "name = \"demo\"\ndescription = \"d\"\n[params.city]\ndescription = \"x\"\n";
    assert_eq!(error(text), "tools/demo.toml:3: params.city: missing field `type`");
}

#[test]
fn name_must_be_valid_and_match_the_file() {
    let text = format!("description = \"d\"\nname = \"Demo\"\n{HTTP}");
    assert_eq!(
        error(&text),
        "tools/demo.toml:2: name: `Demo` is not a tool name: 2 to 48 lower-case letters, digits \
         and underscores, starting with a letter"
    );
    let text = format!("description = \"d\"\nname = \"other\"\n{HTTP}");
    assert_eq!(
        error(&text),
        "tools/demo.toml:2: name: `other` must match the file name; rename one so both say the \
         same (file: demo.toml)"
    );
}

#[test]
fn exactly_one_backend() {
    assert_eq!(
        error("name = \"demo\"\ndescription = \"d\"\n"),
        "tools/demo.toml: declare a backend: an [http] or a [command] table"
    );
    let text = format!(
        "name = \"demo\"\ndescription = \"d\"\n{HTTP}\n[command]\nprogram = \"/bin/cat\"\n"
    );
    assert_eq!(
        error(&text),
        "tools/demo.toml:6: command: declare one backend: [http] or [command], not both"
    );
}

#[test]
fn retries_need_an_idempotent_call() {
    let text =
        format!("name = \"demo\"\ndescription = \"d\"\nretries = 2\n{HTTP}method = \"POST\"\n");
    assert_eq!(
        error(&text),
        "tools/demo.toml:3: retries: a POST request may not be repeated safely; set \
         annotations.idempotent = true if it can, or remove retries"
    );
    let idempotent =
        text.replace("retries = 2\n", "retries = 2\n[annotations]\nidempotent = true\n");
    assert_eq!(demo(&idempotent).retries(), 2);
    let text =
        "name = \"demo\"\ndescription = \"d\"\nretries = 1\n[command]\nprogram = \"/bin/cat\"\n";
    assert!(error(text).starts_with("tools/demo.toml:3: retries: a command may not be repeated"));
    let text = format!("name = \"demo\"\ndescription = \"d\"\nretries = 9\n{HTTP}");
    assert_eq!(error(&text), "tools/demo.toml:3: retries: at most 5");
}

#[test]
fn timeouts_are_capped_by_mode() {
    let text = format!("name = \"demo\"\ndescription = \"d\"\ntimeout = \"45s\"\n{HTTP}");
    assert_eq!(
        error(&text),
        "tools/demo.toml:3: timeout: 45s is over the 30s limit for inline tools; slow tools \
         should use mode = \"job\""
    );
    let job = text.replace("timeout", "mode = \"job\"\ntimeout");
    assert_eq!(demo(&job).timeout(), Duration::from_secs(45));
    let text =
        format!("name = \"demo\"\ndescription = \"d\"\nmode = \"job\"\ntimeout = \"6m\"\n{HTTP}");
    assert_eq!(error(&text), "tools/demo.toml:4: timeout: 6m is over the 5m limit for job tools");
    let default = demo(&format!("name = \"demo\"\ndescription = \"d\"\nmode = \"job\"\n{HTTP}"));
    assert_eq!(default.timeout(), DEFAULT_JOB_TIMEOUT);
}

#[test]
fn template_errors_are_reported_at_the_field_that_holds_them() {
    let base = "name = \"demo\"\ndescription = \"d\"\n[params.city]\ntype = \"string\"\n";
    let text = format!("{base}[say]\nfinished = \"It is {{{{ result.temp \"\n{HTTP}");
    assert_eq!(
        error(&text),
        "tools/demo.toml:6: say.finished: template syntax error: unexpected end of input, \
         expected end of variable block"
    );
    let text = format!("{base}{HTTP}query = {{ q = \"{{{{ town }}}}\" }}\n");
    assert_eq!(
        error(&text),
        "tools/demo.toml:7: http.query.q: `town` is not a parameter of demo; declared: city"
    );
    let text = format!("{base}{HTTP}headers = {{ X-Home = \"{{{{ env.HOME }}}}\" }}\n");
    assert_eq!(
        error(&text),
        "tools/demo.toml:7: http.headers.X-Home: `env` is not a parameter of demo; declared: city"
    );
    let text = format!("{base}{HTTP}headers = {{ X-Key = \"{{{{ secret.api_key }}}}\" }}\n");
    assert_eq!(
        error(&text),
        "tools/demo.toml:7: http.headers.X-Key: secret name `api_key` must be capital letters, \
         digits and underscores, starting with a letter"
    );
    let text = format!("{base}{HTTP}headers = {{ X-Key = \"{{{{ secret[city] }}}}\" }}\n");
    assert_eq!(
        error(&text),
        "tools/demo.toml:7: http.headers.X-Key: write a secret as `secret.NAME`, with the name \
         spelled out"
    );
    let text = format!("{base}[say]\nstarted = \"Using {{{{ secret.KEY }}}}\"\n{HTTP}");
    assert_eq!(
        error(&text),
        "tools/demo.toml:6: say.started: say lines are spoken, so they cannot use secrets"
    );
    let text = format!("{base}[say]\nstarted = \"{{{{ result }}}}\"\n{HTTP}");
    assert_eq!(
        error(&text),
        "tools/demo.toml:6: say.started: `result` is not a parameter of demo: `result` exists \
         only in say.finished"
    );
    let text = format!(
        "{base}{HTTP}method = \"POST\"\nbody = {{ filters = [\"ok\", \"{{{{ nope }}}}\"] }}\n"
    );
    assert_eq!(
        error(&text),
        "tools/demo.toml:8: http.body.filters[1]: `nope` is not a parameter of demo; declared: city"
    );
    let text = format!(
        "{base}[command]\nprogram = \"/bin/echo\"\nargs = [\n  \"a\",\n  \"{{{{ args.town }}}}\",\n]\n"
    );
    assert_eq!(
        error(&text),
        "tools/demo.toml:9: command.args[1]: `args.town` is not a parameter of demo; declared: city"
    );
}

#[test]
fn http_sections_are_checked() {
    let base = "name = \"demo\"\ndescription = \"d\"\n[http]\n";
    assert_eq!(
        error(&format!("{base}url = \"ftp://example.com\"\n")),
        "tools/demo.toml:4: http.url: must start with https:// or http://"
    );
    assert_eq!(
        error(&format!("{base}url = \"https://exa mple.com\"\n")),
        "tools/demo.toml:4: http.url: not a URL: invalid international domain name"
    );
    assert_eq!(
        error(&format!(
            "{base}url = \"https://example.com\"\nheaders = {{ \"Bad Name\" = \"x\" }}\n"
        )),
        "tools/demo.toml:5: http.headers.Bad Name: `Bad Name` is not a valid header name"
    );
    assert_eq!(
        error(&format!(
            "{base}url = \"https://example.com\"\nheaders = {{ X-A = \"a\\r\\nX-B: b\" }}\n"
        )),
        "tools/demo.toml:5: http.headers.X-A: header values cannot contain line breaks"
    );
    assert_eq!(
        error(&format!("{base}url = \"https://example.com\"\nresult = {{ t = \"current.t\" }}\n")),
        "tools/demo.toml:5: http.result.t: `current.t` is not a JSON pointer; write it like \
         \"/current/temperature_2m\""
    );
    assert_eq!(
        error(&format!("{base}url = \"https://example.com\"\nmax_response_bytes = 99999999\n")),
        "tools/demo.toml:5: http.max_response_bytes: at most 8388608 (8 MiB)"
    );
    assert_eq!(
        error(&format!("{base}url = \"https://example.com\"\nbody = {{ a = 1 }}\n")),
        "tools/demo.toml:5: http.body: GET and HEAD requests carry no body; use query"
    );
}

#[test]
fn params_are_checked() {
    let base = "name = \"demo\"\ndescription = \"d\"\n";
    assert_eq!(
        error(&format!("{base}[params.args]\ntype = \"string\"\n{HTTP}")),
        "tools/demo.toml:3: params.args: `args` is reserved for templates; pick another name"
    );
    assert_eq!(
        error(&format!("{base}[params.Town]\ntype = \"string\"\n{HTTP}")),
        "tools/demo.toml:3: params.Town: `Town` is not a parameter name: lower-case letters, \
         digits and underscores, starting with a letter"
    );
    assert_eq!(
        error(&format!("{base}[params.n]\ntype = \"integer\"\nmin = 5\nmax = 1\n{HTTP}")),
        "tools/demo.toml:5: params.n.min: 5 is above max 1"
    );
    assert_eq!(
        error(&format!("{base}[params.n]\ntype = \"string\"\nmax = 1\n{HTTP}")),
        "tools/demo.toml:5: params.n.max: only integer and number parameters have bounds"
    );
    assert_eq!(
        error(&format!("{base}[params.n]\ntype = \"integer\"\nenum = [1, \"two\"]\n{HTTP}")),
        "tools/demo.toml:5: params.n.enum[1]: \"two\" is not a valid integer"
    );
    assert_eq!(
        error(&format!(
            "{base}[params.n]\ntype = \"integer\"\nrequired = true\ndefault = 3\n{HTTP}"
        )),
        "tools/demo.toml:6: params.n.default: a required parameter never uses its default; drop \
         one of them"
    );
    assert_eq!(
        error(&format!("{base}[params.n]\ntype = \"integer\"\nmax = 10\ndefault = 30\n{HTTP}")),
        "tools/demo.toml:6: params.n.default: `n` must be a whole number of at most 10; got 30"
    );
}

#[test]
fn command_sections_are_checked() {
    let base = "name = \"demo\"\ndescription = \"d\"\n[command]\n";
    assert_eq!(
        error(&format!("{base}program = \"{{{{ p }}}}\"\n")),
        "tools/demo.toml:4: command.program: the program is not a template; put values in args"
    );
    assert_eq!(
        error(&format!("{base}program = \"/bin/cat\"\nenv = [\"OK_KEY\", \"home\"]\n")),
        "tools/demo.toml:5: command.env[1]: `home` is not a secret name: capital letters, digits \
         and underscores, starting with a letter"
    );
    let manifest = demo(&format!("{base}program = \"/bin/cat\"\n"));
    assert!(!manifest.annotations().open_world, "commands are closed-world by default");
}

#[test]
fn arguments_are_checked_and_normalised() {
    let weather = shipped("get_weather.toml");
    let check = |args: Value| weather.check_arguments(&object(args));
    assert_eq!(
        check(json!({"latitude": "north", "longitude": 13.4})),
        Err("Invalid arguments for get_weather: `latitude` must be a number from -90 to 90; got \
             \"north\"."
            .to_owned())
    );
    assert_eq!(
        check(
            json!({"latitude": 52.5, "longitude": 13.4, "place": "  Berlin ", "unit": "Fahrenheit"})
        ),
        Ok(object(
            json!({"latitude": 52.5, "longitude": 13.4, "place": "Berlin", "unit": "fahrenheit"})
        ))
    );
    // Defaults fill in; an empty optional string counts as absent; numeric text is a number.
    assert_eq!(
        check(json!({"latitude": "52.5", "longitude": 13, "place": " "})),
        Ok(object(json!({"latitude": 52.5, "longitude": 13, "unit": "celsius"})))
    );
    assert_eq!(
        check(json!({"longitude": 200, "city": "Berlin", "unit": "kelvin"})),
        Err("Invalid arguments for get_weather: `city` is not a parameter (use latitude, longitude, \
             place, unit); `latitude` is required: a number from -90 to 90; `longitude` must be a \
             number from -180 to 180; got 200; `unit` must be one of \"celsius\", \"fahrenheit\"; \
             got \"kelvin\"."
            .to_owned())
    );
    assert_eq!(
        check(json!({"latitude": null, "longitude": 1})),
        Err("Invalid arguments for get_weather: `latitude` is required: a number from -90 to 90."
            .to_owned())
    );

    let search = shipped("web_search.toml");
    let check = |args: Value| search.check_arguments(&object(args));
    assert_eq!(
        check(json!({"query": " news ", "count": 3.0})),
        Ok(object(json!({"query": "news", "count": 3})))
    );
    assert_eq!(
        check(json!({"query": "", "count": 2.5})),
        Err("Invalid arguments for web_search: `query` must not be empty; `count` must be a \
             whole number from 1 to 10; got 2.5."
            .to_owned())
    );
    let long = "x".repeat(401);
    assert!(
        check(json!({ "query": long }))
            .unwrap_err()
            .starts_with("Invalid arguments for web_search: `query` must be text of at most 400 characters; got \"xxx")
    );
}

#[test]
fn booleans_accept_true_and_false_as_text() {
    let manifest = demo(&format!(
        "name = \"demo\"\ndescription = \"d\"\n[params.fresh]\ntype = \"boolean\"\n{HTTP}"
    ));
    assert_eq!(
        manifest.check_arguments(&object(json!({"fresh": "TRUE"}))),
        Ok(object(json!({"fresh": true})))
    );
    assert_eq!(
        manifest.check_arguments(&object(json!({"fresh": 1}))),
        Err("Invalid arguments for demo: `fresh` must be true or false; got 1.".to_owned())
    );
    let none = demo(&format!("name = \"demo\"\ndescription = \"d\"\n{HTTP}"));
    assert_eq!(
        none.check_arguments(&object(json!({"x": 1}))),
        Err("Invalid arguments for demo: it takes no arguments, but got `x`.".to_owned())
    );
}

#[test]
fn say_lines_render_with_arguments_result_and_error() {
    let weather = shipped("get_weather.toml");
    let args = object(
        json!({"latitude": 52.52, "longitude": 13.41, "place": "Berlin", "unit": "celsius"}),
    );
    let result = json!({"temperature": 12.6, "wind_speed": 9.7, "weather_code": 3, "time": "2026-05-01T12:00"});
    assert_eq!(
        weather.say_finished(&args, &result).unwrap().as_deref(),
        Some(
            "In Berlin it is 13 degrees Celsius and overcast, with wind at 10 kilometres per hour."
        )
    );
    let unknown_sky =
        json!({"temperature": -1.2, "wind_speed": 0, "weather_code": 77, "time": "t"});
    let no_place = object(json!({"latitude": 1, "longitude": 2, "unit": "fahrenheit"}));
    assert_eq!(
        weather.say_finished(&no_place, &unknown_sky).unwrap().as_deref(),
        Some("It is -1 degrees Fahrenheit and changeable, with wind at 0 kilometres per hour.")
    );
    assert_eq!(
        weather.say_failed(&args, "The service is down.").unwrap().as_deref(),
        Some("I couldn't get the weather: The service is down.")
    );
    assert_eq!(weather.say_started(&args).unwrap(), None);
    // A result without the field the line needs is an error, not an empty phrase.
    assert!(weather.say_finished(&args, &json!({})).is_err());
}

#[test]
fn load_dir_loads_good_files_and_reports_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let good = |name: &str| format!("name = \"{name}\"\ndescription = \"d\"\n{HTTP}");
    std::fs::write(dir.path().join("zeta.toml"), good("zeta")).unwrap();
    std::fs::write(dir.path().join("alpha.toml"), good("alpha")).unwrap();
    std::fs::write(dir.path().join("broken.toml"), "name = ").unwrap();
    std::fs::write(dir.path().join("notes.md"), "not a manifest").unwrap();
    let (manifests, errors) = load_dir(dir.path());
    let names: Vec<&str> = manifests.iter().map(Manifest::name).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].path, dir.path().join("broken.toml"));
    assert_eq!(errors[0].line, Some(1));

    let (manifests, errors) = load_dir(&dir.path().join("missing"));
    assert!(manifests.is_empty() && errors.is_empty());

    let (manifests, errors) = load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tools")));
    assert_eq!(errors, []);
    assert_eq!(
        manifests.iter().map(Manifest::name).collect::<Vec<_>>(),
        ["get_weather", "web_search"]
    );
}

#[test]
fn the_file_format_has_a_json_schema() {
    let schema = json_schema();
    assert_eq!(schema["title"], "offstage tool manifest");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], json!(["name", "description"]));
    assert_eq!(schema["properties"]["name"]["pattern"], "^[a-z][a-z0-9_]{1,47}$");
    assert_eq!(schema["properties"]["timeout"]["examples"], json!(["8s"]));
    let param = &schema["$defs"]["RawParam"];
    assert_eq!(param["properties"]["type"]["$ref"], "#/$defs/ParamType");
    let types: Vec<&Value> = schema["$defs"]["ParamType"]["oneOf"]
        .as_array()
        .unwrap()
        .iter()
        .map(|kind| &kind["const"])
        .collect();
    assert_eq!(types, [&json!("string"), &json!("integer"), &json!("number"), &json!("boolean")]);
    let result = &schema["$defs"]["ResultSpec"]["anyOf"];
    assert_eq!(result[0]["type"], "string");
    assert_eq!(result[1]["type"], "object");
}

#[test]
fn manifests_are_cheap_shared_values() {
    fn shared<T: Clone + Send + Sync + std::fmt::Debug + 'static>() {}
    shared::<Manifest>();
    shared::<ManifestError>();
    shared::<BackendError>();
}
