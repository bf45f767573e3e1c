//! What the backend tests share: a context holding given secrets, a call made as the tool
//! makes it (arguments checked first), and a cancel shortly after the call starts.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use serde_json::Value;

use super::{BackendError, ExecContext, Manifest};

/// A context whose secrets are `secrets`, otherwise as the server builds it.
pub(super) fn with_secrets(secrets: &[(&str, &str)]) -> ExecContext {
    let secrets: BTreeMap<String, String> =
        secrets.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    ExecContext::new(reqwest::Client::new(), Arc::new(secrets))
}

pub(super) async fn call(
    manifest: &Manifest,
    args: Value,
    ctx: &ExecContext,
) -> Result<Value, BackendError> {
    let Value::Object(args) = args else { panic!("arguments are an object") };
    let args = manifest.check_arguments(&args).unwrap();
    manifest.execute(&args, ctx).await
}

/// Cancels `ctx` 100 ms from now, as a caller giving up would.
pub(super) fn cancel_soon(ctx: &ExecContext) {
    let cancel = ctx.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        cancel.cancel();
    });
}
