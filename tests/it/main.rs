//! The one integration-test binary: the real server over real HTTP and stdio, driven by rmcp's
//! own client. One module per area.

mod support;

mod bad_input;
mod cli;
mod conversation;
mod edges;
mod edit_image;
mod events;
mod http_views;
mod image_variants;
mod instances;
mod isolation;
mod legacy_session;
mod limits;
mod manifests;
mod oauth;
mod partial_images;
mod profiles;
mod providers;
mod progress;
mod reload;
mod restart;
mod routing;
mod s3_store;
mod stateless;
mod stdio;
mod tasks;
mod tidy;
mod webhooks;
