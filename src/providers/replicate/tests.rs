//! Unit tests of the Replicate provider's pure parts: model names, the input it sends, which URLs
//! it will follow, and how each answer maps onto a `ProviderError`.

use reqwest::StatusCode;
use serde_json::json;

use super::*;

fn prediction(value: Value) -> Prediction {
    serde_json::from_value(value).expect("a prediction object")
}

fn error_for(status: u16, body: &str) -> ProviderError {
    let status = StatusCode::from_u16(status).unwrap();
    wire::status_error(status, Some(Duration::from_secs(2)), body.as_bytes(), "r8_secret")
}

fn failed(error: &str) -> ProviderError {
    wire::failure(&prediction(json!({"id": "p1", "status": "failed", "error": error})))
}

#[test]
fn model_names_are_owner_slash_name_with_an_optional_version() {
    assert_eq!(
        parse_model("black-forest-labs/flux-schnell"),
        Some(("black-forest-labs", "flux-schnell", None))
    );
    assert_eq!(
        parse_model(" stability-ai/sdxl:39ed52f2a78e "),
        Some(("stability-ai", "sdxl", Some("39ed52f2a78e")))
    );
    assert_eq!(parse_model("owner/flux.1_dev"), Some(("owner", "flux.1_dev", None)));
    for bad in
        ["", "flux-schnell", "a/b/c", "/name", "owner/", "../x", "owner/..", "o/n:", "o/n:ab/c"]
    {
        assert_eq!(parse_model(bad), None, "{bad:?}");
    }
}

#[test]
fn aspect_ratio_is_the_nearest_flux_ratio() {
    assert_eq!(aspect_ratio(1024, 1024), "1:1");
    assert_eq!(aspect_ratio(1536, 1024), "3:2");
    assert_eq!(aspect_ratio(1024, 1536), "2:3");
    assert_eq!(aspect_ratio(1920, 1080), "16:9");
    assert_eq!(aspect_ratio(1200, 900), "4:3");
    assert_eq!(aspect_ratio(640, 3000), "9:21", "taller than any ratio: the tallest");
}

#[test]
fn input_has_prompt_ratio_png_and_a_seed_only_when_pinned() {
    let request = ImageRequest { prompt: "a fox".to_owned(), width: 1536, height: 1024, seed: 0 };
    assert_eq!(
        Value::Object(input(&request)),
        json!({"prompt": "a fox", "aspect_ratio": "3:2", "output_format": "png"})
    );
    let pinned = ImageRequest { seed: 42, ..request.clone() };
    assert_eq!(input(&pinned)["seed"], 42);
    let huge = ImageRequest { seed: (1 << 32) + 7, ..request };
    assert_eq!(input(&huge)["seed"], 7, "kept within 32 bits");
}

#[test]
fn cancel_after_rounds_up_to_whole_seconds() {
    assert_eq!(cancel_after(Duration::from_secs(120)), "120s");
    assert_eq!(cancel_after(Duration::from_millis(1500)), "2s");
    assert_eq!(cancel_after(Duration::from_millis(300)), "1s");
    assert_eq!(cancel_after(Duration::ZERO), "1s");
}

#[test]
fn outputs_come_from_https_or_the_api_origin_only() {
    let api = Url::parse("https://api.replicate.com").unwrap().origin();
    let delivery = "https://replicate.delivery/xezq/abc/out-0.png";
    assert_eq!(output_url(&api, delivery).unwrap().as_str(), delivery);
    assert!(output_url(&api, "http://replicate.delivery/out-0.png").is_err(), "plain http");
    assert!(output_url(&api, "file:///etc/passwd").is_err());
    assert!(output_url(&api, "data:image/png;base64,AAAA").is_err());
    assert!(output_url(&api, "not a url").is_err());
    let local = Url::parse("http://127.0.0.1:9000").unwrap().origin();
    assert!(output_url(&local, "http://127.0.0.1:9000/files/out-0.png").is_ok(), "a stand-in");
    assert!(output_url(&local, "http://127.0.0.1:9001/files/out-0.png").is_err(), "other port");
}

