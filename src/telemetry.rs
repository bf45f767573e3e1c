//! Logging through `tracing`, always to stderr: stdout belongs to the MCP stdio transport.

use std::fmt;

use tracing::{Event, Level, Metadata, field::Field};
use tracing_subscriber::{
    EnvFilter, Layer,
    field::Visit,
    layer::{Context, Filter, SubscriberExt},
    util::SubscriberInitExt,
};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over the configured filter.
pub fn init(filter: &str, ansi: bool) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new(crate::config::DEFAULT_LOG));
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_filter(PeerGone);
    let _ = tracing_subscriber::registry().with(filter).with(output).try_init();
}

/// Drops rmcp's `ERROR … channel closed` events: rmcp logs one whenever a client goes away
/// before its response is written — including every `subscriptions/listen` stream a client
/// closes, which is how the 2026-07-28 protocol ends a subscription. They are not errors and
/// would bury real ones.
#[derive(Debug, Clone, Copy)]
struct PeerGone;

impl<S> Filter<S> for PeerGone {
    fn enabled(&self, _metadata: &Metadata<'_>, _context: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &Event<'_>, _context: &Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if *metadata.level() != Level::ERROR || !metadata.target().starts_with("rmcp::service") {
            return true;
        }
        let mut closed = ChannelClosed(false);
        event.record(&mut closed);
        !closed.0
    }
}

/// Finds a field whose value is rmcp's "channel closed" transport error.
struct ChannelClosed(bool);

impl Visit for ChannelClosed {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "error" && format!("{value:?}").contains("channel closed") {
            self.0 = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_rmcp_peer_gone_errors_are_dropped() {
        let captured = Captured::default();
        let writer = captured.clone();
        let layer = tracing_subscriber::fmt::layer()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_filter(PeerGone);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            tracing::error!(target: "rmcp::service", error = %"channel closed", "failed to send pending response during drain");
            tracing::error!(target: "rmcp::service", error = %"connection reset", "transport failed");
            tracing::error!(target: "offstage::jobs", error = %"channel closed", "ours");
            tracing::warn!(target: "rmcp::service", error = %"channel closed", "a warning");
        });
        let output = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert!(!output.contains("pending response during drain"), "{output}");
        for kept in ["transport failed", "ours", "a warning"] {
            assert!(output.contains(kept), "`{kept}` must be logged: {output}");
        }
    }
}
