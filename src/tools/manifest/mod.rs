//! Manifest tools: tools declared in `tools/*.toml`, run by an HTTP or command backend.
//! `format.rs` reads and checks a manifest (a leaf: it imports none of the others but
//! `template.rs`, which renders its templates), `http.rs` and `command.rs` run its backend and
//! `backend.rs` picks the one a manifest names, `tool.rs` serves it as a tool and `reload.rs`
//! keeps `tools/` and the registry in step.

pub mod backend;
pub mod command;
pub mod format;
pub mod http;
pub mod reload;
pub mod template;
pub mod tool;

#[cfg(test)]
#[path = "tests/support.rs"]
mod test_support;

pub use format::{
    Backend, BackendError, ExecContext, INHERITED_ENV, Manifest, ManifestError, Param, ParamType,
    RawManifest, json_schema, load_dir, parse,
};
pub use template::{SecretSource, TemplateError};
