//! The image providers against local stand-ins of their services. [`contract`] and [`jobs`]
//! hold what every provider must do, as one table with a row per provider; each provider's own
//! file holds only what is its own: the requests it sends and the answers only its service gives.
//! [`standin`] is what every stand-in is built on.

pub mod contract;
pub mod jobs;
pub mod standin;

pub mod comfyui;
pub mod gemini;
pub mod openai;
pub mod replicate;
pub mod stability;
