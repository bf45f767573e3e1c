//! `[limits]`: what one client may hold of the server before it authenticates and after, so a
//! public address cannot be exhausted: connections, slow requests, MCP sessions and streams.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;
use crate::settings::HumanDuration;

/// `[limits]`: what connections and sessions may hold and how long they may take.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, schemars::JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open connections at once; more are answered 503 and closed. `0`: three quarters of the
    /// open-file limit (raised at start as far as the hard limit allows).
    pub max_connections: usize,
    /// Time to receive a request's head, counted from when the connection is ready for one: a
    /// half-sent header, and an idle keep-alive connection, are closed after it.
    pub header_timeout: HumanDuration,
    /// Time to receive a whole request body once its head arrived.
    pub body_timeout: HumanDuration,
    /// A connection on which no byte moves either way for this long is closed (a reader that
    /// stopped reading a stream, say). Longer than every stream's keep-alive.
    pub idle_timeout: HumanDuration,
    /// Legacy (2025-*) MCP sessions open at once, all callers together.
    pub sessions: usize,
    /// Legacy MCP sessions one token (or OAuth subject) may hold.
    pub sessions_per_token: usize,
    /// A legacy session must finish its handshake (`notifications/initialized`) within this,
    /// or it is closed.
    pub session_init_timeout: HumanDuration,
    /// A legacy session with no request, response or notification for this long is closed.
    pub session_idle_timeout: HumanDuration,
    /// `GET /v1/events` streams one token may hold open.
    pub event_streams_per_token: usize,
    /// 2026-07-28 `subscriptions/listen` streams one token may hold open.
    pub listen_streams_per_token: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 0,
            header_timeout: HumanDuration::from_secs(30),
            body_timeout: HumanDuration::from_secs(30),
            idle_timeout: HumanDuration::from_secs(120),
            sessions: 10_000,
            sessions_per_token: 1_000,
            session_init_timeout: HumanDuration::from_secs(10),
            // A voice call can be quiet for a long time between tool calls; OpenAI Realtime
            // sessions last at most an hour.
            session_idle_timeout: HumanDuration::from_secs(3600),
            event_streams_per_token: 1_000,
            listen_streams_per_token: 1_000,
        }
    }
}

impl LimitsConfig {
    /// The connection cap in force, given the open-file limit the process has.
    pub fn connection_cap(&self, open_files: u64) -> usize {
        if self.max_connections > 0 {
            return self.max_connections;
        }
        let three_quarters = usize::try_from(open_files / 4 * 3).unwrap_or(usize::MAX);
        three_quarters.clamp(64, 100_000)
    }

    /// `keep_alive`: the longest quiet stretch of the server's own streams.
    pub(super) fn validate(&self, keep_alive: Duration) -> Result<(), ConfigError> {
        let invalid = |field, message: String| Err(ConfigError::Invalid { field, message });
        let seconds = |duration: Duration| humantime::format_duration(duration).to_string();
        for (field, value) in [
            ("limits.header_timeout", self.header_timeout),
            ("limits.body_timeout", self.body_timeout),
            ("limits.session_init_timeout", self.session_init_timeout),
            ("limits.session_idle_timeout", self.session_idle_timeout),
        ] {
            if value < Duration::from_millis(100) {
                return invalid(
                    field,
                    format!("{} is too short; use at least 100ms", seconds(*value)),
                );
            }
        }
        if self.idle_timeout <= keep_alive * 2 {
            return invalid(
                "limits.idle_timeout",
                format!(
                    "{} must be longer than twice the streams' keep-alive ({}), or quiet \
                     healthy streams would be cut",
                    seconds(*self.idle_timeout),
                    seconds(keep_alive)
                ),
            );
        }
        for (field, value) in [
            ("limits.sessions", self.sessions),
            ("limits.sessions_per_token", self.sessions_per_token),
            ("limits.event_streams_per_token", self.event_streams_per_token),
            ("limits.listen_streams_per_token", self.listen_streams_per_token),
        ] {
            if value == 0 {
                return invalid(field, "must be at least 1".to_owned());
            }
        }
        Ok(())
    }
}
