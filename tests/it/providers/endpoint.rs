//! The `endpoint` provider (the worked example of docs/providers.md) against a stand-in of
//! the service it describes: `POST {base_url}/generate` with `{"prompt", "width", "height",
//! "seed"}`, answered with image bytes or an error status with `{"error": "..."}`.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use offstage::providers::{Context, ImageProvider, ProvidersConfig, endpoint::EndpointProvider};
use serde_json::json;

use super::{
    contract::{Answer, Row, Setup, Spawned, Spawning},
    openai::leak,
    standin::{self, NOT_AN_IMAGE, Recorded, Scripted},
};

/// The endpoint in the provider contract.
pub(crate) const ROW: Row = Row {
    name: "endpoint",
    key: "sk-offstage-test-e4d1b27c90a3f658",
    // The key is optional: a service on the same machine often has none.
    key_variable: None,
    configure,
    capped,
    spawn,
    attempts: super::contract::scripted_attempts::<Answer>,
    typical_latency: Duration::from_secs(5),
    remote_url: "https://images.example.com",
    can_edit: false,
    caps_first_answer: true,
    connect_names: None,
    refusal_says: "",
    landscape: (1536, 1024),
    landscape_request,
};

super::contract::configure!(endpoint);
super::contract::capped!(endpoint, EndpointProvider);

type Shared = standin::Shared<Scripted<Answer>>;

fn spawn(answers: Vec<Answer>) -> Option<Spawning> {
    // It has no quota and no safety system of its own.
    let own =
        |answer| (!matches!(answer, Answer::QuotaExhausted | Answer::Refused)).then_some(answer);
    super::contract::spawning(answers, own, |script| {
        standin::spawn(|_| Scripted::new(script), Router::new().fallback(handle))
    })
}

async fn handle(State(shared): State<Arc<Shared>>, request: Recorded) -> Response {
    shared.log.push(request.clone());
    if !request.is("POST", "/generate") {
        return standin::json_error(404, json!({"error": "not found"}), None);
    }
    let size = |name: &str| request.body[name].as_u64().map(|value| value as u32);
    let (Some(width), Some(height), Some(_)) =
        (size("width"), size("height"), request.body["prompt"].as_str())
    else {
        return standin::json_error(
            400,
            json!({"error": "prompt, width and height are required"}),
            None,
        );
    };
    match shared.script.next() {
        Answer::Image => {
            ([(header::CONTENT_TYPE, "image/png")], standin::png(width, height)).into_response()
        }
        Answer::Garbage => ([(header::CONTENT_TYPE, "image/png")], NOT_AN_IMAGE).into_response(),
        Answer::ServerError(status) => standin::json_error(status, json!({"error": "busy"}), None),
        Answer::RateLimited(seconds) => {
            standin::json_error(429, json!({"error": "slow down"}), Some(leak(seconds)))
        }
        Answer::Unauthorized => standin::json_error(401, json!({"error": "bad key"}), None),
        Answer::Hang => {
            shared.hang().await;
            standin::json_error(503, json!({"error": "stopped"}), None)
        }
        Answer::QuotaExhausted | Answer::Refused => unreachable!("never scripted"),
    }
}

fn landscape_request(stand_in: &Spawned, row: &Row) {
    let request = &stand_in.get::<Scripted<Answer>>().requests()[0];
    assert_eq!(request.body["prompt"], "a red fox");
    assert_eq!(
        (request.body["width"].as_u64(), request.body["height"].as_u64()),
        (Some(1536), Some(1024))
    );
    assert_eq!(request.header("authorization"), Some(format!("Bearer {}", row.key).as_str()));
}

/// Without a key, nothing is sent in its place.
#[tokio::test]
async fn without_a_key_no_authorization_is_sent() {
    let stand_in = spawn(vec![Answer::Image]).unwrap().await;
    let mut providers = ProvidersConfig::default();
    configure(&mut providers, &Setup { key: None, ..Setup::at(&ROW, &stand_in.base_url) });
    let provider: Arc<dyn ImageProvider> =
        providers.build("endpoint", &Context::default()).unwrap();
    let image = provider.generate(&super::contract::request()).await.unwrap();
    assert_eq!(standin::png_size(&image.bytes), (1024, 1024));
    assert_eq!(image.model, "endpoint");
    let sent = &stand_in.get::<Scripted<Answer>>().requests()[0];
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.body["seed"], 7);
}
