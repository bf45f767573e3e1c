//! The one integration-test binary: the real server over real HTTP and stdio, driven by rmcp's
//! own client. One module per area.

mod support;

mod bad_input;
mod cli;
mod comfyui_jobs;
mod comfyui_provider;
mod comfyui_standin;
mod conversation;
mod edges;
mod edit_image;
mod events;
mod gemini_jobs;
mod gemini_provider;
mod gemini_standin;
mod http_views;
mod image_variants;
mod instances;
mod isolation;
mod legacy_session;
mod limits;
mod manifests;
mod oauth;
mod openai_jobs;
mod openai_provider;
mod openai_standin;
mod partial_images;
mod profiles;
mod progress;
mod reload;
mod replicate_jobs;
mod replicate_provider;
mod replicate_standin;
mod restart;
mod routing;
mod s3_store;
mod stability_jobs;
mod stability_provider;
mod stability_standin;
mod stateless;
mod stdio;
mod tasks;
mod tidy;
mod webhooks;