#[test]
fn the_first_output_url_is_taken_from_a_list_or_a_string() {
    let listed = prediction(json!({"output": ["https://x/0.png", "https://x/1.png"]}));
    assert_eq!(listed.output_url(), Some("https://x/0.png"));
    let single = prediction(json!({"output": "https://x/0.png"}));
    assert_eq!(single.output_url(), Some("https://x/0.png"));
    for output in [json!(null), json!([]), json!(""), json!({"image": "https://x"}), json!([7])] {
        assert_eq!(prediction(json!({ "output": output })).output_url(), None, "{output}");
    }
}

#[test]
fn statuses_map_to_what_the_provider_does_next() {
    let status = |text: &str| prediction(json!({ "status": text })).status();
    assert_eq!(status("starting"), Status::Running);
    assert_eq!(status("processing"), Status::Running);
    assert_eq!(status("succeeded"), Status::Succeeded);
    assert_eq!(status("failed"), Status::Failed);
    assert_eq!(status("canceled"), Status::Canceled);
    assert_eq!(status("aborted"), Status::Aborted);
    assert_eq!(status("queued-somewhere-new"), Status::Running, "unknown: keep polling");
}

#[test]
fn failed_predictions_are_refusals_transient_or_final() {
    let nsfw = failed("NSFW content detected. Try running it again, or try a different prompt.");
    assert!(matches!(&nsfw, ProviderError::Refused { reason } if reason.contains("NSFW")));
    assert!(matches!(failed("Content flagged as sensitive (E005)"), ProviderError::Refused { .. }));
    let interrupted = failed("Prediction interrupted; please retry (code: PA)");
    assert!(matches!(interrupted, ProviderError::Unavailable { .. }));
    assert!(interrupted.is_retryable());
    let model = failed("prompt must not be longer than 77 tokens");
    assert!(
        matches!(&model, ProviderError::InvalidResponse(m) if m.contains("77 tokens")),
        "{model:?}"
    );
    assert!(!model.is_retryable());
    let silent = wire::failure(&prediction(json!({"status": "failed"})));
    assert!(matches!(silent, ProviderError::InvalidResponse(_)));
}

#[test]
fn each_documented_status_maps_onto_its_class() {
    let problem = |status: u16, title: &str, detail: &str| {
        json!({"title": title, "detail": detail, "status": status}).to_string()
    };
    let body = problem(401, "Unauthenticated", "You did not pass a valid authentication token");
    assert!(matches!(error_for(401, &body), ProviderError::Unauthorized));
    let body = problem(402, "Insufficient credit", "You have insufficient credit");
    assert!(matches!(error_for(402, &body), ProviderError::QuotaExhausted));
    let body = problem(404, "Not found", "The requested resource could not be found.");
    let missing = error_for(404, &body);
    assert!(
        matches!(&missing, ProviderError::BadRequest(m) if m.contains("could not be found")),
        "{missing:?}"
    );
    let limited = error_for(429, &problem(429, "Request was throttled.", "Expected in 1s"));
    assert!(matches!(limited, ProviderError::RateLimited { .. }));
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(2)));
    let server = error_for(503, &problem(503, "Service Unavailable", "try later"));
    assert!(matches!(server, ProviderError::Unavailable { status: 503, .. }));
    assert!(matches!(
        error_for(502, "<html>bad gateway</html>"),
        ProviderError::Unavailable { .. }
    ));
}

#[test]
fn invalid_fields_are_named_and_the_key_scrubbed() {
    let body = json!({
        "title": "Input validation failed",
        "detail": "- input.aspect_ratio: must be one of 1:1, 16:9 (token r8_secret)",
        "status": 422,
        "invalid_fields": [
            {"type": "enum", "field": "input.aspect_ratio", "description": "must be one of 1:1"},
            {"type": "required", "field": "", "description": "input is required"}
        ]
    });
    let ProviderError::BadRequest(message) = error_for(422, &body.to_string()) else { panic!() };
    assert_eq!(
        message,
        "- input.aspect_ratio: must be one of 1:1, 16:9 (token <redacted>); \
         input.aspect_ratio: must be one of 1:1; input is required"
    );
    let ProviderError::BadRequest(message) = error_for(400, "not json") else { panic!() };
    assert_eq!(message, "HTTP 400");
}
