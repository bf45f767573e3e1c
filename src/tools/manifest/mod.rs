//! Manifest tools: tools declared in `tools/*.toml`, run by an HTTP or command backend.
//! `format.rs` reads and checks a manifest, `template.rs` renders its templates, `http.rs` and
//! `command.rs` run its backend, `tool.rs` serves it as a tool and `reload.rs` keeps `tools/`
//! and the registry in step.

pub mod command;
pub mod format;
pub mod http;
pub mod reload;
pub mod template;
pub mod tool;

pub use format::{
    Backend, BackendError, ExecContext, INHERITED_ENV, Manifest, ManifestError, Param, ParamType,
    RawManifest, json_schema, load_dir, parse,
};
pub use template::{SecretSource, TemplateError};
