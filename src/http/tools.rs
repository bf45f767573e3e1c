//! `GET /v1/tools`: what each profile serves and what the last load of `tools/` found wrong,
//! so an operator (or a test) sees a broken manifest without reading the log.

use std::sync::Arc;

use axum::{Extension, Json, response::IntoResponse};
use serde_json::{Map, Value, json};

use crate::tools::{Registry, listing::tokens};

pub(super) async fn tools(Extension(registry): Extension<Arc<Registry>>) -> impl IntoResponse {
    let catalog = registry.catalog();
    let mut profiles = Map::new();
    for profile in catalog.profiles() {
        let definitions = catalog.definitions(profile).unwrap_or_default();
        let tools: Vec<Value> = definitions
            .iter()
            .map(|definition| {
                json!({ "name": definition.name, "tokens": tokens::of_definition(definition) })
            })
            .collect();
        profiles.insert(profile.to_owned(), Value::Array(tools));
    }
    Json(json!({
        "default_profile": catalog.default_profile(),
        "profiles": profiles,
        "problems": *registry.problems(),
    }))
}
