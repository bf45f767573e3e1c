//! Manifest templating: minijinja templates compiled when a manifest is parsed and rendered per
//! call with the arguments, the secrets a template names and, for `say` lines, the result or
//! the error. It knows nothing of HTTP, processes or the environment; secrets arrive through
//! [`SecretSource`].
//!
//! Rules a manifest author can rely on: an undefined name is an error, never an empty string;
//! nothing is HTML-escaped; `true`/`false` print in lower case, `none` prints as nothing, lists
//! and maps print as JSON; a value that is exactly one `{{ expr }}` keeps the JSON type of the
//! expression (see [`Templates::render_value`]).

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
};

use minijinja::{
    AutoEscape, Environment, ErrorKind, State, UndefinedBehavior, Value as JinjaValue,
    value::{Serde, ValueKind},
};
use serde_json::{Map, Value};

/// Where secret values come from. The config layer implements it over the environment; tests use
/// a map. Names follow `^[A-Z][A-Z0-9_]*$`.
pub trait SecretSource: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

impl<F> SecretSource for F
where
    F: Fn(&str) -> Option<String> + Send + Sync,
{
    fn get(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl SecretSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl SecretSource for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).cloned()
    }
}

/// What a template may name besides the parameters and `args`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Backend templates (`http.*`, `command.args`): may read `secret.NAME`.
    Request,
    /// `say.started`: arguments only. Say lines are spoken, so no scope but `Request` sees secrets.
    Started,
    /// `say.finished`: also `result`.
    Finished,
    /// `say.failed`: also `error`, the failure's speakable message.
    Failed,
}

/// Names no parameter may take, because templates use them for something else.
pub const RESERVED_NAMES: &[&str] =
    &["args", "secret", "result", "error", "loop", "self", "true", "false", "none"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    /// Found while parsing a manifest; the caller adds the file, line and field.
    #[error("{0}")]
    Invalid(String),
    /// A template failed while rendering. The message never contains a secret value.
    #[error("{field}: {message}")]
    Render { field: String, message: String },
    #[error("{tool} needs the environment variable {name}")]
    MissingSecret { tool: String, name: String },
}

/// One manifest's templates, keyed by the field that holds them (`http.query.latitude`,
/// `http.body.filters[0]`, `say.finished`).
pub struct Templates {
    tool: String,
    env: Environment<'static>,
    params: Vec<String>,
    /// Field → the inner expression when the template is exactly one `{{ expr }}`.
    fields: BTreeMap<String, Option<String>>,
    /// Secrets named by request templates; resolved once per call.
    secrets: BTreeSet<String>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("tool", &self.tool)
            .field("fields", &self.fields.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets)
            .finish()
    }
}

/// The values one render sees. Secret values are kept only to scrub them from error messages.
pub struct Bindings {
    context: JinjaValue,
    secret_values: Vec<String>,
}

impl fmt::Debug for Bindings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bindings").field("secrets", &self.secret_values.len()).finish()
    }
}

impl Bindings {
    /// Replaces every secret value in `text` with `***`.
    pub fn redact(&self, text: &str) -> String {
        redact(text, &self.secret_values)
    }
}

/// Replaces every non-empty value of `secrets` in `text` with `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut text = text.to_owned();
    for secret in secrets.iter().filter(|secret| !secret.is_empty()) {
        text = text.replace(secret.as_str(), "***");
    }
    text
}

