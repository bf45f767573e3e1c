//! What this process knows, without asking the store, about the jobs of its own sessions'
//! conversations: whether one may have ended unannounced ([`Endings`]) and whether a call's
//! dedupe key was used recently ([`RecentKeys`]).
//!
//! Both hold only for a conversation whose every job is created and run here: a legacy MCP
//! session is one, since its id exists only in the process that issued it. Callers say so
//! ([`super::runner::Dedupe::local`]); for any other conversation (one an app names, which any
//! instance may serve) the store is asked every time. Both fall back to the store whenever
//! they do not know, so forgetting is always safe; neither may ever answer "nothing" wrongly.

use std::{
    collections::HashMap,
    hash::{BuildHasher, Hasher},
    sync::Mutex,
    time::Duration,
};

use super::Micros;

/// Conversations tracked at most; past that the table starts again (everything unknown).
const MAX_CONVERSATIONS: usize = 65_536;

/// Which conversations may have an ended job they have not been told of.
///
/// Counts the endings published in this process per tracked conversation. A conversation is
/// "clean" once the store said it had nothing to announce and no ending was published since.
/// The count taken before asking the store ([`Endings::mark`]) is what makes that exact: an
/// ending published while the store was being asked leaves the conversation unknown.
#[derive(Debug, Default)]
pub struct Endings(Mutex<HashMap<String, Seen>>);

/// Owner and conversation in one key: what the store's announcements are per.
fn key(owner: &str, conversation: &str) -> String {
    format!("{owner}\n{conversation}")
}

#[derive(Debug, Clone, Copy, Default)]
struct Seen {
    ended: u64,
    clean_at: Option<u64>,
}

impl Endings {
    /// A job of `owner` in `conversation` ended (told of every ending this process publishes).
    pub(super) fn ended(&self, owner: &str, conversation: &str) {
        let mut seen = self.0.lock().expect("endings lock poisoned");
        // An untracked conversation is unknown already, which means "ask the store".
        if let Some(seen) = seen.get_mut(&key(owner, conversation)) {
            seen.ended += 1;
        }
    }

    /// True when the store had nothing to announce to `owner` in `conversation` and nothing
    /// of theirs ended since.
    pub fn nothing_to_announce(&self, owner: &str, conversation: &str) -> bool {
        let seen = self.0.lock().expect("endings lock poisoned");
        seen.get(&key(owner, conversation)).is_some_and(|seen| seen.clean_at == Some(seen.ended))
    }

    /// Where the count stands before the store is asked; hand it to [`Endings::clean`] if the
    /// store then has nothing.
    pub fn mark(&self, owner: &str, conversation: &str) -> u64 {
        let key = key(owner, conversation);
        let mut seen = self.0.lock().expect("endings lock poisoned");
        if seen.len() >= MAX_CONVERSATIONS && !seen.contains_key(&key) {
            seen.clear();
        }
        seen.entry(key).or_default().ended
    }

    /// The store had nothing to announce as of `mark`: clean, unless something ended since.
    pub fn clean(&self, owner: &str, conversation: &str, mark: u64) {
        let mut seen = self.0.lock().expect("endings lock poisoned");
        if let Some(seen) = seen.get_mut(&key(owner, conversation))
            && seen.ended == mark
        {
            seen.clean_at = Some(mark);
        }
    }
}

/// Dedupe keys of local conversations used within the window, by a 64-bit digest: a digest
/// that is absent means no job with that key was created in the window; one that is present
/// (a repeat, or a collision) sends the call to the store, which decides.
#[derive(Debug, Default)]
pub(super) struct RecentKeys {
    used: Mutex<HashMap<u64, Micros>>,
    hasher: std::hash::RandomState,
}

/// Keys remembered at most. Entries are only dropped once outside the window; past this many
/// inside it, calls go to the store instead of being remembered.
const MAX_KEYS: usize = 262_144;

impl RecentKeys {
    /// Records that `key` is being used now; true when it was not used within `window` (so
    /// there is no job to find), false when the store must be asked.
    pub(super) fn first_use(&self, key: &str, window: Duration, now: Micros) -> bool {
        let mut hasher = self.hasher.build_hasher();
        hasher.write(key.as_bytes());
        let digest = hasher.finish();
        let since = now.minus(window);
        let mut used = self.used.lock().expect("recent keys lock poisoned");
        let fresh = used.get(&digest).is_none_or(|&at| at < since);
        if used.len() >= MAX_KEYS && !used.contains_key(&digest) {
            used.retain(|_, at| *at >= since);
            if used.len() >= MAX_KEYS {
                return false;
            }
        }
        used.insert(digest, now);
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_conversation_is_clean_only_after_the_store_said_so_and_nothing_ended_since() {
        let endings = Endings::default();
        assert!(!endings.nothing_to_announce("o", "c"), "unknown until asked");
        let mark = endings.mark("o", "c");
        endings.clean("o", "c", mark);
        assert!(endings.nothing_to_announce("o", "c"));
        endings.ended("o", "c");
        assert!(!endings.nothing_to_announce("o", "c"), "an ending makes it unknown again");
        assert!(!endings.nothing_to_announce("o", "d"));
        assert!(!endings.nothing_to_announce("p", "c"), "per owner");
    }

    #[test]
    fn an_ending_while_the_store_is_asked_keeps_the_conversation_unknown() {
        let endings = Endings::default();
        let mark = endings.mark("o", "c");
        endings.ended("o", "c");
        endings.clean("o", "c", mark);
        assert!(!endings.nothing_to_announce("o", "c"));
        let mark = endings.mark("o", "c");
        endings.clean("o", "c", mark);
        assert!(endings.nothing_to_announce("o", "c"));
    }

    #[test]
    fn a_key_is_fresh_once_per_window() {
        let keys = RecentKeys::default();
        let window = Duration::from_secs(60);
        assert!(keys.first_use("k", window, Micros(1_000_000)));
        assert!(!keys.first_use("k", window, Micros(2_000_000)), "a repeat asks the store");
        assert!(keys.first_use("other", window, Micros(2_000_000)));
        assert!(keys.first_use("k", window, Micros(70_000_000)), "outside the window");
    }
}
