//! Push: what hosts hear about jobs — conversations (piggy-backed endings), SSE events, webhooks.

mod conversation;
mod events;
pub(crate) mod webhooks;