impl Templates {
    /// An empty set for the tool `tool`, whose declared parameters are `params`.
    pub fn new(tool: &str, params: Vec<String>) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // Nothing here is HTML: URLs, headers, JSON bodies, argv entries and speech.
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_formatter(format_value);
        Templates {
            tool: tool.to_owned(),
            env,
            params,
            fields: BTreeMap::new(),
            secrets: BTreeSet::new(),
        }
    }

    /// Compiles `source` as the template of `field`, checking every name it uses against the
    /// parameters and `scope`.
    pub fn add(&mut self, field: &str, source: &str, scope: Scope) -> Result<(), TemplateError> {
        self.env
            .add_template_owned(field.to_owned(), source.to_owned())
            .map_err(|error| TemplateError::Invalid(syntax_message(&error)))?;
        let template = self.env.get_template(field).map_err(|error| invalid(&error))?;
        let top_level = template.undeclared_variables(false);
        let nested = template.undeclared_variables(true);
        let secrets = self.check_names(&top_level, &nested, scope)?;
        let expression = single_expression(source)
            .filter(|inner| self.env.compile_expression(inner).is_ok())
            .map(str::to_owned);
        self.secrets.extend(secrets);
        self.fields.insert(field.to_owned(), expression);
        Ok(())
    }

    /// Compiles every string in `tree` (a TOML table read as JSON), naming each by its path:
    /// `field.key`, `field[index]`. Returns the failing field with the error.
    pub fn add_tree(
        &mut self,
        field: &str,
        tree: &Value,
        scope: Scope,
    ) -> Result<(), (String, TemplateError)> {
        match tree {
            Value::String(source) => {
                self.add(field, source, scope).map_err(|error| (field.to_owned(), error))
            }
            Value::Array(items) => items.iter().enumerate().try_for_each(|(index, item)| {
                self.add_tree(&format!("{field}[{index}]"), item, scope)
            }),
            Value::Object(entries) => entries
                .iter()
                .try_for_each(|(key, item)| self.add_tree(&format!("{field}.{key}"), item, scope)),
            Value::Null | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }

    /// Secrets the request templates name, in name order.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.secrets.iter().map(String::as_str)
    }

    /// Bindings for backend templates: the arguments at top level and under `args`, absent
    /// optional parameters as `none`, and `secret.NAME` for each named secret (plus `extra`,
    /// secrets the backend needs outside templates). A missing secret is an error naming it.
    pub fn request_bindings(
        &self,
        args: &Map<String, Value>,
        secrets: &dyn SecretSource,
        extra: &[String],
    ) -> Result<(Bindings, BTreeMap<String, String>), TemplateError> {
        let mut resolved = BTreeMap::new();
        for name in self.secrets.iter().chain(extra) {
            let value = secrets.get(name).filter(|value| !value.is_empty()).ok_or_else(|| {
                TemplateError::MissingSecret { tool: self.tool.clone(), name: name.clone() }
            })?;
            resolved.insert(name.clone(), value);
        }
        let mut context = self.argument_context(args);
        let secret_map: Map<String, Value> = resolved
            .iter()
            .map(|(name, value)| (name.clone(), Value::String(value.clone())))
            .collect();
        context.insert("secret".to_owned(), Value::Object(secret_map));
        let secret_values = resolved.values().cloned().collect();
        Ok((Bindings { context: JinjaValue::from(Serde(&context)), secret_values }, resolved))
    }

    /// Bindings for `say` lines: the arguments plus, when given, one more name (`result` or
    /// `error`).
    pub fn say_bindings(
        &self,
        args: &Map<String, Value>,
        extra: Option<(&str, Value)>,
    ) -> Bindings {
        let mut context = self.argument_context(args);
        if let Some((name, value)) = extra {
            context.insert(name.to_owned(), value);
        }
        Bindings { context: JinjaValue::from(Serde(&context)), secret_values: Vec::new() }
    }

    /// True when `field` holds a template.
    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    /// Renders `field` to text.
    pub fn render(&self, field: &str, bindings: &Bindings) -> Result<String, TemplateError> {
        let template =
            self.env.get_template(field).map_err(|error| render_error(field, &error, bindings))?;
        template.render(&bindings.context).map_err(|error| render_error(field, &error, bindings))
    }

    /// Renders `field` to a JSON value: a template that is exactly one `{{ expr }}` yields the
    /// expression's value with its type (`none` is `null`); any other template yields text.
    pub fn render_value(&self, field: &str, bindings: &Bindings) -> Result<Value, TemplateError> {
        let Some(Some(expression)) = self.fields.get(field) else {
            return self.render(field, bindings).map(Value::String);
        };
        let fail = |error: &minijinja::Error| render_error(field, error, bindings);
        let value = self.env.compile_expression(expression).map_err(|error| fail(&error))?;
        let value = value.eval(&bindings.context).map_err(|error| fail(&error))?;
        if value.is_undefined() {
            return Err(TemplateError::Render {
                field: field.to_owned(),
                message: "undefined value".to_owned(),
            });
        }
        serde_json::to_value(&value).map_err(|error| TemplateError::Render {
            field: field.to_owned(),
            message: bindings.redact(&error.to_string()),
        })
    }

    /// Renders every string of `tree` (compiled by [`Templates::add_tree`] under `field`) with
    /// [`Templates::render_value`]; object entries that render to `null` are left out.
    pub fn render_tree(
        &self,
        field: &str,
        tree: &Value,
        bindings: &Bindings,
    ) -> Result<Value, TemplateError> {
        Ok(match tree {
            Value::String(_) => self.render_value(field, bindings)?,
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| {
                        self.render_tree(&format!("{field}[{index}]"), item, bindings)
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Object(entries) => {
                let mut rendered = Map::new();
                for (key, item) in entries {
                    let value = self.render_tree(&format!("{field}.{key}"), item, bindings)?;
                    if !value.is_null() {
                        rendered.insert(key.clone(), value);
                    }
                }
                Value::Object(rendered)
            }
            other => other.clone(),
        })
    }

    fn argument_context(&self, args: &Map<String, Value>) -> Map<String, Value> {
        let mut context = Map::new();
        for name in &self.params {
            context.insert(name.clone(), args.get(name).cloned().unwrap_or(Value::Null));
        }
        context.insert("args".to_owned(), Value::Object(args.clone()));
        context
    }

    /// Checks the names a template uses; returns the secrets it names.
    fn check_names(
        &self,
        top_level: &std::collections::HashSet<String>,
        nested: &std::collections::HashSet<String>,
        scope: Scope,
    ) -> Result<BTreeSet<String>, TemplateError> {
        let extra = match scope {
            Scope::Request => Some("secret"),
            Scope::Started => None,
            Scope::Finished => Some("result"),
            Scope::Failed => Some("error"),
        };
        let mut unknown: Vec<&String> = top_level
            .iter()
            .filter(|name| {
                name.as_str() != "args"
                    && Some(name.as_str()) != extra
                    && !self.params.contains(name)
                    && self.env.globals().all(|(global, _)| global != name.as_str())
            })
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            return Err(TemplateError::Invalid(self.unknown_name_message(name, scope)));
        }
        let mut secrets = BTreeSet::new();
        for name in nested {
            if let Some(field) = name.strip_prefix("args.") {
                let field = field.split('.').next().unwrap_or(field);
                if !self.params.iter().any(|param| param == field) {
                    return Err(TemplateError::Invalid(format!(
                        "`args.{field}` is not a parameter of {}{}",
                        self.tool,
                        self.declared_hint()
                    )));
                }
            }
            if name == "secret" && top_level.contains("secret") {
                if scope != Scope::Request {
                    return Err(secret_in_say());
                }
                return Err(TemplateError::Invalid(
                    "write a secret as `secret.NAME`, with the name spelled out".to_owned(),
                ));
            }
            if let Some(secret) = name.strip_prefix("secret.") {
                if scope != Scope::Request {
                    return Err(secret_in_say());
                }
                let secret = secret.split('.').next().unwrap_or(secret);
                if !is_secret_name(secret) {
                    return Err(TemplateError::Invalid(format!(
                        "secret name `{secret}` must be capital letters, digits and underscores, \
                         starting with a letter"
                    )));
                }
                secrets.insert(secret.to_owned());
            }
        }
        Ok(secrets)
    }

    fn unknown_name_message(&self, name: &str, scope: Scope) -> String {
        let hint = match (name, scope) {
            ("secret", _) => return secret_in_say().to_string(),
            ("result", Scope::Finished) | ("error", Scope::Failed) => String::new(),
            ("result", _) => ": `result` exists only in say.finished".to_owned(),
            ("error", _) => ": `error` exists only in say.failed".to_owned(),
            _ => self.declared_hint(),
        };
        format!("`{name}` is not a parameter of {}{hint}", self.tool)
    }

    fn declared_hint(&self) -> String {
        if self.params.is_empty() {
            "; it declares no parameters".to_owned()
        } else {
            format!("; declared: {}", self.params.join(", "))
        }
    }
}

