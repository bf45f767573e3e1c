//! From text to a checked [`Manifest`]: the serde pass (TOML syntax and shapes, located by the
//! error's span and `serde_path_to_error`'s field path) and the semantic checks, each located
//! at the line of the key it is about.

use std::{path::Path, sync::Arc, time::Duration};

use super::{
    Backend, Checked, CommandSpec, DEFAULT_INLINE_TIMEOUT, DEFAULT_JOB_TIMEOUT, DEFAULT_MAX_BYTES,
    HttpMethod, HttpSpec, MAX_BYTES, MAX_DESCRIPTION_CHARS, MAX_INLINE_TIMEOUT, MAX_JOB_TIMEOUT,
    MAX_RETRIES, Manifest, ManifestError, Param, ParamType, RawCommand, RawHttp, RawManifest,
    RawMode, RawParam, ResultSpec, args::check_value,
};
use crate::tools::{
    Annotations, Mode,
    manifest::template::{RESERVED_NAMES, Scope, Templates, is_secret_name},
};

/// Serde pass: TOML syntax and shapes, with the field path and the span's line.
pub(super) fn deserialize(path: &Path, text: &str) -> Result<RawManifest, ManifestError> {
    let located = |error: &toml::de::Error, field: Option<String>| ManifestError {
        path: path.to_path_buf(),
        line: error.span().map(|span| line_at(text, span.start)),
        field,
        message: error.message().trim_end_matches('\n').to_owned(),
    };
    let deserializer = toml::Deserializer::parse(text).map_err(|error| located(&error, None))?;
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let field = error.path().to_string();
        located(error.inner(), (field != ".").then_some(field))
    })
}

/// The 1-based line holding byte `offset`.
fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|byte| **byte == b'\n').count() + 1
}

/// The line of the key (or array item) a field path names, e.g. `params.lat.type` or
/// `command.args[1]`; the nearest enclosing key when the path goes deeper than the file.
fn line_of(text: &str, field: &str) -> Option<usize> {
    let root = toml::de::DeTable::parse(text).ok()?;
    let mut value: Option<&toml::de::DeValue<'_>>;
    let mut table = Some(root.get_ref());
    let mut line = None;
    for segment in field.split('.') {
        let (key, indices) = match segment.find('[') {
            Some(at) => (&segment[..at], &segment[at..]),
            None => (segment, ""),
        };
        let Some((found_key, found)) = table?.iter().find(|(name, _)| name.get_ref() == key) else {
            break;
        };
        line = Some(line_at(text, found_key.span().start));
        value = Some(found.get_ref());
        for index in indices.split(['[', ']']).filter(|part| !part.is_empty()) {
            let item = index.parse::<usize>().ok().and_then(|index| {
                value.and_then(|value| value.as_array()).and_then(|items| items.get(index))
            });
            let Some(item) = item else { break };
            line = Some(line_at(text, item.span().start));
            value = Some(item.get_ref());
        }
        table = value.and_then(|value| value.as_table());
    }
    line
}

/// Semantic checks after the serde pass.
pub(super) struct Checker<'a> {
    pub(super) path: &'a Path,
    pub(super) text: &'a str,
}

