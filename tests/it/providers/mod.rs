//! The image providers against local stand-ins of their services. [`contract`] and [`jobs`]
//! hold what every provider must do, as one table with a row per provider; each provider's own
//! file holds only what is its own: the requests it sends and the answers only its service gives.
//! [`standin`] is what every stand-in is built on.

pub(crate) mod contract;
pub(crate) mod jobs;
pub(crate) mod standin;

pub(crate) mod comfyui;
pub(crate) mod endpoint;
pub(crate) mod gemini;
pub(crate) mod openai;
pub(crate) mod replicate;
pub(crate) mod stability;