fn render_error(field: &str, error: &minijinja::Error, bindings: &Bindings) -> TemplateError {
    TemplateError::Render { field: field.to_owned(), message: bindings.redact(&describe(error)) }
}

/// True for `^[A-Z][A-Z0-9_]*$`.
pub fn is_secret_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn secret_in_say() -> TemplateError {
    TemplateError::Invalid("say lines are spoken, so they cannot use secrets".to_owned())
}

/// The inner expression of a template that is exactly `{{ expr }}` (whitespace control allowed).
fn single_expression(source: &str) -> Option<&str> {
    let inner = source.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    let delimiters = ["{{", "}}", "{%", "%}", "{#", "#}"];
    (!delimiters.iter().any(|delimiter| inner.contains(delimiter))).then_some(inner.trim())
}

/// Prints values for text that is not HTML: JSON-ish scalars, JSON containers.
fn format_value(
    out: &mut minijinja::Output<'_>,
    state: &mut State<'_, '_>,
    value: &JinjaValue,
) -> Result<(), minijinja::Error> {
    // A custom formatter replaces the engine's own undefined check, so it is repeated here.
    match value.kind() {
        ValueKind::Undefined => {
            Err(minijinja::Error::new(ErrorKind::UndefinedError, "undefined value"))
        }
        ValueKind::None => Ok(()),
        ValueKind::Bool => write!(out, "{}", value.is_true()).map_err(Into::into),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => {
            let json = serde_json::to_string(value).map_err(|error| {
                minijinja::Error::new(ErrorKind::BadSerialization, error.to_string())
            })?;
            out.write_str(&json).map_err(Into::into)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// A minijinja error in one line: what went wrong and where.
fn describe(error: &minijinja::Error) -> String {
    let mut message = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

fn syntax_message(error: &minijinja::Error) -> String {
    let detail = error.detail().unwrap_or("invalid template");
    match error.line() {
        Some(line) if line > 1 => format!("template syntax error on its line {line}: {detail}"),
        _ => format!("template syntax error: {detail}"),
    }
}

fn invalid(error: &minijinja::Error) -> TemplateError {
    TemplateError::Invalid(describe(error))
}

#[cfg(test)]
#[path = "tests/template.rs"]
mod tests;