impl Checker<'_> {
    fn error(&self, field: &str, message: impl Into<String>) -> ManifestError {
        ManifestError {
            path: self.path.to_path_buf(),
            line: if field.is_empty() { None } else { line_of(self.text, field) },
            field: (!field.is_empty()).then(|| field.to_owned()),
            message: message.into(),
        }
    }

    pub(super) fn check(&self, raw: RawManifest) -> Result<Manifest, ManifestError> {
        self.check_name(&raw.name)?;
        let description = raw.description.trim();
        if description.is_empty() {
            return Err(self.error("description", "say what the tool does and when to use it"));
        }
        if description.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(self.error(
                "description",
                format!(
                    "keep it under {MAX_DESCRIPTION_CHARS} characters; models read it every turn"
                ),
            ));
        }
        let timeout = self.check_timeout(raw.mode, raw.timeout)?;
        if raw.concurrency == Some(0) {
            return Err(self.error("concurrency", "must be at least 1 (leave it out for no limit)"));
        }
        let params = raw
            .params
            .0
            .iter()
            .map(|(name, param)| self.check_param(name, param))
            .collect::<Result<Vec<_>, _>>()?;
        let names = params.iter().map(|param| param.name.clone()).collect();
        let mut templates = Templates::new(&raw.name, names);
        for (field, source, scope) in [
            ("say.started", &raw.say.started, Scope::Started),
            ("say.finished", &raw.say.finished, Scope::Finished),
            ("say.failed", &raw.say.failed, Scope::Failed),
        ] {
            if let Some(source) = source {
                self.add(&mut templates, field, source, scope)?;
            }
        }
        let backend = match (&raw.http, &raw.command) {
            (Some(http), None) => Backend::Http(self.check_http(http, &mut templates)?),
            (None, Some(command)) => Backend::Command(self.check_command(command, &mut templates)?),
            (Some(_), Some(_)) => {
                return Err(
                    self.error("command", "declare one backend: [http] or [command], not both")
                );
            }
            (None, None) => {
                return Err(self.error("", "declare a backend: an [http] or a [command] table"));
            }
        };
        let annotations = Annotations {
            read_only: raw.annotations.read_only.unwrap_or(false),
            destructive: raw.annotations.destructive.unwrap_or(false),
            idempotent: raw.annotations.idempotent.unwrap_or(false),
            open_world: raw.annotations.open_world.unwrap_or(matches!(backend, Backend::Http(_))),
        };
        self.check_retries(raw.retries, &backend, annotations)?;
        let mode = match raw.mode {
            RawMode::Inline => Mode::Inline { within: timeout },
            RawMode::Job => Mode::Job,
        };
        Ok(Manifest {
            inner: Arc::new(Checked {
                path: self.path.to_path_buf(),
                name: raw.name,
                description: description.to_owned(),
                mode,
                timeout,
                concurrency: raw.concurrency,
                retries: raw.retries,
                annotations,
                profiles: raw.profiles.iter().fold(Vec::new(), |mut profiles, profile| {
                    if !profiles.iter().any(|known: &String| known == profile.as_str()) {
                        profiles.push(profile.as_str().to_owned());
                    }
                    profiles
                }),
                params,
                backend,
                templates,
            }),
        })
    }

    fn check_name(&self, name: &str) -> Result<(), ManifestError> {
        let valid = name.len() >= 2
            && name.len() <= 48
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(self.error(
                "name",
                format!(
                    "`{name}` is not a tool name: 2 to 48 lower-case letters, digits and \
                     underscores, starting with a letter"
                ),
            ));
        }
        let stem = self.path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
        if stem != name {
            return Err(self.error(
                "name",
                format!("`{name}` must match the file name; rename one so both say the same (file: {stem}.toml)"),
            ));
        }
        Ok(())
    }

    fn check_timeout(
        &self,
        mode: RawMode,
        timeout: Option<Duration>,
    ) -> Result<Duration, ManifestError> {
        let (default, cap) = match mode {
            RawMode::Inline => (DEFAULT_INLINE_TIMEOUT, MAX_INLINE_TIMEOUT),
            RawMode::Job => (DEFAULT_JOB_TIMEOUT, MAX_JOB_TIMEOUT),
        };
        let timeout = timeout.unwrap_or(default);
        if timeout.is_zero() {
            return Err(self.error("timeout", "must be more than zero"));
        }
        if timeout > cap {
            let hint = match mode {
                RawMode::Inline => "; slow tools should use mode = \"job\"",
                RawMode::Job => "",
            };
            return Err(self.error(
                "timeout",
                format!(
                    "{} is over the {} limit for {} tools{hint}",
                    humantime::format_duration(timeout),
                    humantime::format_duration(cap),
                    if mode == RawMode::Inline { "inline" } else { "job" },
                ),
            ));
        }
        Ok(timeout)
    }

    fn check_retries(
        &self,
        retries: u32,
        backend: &Backend,
        annotations: Annotations,
    ) -> Result<(), ManifestError> {
        if retries > MAX_RETRIES {
            return Err(self.error("retries", format!("at most {MAX_RETRIES}")));
        }
        let safe_method = match backend {
            Backend::Http(spec) => matches!(spec.method, HttpMethod::Get | HttpMethod::Head),
            Backend::Command(_) => false,
        };
        if retries > 0 && !safe_method && !annotations.idempotent {
            let what = match backend {
                Backend::Http(spec) => format!("a {} request", spec.method.as_str()),
                Backend::Command(_) => "a command".to_owned(),
            };
            return Err(self.error(
                "retries",
                format!(
                    "{what} may not be repeated safely; set annotations.idempotent = true if it \
                     can, or remove retries"
                ),
            ));
        }
        Ok(())
    }

    fn check_param(&self, name: &str, raw: &RawParam) -> Result<Param, ManifestError> {
        let field = format!("params.{name}");
        let valid = name.len() <= 64
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(self.error(
                &field,
                format!("`{name}` is not a parameter name: lower-case letters, digits and underscores, starting with a letter"),
            ));
        }
        if RESERVED_NAMES.contains(&name) {
            return Err(self
                .error(&field, format!("`{name}` is reserved for templates; pick another name")));
        }
        let numeric = matches!(raw.kind, ParamType::Integer | ParamType::Number);
        for (key, present) in [("min", raw.min.is_some()), ("max", raw.max.is_some())] {
            if present && !numeric {
                return Err(self.error(
                    &format!("{field}.{key}"),
                    "only integer and number parameters have bounds",
                ));
            }
        }
        if let (Some(min), Some(max)) = (raw.min, raw.max)
            && min > max
        {
            return Err(self.error(&format!("{field}.min"), format!("{min} is above max {max}")));
        }
        if raw.max_length.is_some() && raw.kind != ParamType::String {
            return Err(
                self.error(&format!("{field}.max_length"), "only string parameters have a length")
            );
        }
        if raw.max_length == Some(0) {
            return Err(self.error(&format!("{field}.max_length"), "must be at least 1"));
        }
        if let Some(description) = &raw.description
            && description.trim().is_empty()
        {
            return Err(
                self.error(&format!("{field}.description"), "leave it out rather than empty")
            );
        }
        let mut param = Param {
            name: name.to_owned(),
            kind: raw.kind,
            description: raw.description.as_ref().map(|text| text.trim().to_owned()),
            required: raw.required,
            default: None,
            choices: None,
            min: raw.min,
            max: raw.max,
            max_length: raw.max_length,
        };
        if let Some(choices) = &raw.choices {
            if choices.is_empty() {
                return Err(self.error(&format!("{field}.enum"), "list at least one value"));
            }
            if raw.kind == ParamType::Boolean {
                return Err(self.error(&format!("{field}.enum"), "a boolean needs no enum"));
            }
            let mut checked = Vec::new();
            for (index, choice) in choices.iter().enumerate() {
                match check_value(&param, choice) {
                    Ok(Some(value)) => checked.push(value),
                    Ok(None) | Err(_) => {
                        return Err(self.error(
                            &format!("{field}.enum[{index}]"),
                            format!("{choice} is not a valid {:?}", raw.kind).to_lowercase(),
                        ));
                    }
                }
            }
            param.choices = Some(checked);
        }
        if let Some(default) = &raw.default {
            if raw.required {
                return Err(self.error(
                    &format!("{field}.default"),
                    "a required parameter never uses its default; drop one of them",
                ));
            }
            match check_value(&param, default) {
                Ok(Some(value)) => param.default = Some(value),
                Ok(None) => return Err(self.error(&format!("{field}.default"), "is empty")),
                Err(problem) => return Err(self.error(&format!("{field}.default"), problem)),
            }
        }
        Ok(param)
    }

    fn add(
        &self,
        templates: &mut Templates,
        field: &str,
        source: &str,
        scope: Scope,
    ) -> Result<(), ManifestError> {
        templates.add(field, source, scope).map_err(|error| self.error(field, error.to_string()))
    }

    fn check_http(
        &self,
        raw: &RawHttp,
        templates: &mut Templates,
    ) -> Result<HttpSpec, ManifestError> {
        let url = raw.url.trim();
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            return Err(self.error("http.url", "must start with https:// or http://"));
        }
        if !url.contains("{{") && !url.contains("{%") {
            url::Url::parse(url)
                .map_err(|error| self.error("http.url", format!("not a URL: {error}")))?;
        }
        self.add(templates, "http.url", url, Scope::Request)?;
        for (key, value) in &raw.query.0 {
            let field = format!("http.query.{key}");
            if value.is_object() {
                return Err(self.error(
                    &field,
                    "a query value is text, a number, a boolean or a list of them",
                ));
            }
            templates
                .add_tree(&field, value, Scope::Request)
                .map_err(|(field, error)| self.error(&field, error.to_string()))?;
        }
        for (name, value) in &raw.headers.0 {
            let field = format!("http.headers.{name}");
            reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| self.error(&field, format!("`{name}` is not a valid header name")))?;
            if value.contains(['\r', '\n']) {
                return Err(self.error(&field, "header values cannot contain line breaks"));
            }
            self.add(templates, &field, value, Scope::Request)?;
        }
        if let Some(body) = &raw.body {
            if matches!(raw.method, HttpMethod::Get | HttpMethod::Head) {
                return Err(
                    self.error("http.body", "GET and HEAD requests carry no body; use query")
                );
            }
            templates
                .add_tree("http.body", body, Scope::Request)
                .map_err(|(field, error)| self.error(&field, error.to_string()))?;
        }
        if let Some(result) = &raw.result {
            self.check_result("http.result", result)?;
        }
        Ok(HttpSpec {
            method: raw.method,
            query: raw.query.0.clone(),
            headers: raw.headers.0.iter().map(|(name, _)| name.clone()).collect(),
            body: raw.body.clone(),
            result: raw.result.clone(),
            max_response_bytes: self
                .check_bytes("http.max_response_bytes", raw.max_response_bytes)?,
        })
    }

    fn check_command(
        &self,
        raw: &RawCommand,
        templates: &mut Templates,
    ) -> Result<CommandSpec, ManifestError> {
        let program = raw.program.trim();
        if program.is_empty() {
            return Err(self.error("command.program", "name the program to run"));
        }
        if program.contains("{{") || program.contains("{%") {
            return Err(
                self.error("command.program", "the program is not a template; put values in args")
            );
        }
        for (index, arg) in raw.args.iter().enumerate() {
            self.add(templates, &format!("command.args[{index}]"), arg, Scope::Request)?;
        }
        for (index, name) in raw.env.iter().enumerate() {
            if !is_secret_name(name) {
                return Err(self.error(
                    &format!("command.env[{index}]"),
                    format!("`{name}` is not a secret name: capital letters, digits and underscores, starting with a letter"),
                ));
            }
        }
        if let Some(result) = &raw.result {
            self.check_result("command.result", result)?;
        }
        Ok(CommandSpec {
            program: program.to_owned(),
            arg_count: raw.args.len(),
            env: raw.env.clone(),
            result: raw.result.clone(),
            max_output_bytes: self.check_bytes("command.max_output_bytes", raw.max_output_bytes)?,
        })
    }

    fn check_result(&self, field: &str, result: &ResultSpec) -> Result<(), ManifestError> {
        let pointers: Vec<(String, &str)> = match result {
            ResultSpec::Pointer(pointer) => vec![(field.to_owned(), pointer.as_str())],
            ResultSpec::Fields(fields) => fields
                .0
                .iter()
                .map(|(name, pointer)| (format!("{field}.{name}"), pointer.as_str()))
                .collect(),
        };
        for (field, pointer) in pointers {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(self.error(
                    &field,
                    format!("`{pointer}` is not a JSON pointer; write it like \"/current/temperature_2m\""),
                ));
            }
        }
        Ok(())
    }

    fn check_bytes(&self, field: &str, bytes: Option<u64>) -> Result<u64, ManifestError> {
        match bytes {
            None => Ok(DEFAULT_MAX_BYTES),
            Some(0) => Err(self.error(field, "must be at least 1")),
            Some(bytes) if bytes > MAX_BYTES => {
                Err(self.error(field, format!("at most {MAX_BYTES} (8 MiB)")))
            }
            Some(bytes) => Ok(bytes),
        }
    }
}
