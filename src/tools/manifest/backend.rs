//! Runs a manifest's backend: the one place that knows both backends, so the manifest format
//! stays a leaf they depend on.

use serde_json::{Map, Value};

use super::format::{Backend, BackendError, ExecContext, Manifest};

impl Manifest {
    /// Runs the backend with normalised arguments (from [`Manifest::check_arguments`]).
    pub async fn execute(
        &self,
        args: &Map<String, Value>,
        ctx: &ExecContext,
    ) -> Result<Value, BackendError> {
        match self.backend() {
            Backend::Http(spec) => super::http::execute(self, spec, args, ctx).await,
            Backend::Command(spec) => super::command::execute(self, spec, args, ctx).await,
        }
    }
}
