//! Tools: manifest tools, hot reload of `tools/`, profiles, and `edit_image` end to end.

mod edit_image;
mod manifests;
mod profiles;
mod reload;
