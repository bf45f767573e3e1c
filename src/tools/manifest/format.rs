//! The manifest format: `tools/<name>.toml` as written ([`RawManifest`], whose JSON Schema is
//! [`json_schema`]) and as checked ([`Manifest`]: parameters, limits, compiled templates and one
//! backend), with errors that name the file, the line and the field. It knows nothing of MCP or
//! jobs, nor of the backends that run a manifest: they depend on it, never the other way round
//! (`backend.rs` picks one for a call).
//!
//! Submodules: `raw` (the serde and schema types), `check` (located serde errors and the
//! semantic checks), `args` (argument checking and the source schema), `exec` (the contract
//! both backends share: [`ExecContext`], [`BackendError`], retries).

mod args;
mod check;
mod exec;
mod raw;

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use serde_json::{Map, Value};

pub use exec::{BackendError, ExecContext, INHERITED_ENV, pick_result};
pub use raw::{
    HttpMethod, OrderedTable, ParamType, RawAnnotations, RawCommand, RawHttp, RawManifest, RawMode,
    RawParam, RawProfile, RawSay, ResultSpec,
};

use super::template::{TemplateError, Templates};
use crate::tools::{Annotations, Mode};

/// Inline tools answer while the model waits; this is the longest a voice turn can stall.
pub const MAX_INLINE_TIMEOUT: Duration = Duration::from_secs(30);
/// Job tools run in the background, but a result pushed after five minutes is old news.
pub const MAX_JOB_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_INLINE_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_JOB_TIMEOUT: Duration = Duration::from_secs(60);
/// Default for `max_response_bytes` and `max_output_bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 1024 * 1024;
/// Hard cap for `max_response_bytes` and `max_output_bytes`: results end up in a model's context.
pub const MAX_BYTES: u64 = 8 * 1024 * 1024;
pub const MAX_RETRIES: u32 = 5;
/// Longer descriptions cost every conversation tokens on every turn.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A checked manifest: cheap to clone, shared between calls.
#[derive(Debug, Clone)]
pub struct Manifest {
    inner: Arc<Checked>,
}

#[derive(Debug)]
struct Checked {
    path: PathBuf,
    name: String,
    description: String,
    mode: Mode,
    timeout: Duration,
    concurrency: Option<u32>,
    retries: u32,
    annotations: Annotations,
    /// The profiles it asks for (`profiles`), in the order written, without repeats.
    profiles: Vec<String>,
    params: Vec<Param>,
    backend: Backend,
    templates: Templates,
}

/// A checked parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub name: String,
    pub kind: ParamType,
    pub description: Option<String>,
    pub required: bool,
    pub default: Option<Value>,
    pub choices: Option<Vec<Value>>,
    pub min: Option<f64>,
    pub max: Option<f64>,
    pub max_length: Option<usize>,
}

/// The one backend a manifest declares. Its templates live in [`Manifest::templates`], named
/// by field (`http.url`, `http.query.<key>`, `http.headers.<name>`, `http.body…`,
/// `command.args[<index>]`).
#[derive(Debug, Clone)]
pub enum Backend {
    Http(HttpSpec),
    Command(CommandSpec),
}

#[derive(Debug, Clone)]
pub struct HttpSpec {
    pub method: HttpMethod,
    /// Query entries as written (strings are templates `http.query.<key>`).
    pub query: Vec<(String, Value)>,
    /// Header names; each value is the template `http.headers.<name>`.
    pub headers: Vec<String>,
    /// The body as written (strings are templates under `http.body`).
    pub body: Option<Value>,
    pub result: Option<ResultSpec>,
    pub max_response_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct CommandSpec {
    pub program: String,
    /// How many arguments; each is the template `command.args[<index>]`.
    pub arg_count: usize,
    /// Secret names passed as environment variables.
    pub env: Vec<String>,
    pub result: Option<ResultSpec>,
    pub max_output_bytes: u64,
}

/// A manifest that could not be loaded, located as precisely as the file allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}", Location(self), .message)]
pub struct ManifestError {
    pub path: PathBuf,
    /// 1-based line of the offending key or value, when known.
    pub line: Option<usize>,
    /// The field path, e.g. `params.latitude.type` or `http.query.q`.
    pub field: Option<String>,
    pub message: String,
}

struct Location<'a>(&'a ManifestError);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.path.display())?;
        if let Some(line) = self.0.line {
            write!(f, ":{line}")?;
        }
        f.write_str(": ")?;
        if let Some(field) = &self.0.field {
            write!(f, "{field}: ")?;
        }
        Ok(())
    }
}

/// Parses and checks one manifest; `path` is used for the name check and in errors.
pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
    let raw = check::deserialize(path, text)?;
    check::Checker { path, text }.check(raw)
}

/// Loads every `*.toml` in `dir`, in name order. A bad file becomes an error entry and the
/// others still load; a missing directory holds no manifests.
pub fn load_dir(dir: &Path) -> (Vec<Manifest>, Vec<ManifestError>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return (Vec::new(), Vec::new());
        }
        Err(error) => return (Vec::new(), vec![io_error(dir, &error)]),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|extension| extension == "toml") && path.is_file()
        })
        .collect();
    paths.sort();
    let mut manifests = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&path, &text) {
                Ok(manifest) => manifests.push(manifest),
                Err(error) => errors.push(error),
            },
            Err(error) => errors.push(io_error(&path, &error)),
        }
    }
    (manifests, errors)
}

