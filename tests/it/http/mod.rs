//! The HTTP surface: job and image views, the edges of HTTP a public address meets, OAuth.

mod edges;
mod http_views;
mod oauth;
