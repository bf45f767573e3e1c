//! Taking a prompt back when nobody waits for it any more: a drop guard that, unless disarmed,
//! removes the prompt from ComfyUI's queue and stops it if it is the one running.
//!
//! A job is cancelled (or times out, or the server stops) by dropping its future, so the
//! guard's `Drop` is the one place that sees every way out. `Drop` cannot wait, so the clean-up
//! runs in a spawned task, best effort: when ComfyUI cannot be reached it has nothing to stop.

use serde_json::{Value, json};
use url::Url;

use super::super::http::{Api, read_capped};

/// `GET /queue` lists every queued workflow in full; more than this is not worth reading to
/// decide whether to interrupt.
const MAX_QUEUE_BYTES: usize = 8 * 1024 * 1024;

/// What the clean-up needs, cloned out of the provider so the task owns it.
#[derive(Debug, Clone)]
pub(super) struct Canceller {
    /// The provider's client, proxy key and per-request timeout.
    pub api: Api,
    /// `{base}/queue`: `POST {"delete": [id]}` and `GET` (what runs now).
    pub queue: Url,
    /// `{base}/interrupt`.
    pub interrupt: Url,
}

/// Armed while a prompt of ours may sit in ComfyUI's queue or run on its GPU.
#[derive(Debug)]
pub(super) struct CancelOnDrop {
    armed: Option<(Canceller, String)>,
}

impl CancelOnDrop {
    pub(super) fn arm(canceller: Canceller, prompt_id: String) -> CancelOnDrop {
        CancelOnDrop { armed: Some((canceller, prompt_id)) }
    }

    /// The id ComfyUI answered with, which older servers choose themselves.
    pub(super) fn track(&mut self, prompt_id: &str) {
        if let Some((_, id)) = &mut self.armed {
            prompt_id.clone_into(id);
        }
    }

    /// ComfyUI is done with the prompt (or never took it): nothing to take back.
    pub(super) fn disarm(&mut self) {
        self.armed = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((canceller, prompt_id)) = self.armed.take() else { return };
        // Without a runtime (a test dropping the future after its runtime) there is nobody to
        // run the clean-up; the prompt then runs to its end on ComfyUI's side.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(canceller.cancel(prompt_id));
        }
    }
}

impl Canceller {
    /// Deletes the prompt from the pending queue, then interrupts it if it is the one running.
    ///
    /// The order matters: once deleted it cannot start, so a prompt not seen running afterwards
    /// never will be. The interrupt names the prompt (current ComfyUI then interrupts only that
    /// one), and is sent only when `GET /queue` shows ours running, because older ComfyUI
    /// ignores the id and would stop whatever runs, someone else's image included.
    async fn cancel(self, prompt_id: String) {
        tracing::info!(%prompt_id, "taking a cancelled prompt back from ComfyUI");
        let deleted = self.post(&self.queue, json!({ "delete": [prompt_id] })).await;
        if let Err(error) = deleted {
            tracing::debug!(%prompt_id, %error, "ComfyUI queue delete failed");
        }
        match self.is_running(&prompt_id).await {
            Ok(true) => {
                let interrupted = self.post(&self.interrupt, json!({ "prompt_id": prompt_id }));
                if let Err(error) = interrupted.await {
                    tracing::debug!(%prompt_id, %error, "ComfyUI interrupt failed");
                }
            }
            Ok(false) => {}
            Err(error) => tracing::debug!(%prompt_id, %error, "could not read ComfyUI's queue"),
        }
    }

    async fn post(&self, url: &Url, body: Value) -> Result<(), reqwest::Error> {
        let request = self.api.prepare(self.api.http.post(url.clone()).json(&body));
        request.send().await?.error_for_status().map(drop)
    }

    /// `queue_running` holds `[number, prompt_id, prompt, extra_data, outputs]` entries.
    async fn is_running(&self, prompt_id: &str) -> Result<bool, String> {
        let request = self.api.prepare(self.api.http.get(self.queue.clone()));
        let mut response = request.send().await.map_err(|error| error.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status().as_u16()));
        }
        let body = read_capped(&mut response, MAX_QUEUE_BYTES)
            .await
            .map_err(|error| error.to_string())?
            .ok_or("the queue listing is too large")?;
        let queue: Value = serde_json::from_slice(&body).map_err(|error| error.to_string())?;
        let running = queue.get("queue_running").and_then(Value::as_array);
        Ok(running
            .into_iter()
            .flatten()
            .any(|item| item.get(1).and_then(Value::as_str) == Some(prompt_id)))
    }
}