/// The JSON Schema of the manifest file format (checked in as `schemas/manifest.json`).
pub fn json_schema() -> Value {
    schemars::schema_for!(RawManifest).to_value()
}

impl Manifest {
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn description(&self) -> &str {
        &self.inner.description
    }

    /// `Mode::Inline { within: timeout }` or `Mode::Job`.
    pub fn mode(&self) -> Mode {
        self.inner.mode
    }

    /// The budget of one call, retries included.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    pub fn concurrency(&self) -> Option<u32> {
        self.inner.concurrency
    }

    pub fn retries(&self) -> u32 {
        self.inner.retries
    }

    pub fn annotations(&self) -> Annotations {
        self.inner.annotations
    }

    /// The profiles the manifest asks to be served in (see [`RawManifest::profiles`]).
    pub fn profiles(&self) -> &[String] {
        &self.inner.profiles
    }

    pub fn params(&self) -> &[Param] {
        &self.inner.params
    }

    pub fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub fn templates(&self) -> &Templates {
        &self.inner.templates
    }

    /// The folder commands run in by default: the one holding the manifest's folder.
    pub fn root_dir(&self) -> PathBuf {
        match self.inner.path.parent().and_then(Path::parent) {
            Some(root) if !root.as_os_str().is_empty() => root.to_path_buf(),
            _ => PathBuf::from("."),
        }
    }

    /// The input schema as declared: `{"type": "object", "properties": …, "required": […],
    /// "additionalProperties": false}`.
    pub fn source_schema(&self) -> Map<String, Value> {
        let properties: Map<String, Value> = self
            .params()
            .iter()
            .map(|param| (param.name.clone(), args::param_schema(param)))
            .collect();
        let required: Vec<Value> = self
            .params()
            .iter()
            .filter(|param| param.required)
            .map(|param| Value::String(param.name.clone()))
            .collect();
        let mut schema = Map::new();
        schema.insert("type".to_owned(), "object".into());
        schema.insert("properties".to_owned(), Value::Object(properties));
        if !required.is_empty() {
            schema.insert("required".to_owned(), Value::Array(required));
        }
        schema.insert("additionalProperties".to_owned(), false.into());
        schema
    }

    /// Validates arguments against the parameters and returns them normalised (strings trimmed,
    /// enum values in their declared spelling, `3.0` for an integer as `3`, defaults filled in).
    /// The error is a sentence a model can act on.
    pub fn check_arguments(&self, args: &Map<String, Value>) -> Result<Map<String, Value>, String> {
        let mut problems = Vec::new();
        for name in args.keys() {
            if !self.params().iter().any(|param| &param.name == name) {
                problems.push(match self.params() {
                    [] => format!("it takes no arguments, but got `{name}`"),
                    params => {
                        let names: Vec<&str> =
                            params.iter().map(|param| param.name.as_str()).collect();
                        format!("`{name}` is not a parameter (use {})", names.join(", "))
                    }
                });
            }
        }
        let mut normalised = Map::new();
        for param in self.params() {
            let given = args.get(&param.name).filter(|value| !value.is_null());
            match given.map(|value| args::check_value(param, value)).transpose() {
                Ok(Some(Some(value))) => {
                    normalised.insert(param.name.clone(), value);
                }
                Ok(_) => {
                    if let Some(default) = &param.default {
                        normalised.insert(param.name.clone(), default.clone());
                    } else if param.required {
                        problems.push(format!(
                            "`{}` is required: {}",
                            param.name,
                            args::expectation(param)
                        ));
                    }
                }
                Err(problem) => problems.push(problem),
            }
        }
        if problems.is_empty() {
            Ok(normalised)
        } else {
            Err(format!("Invalid arguments for {}: {}.", self.name(), problems.join("; ")))
        }
    }

    /// `say.started` rendered with the arguments, if declared.
    pub fn say_started(&self, args: &Map<String, Value>) -> Result<Option<String>, TemplateError> {
        self.say("say.started", args, None)
    }

    /// `say.finished` rendered with the arguments and `result`, if declared.
    pub fn say_finished(
        &self,
        args: &Map<String, Value>,
        result: &Value,
    ) -> Result<Option<String>, TemplateError> {
        self.say("say.finished", args, Some(("result", result.clone())))
    }

    /// `say.failed` rendered with the arguments and `error`, if declared.
    pub fn say_failed(
        &self,
        args: &Map<String, Value>,
        error: &str,
    ) -> Result<Option<String>, TemplateError> {
        self.say("say.failed", args, Some(("error", Value::String(error.to_owned()))))
    }

    fn say(
        &self,
        field: &str,
        args: &Map<String, Value>,
        extra: Option<(&str, Value)>,
    ) -> Result<Option<String>, TemplateError> {
        if !self.templates().has(field) {
            return Ok(None);
        }
        let bindings = self.templates().say_bindings(args, extra);
        let line = self.templates().render(field, &bindings)?;
        Ok(Some(line.split_whitespace().collect::<Vec<_>>().join(" ")))
    }
}

fn io_error(path: &Path, error: &std::io::Error) -> ManifestError {
    ManifestError { path: path.to_path_buf(), line: None, field: None, message: error.to_string() }
}

#[cfg(test)]
#[path = "tests/format.rs"]
mod tests;
