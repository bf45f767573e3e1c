//! Snapshots of the realtime payloads (`snapshots/`), and checks against the documented wire
//! shapes.

use std::collections::HashSet;

use super::*;

const JOB: &str = "01jz8k3m5n6p7q8r9s0t1v2w3x";
const IMAGE: &str = "https://offstage.example.com/v1/jobs/01jz8k3m5n6p7q8r9s0t1v2w3x/image";
const CALL: &str = "function-call-4716";
const HINTS: [DeliveryHint; 3] =
    [DeliveryHint::Interrupt, DeliveryHint::WhenIdle, DeliveryHint::Silent];
const STATUSES: [&str; 3] = ["completed", "failed", "cancelled"];

/// OpenAI Realtime client event types (GA reference) offstage may send.
const OPENAI_CLIENT_EVENTS: [&str; 3] =
    ["conversation.item.create", "response.create", "response.cancel"];
/// Gemini `FunctionResponseScheduling` values.
const GEMINI_SCHEDULING: [&str; 3] = ["SILENT", "WHEN_IDLE", "INTERRUPT"];

/// The payloads of a `generate_image` job that ended with `status`, as the composer builds them.
fn payloads_for(status: &str, delivery: DeliveryHint, call_id: Option<&str>) -> Value {
    let (say, error) = match status {
        "completed" => ("The image of “a red fox in the snow” is ready.", None),
        "failed" => (
            "The image of “a red fox in the snow” failed: The image service refused that \
             description; try describing it differently.",
            Some("The image service refused that description; try describing it differently."),
        ),
        "cancelled" => (
            "The image of “a red fox in the snow” was cancelled.",
            Some("Cancelled at the user's request."),
        ),
        other => panic!("no fixture for status {other}"),
    };
    let mut result = json!({
        "job_id": JOB,
        "tool": "generate_image",
        "status": status,
        "image_url": IMAGE,
        "created_at": "2026-11-20T10:00:00.000000Z",
        "finished_at": "2026-11-20T10:00:25.000000Z",
    });
    if let Some(error) = error {
        result["error"] = json!(error);
    }
    payloads(&Announcement {
        job_id: JOB,
        tool: "generate_image",
        status,
        say,
        image_url: (status == "completed").then_some(IMAGE),
        delivery,
        result: &result,
        call_id,
    })
}

fn check(name: &str, actual: &Value, expected: &Value) {
    assert!(
        actual == expected,
        "{name}: payloads differ\n--- actual\n{}\n--- expected\n{}",
        serde_json::to_string_pretty(actual).unwrap(),
        serde_json::to_string_pretty(expected).unwrap(),
    );
}

/// Every combination of status, hint and call id.
fn all_payloads() -> Vec<(&'static str, DeliveryHint, Option<&'static str>, Value)> {
    let mut all = Vec::new();
    for status in STATUSES {
        for hint in HINTS {
            for call_id in [Some(CALL), None] {
                all.push((status, hint, call_id, payloads_for(status, hint, call_id)));
            }
        }
    }
    all
}

fn openai_events(payloads: &Value) -> &Vec<Value> {
    payloads["openai"].as_array().expect("`openai` is an array of events")
}

fn event_types(payloads: &Value) -> Vec<&str> {
    openai_events(payloads).iter().map(|event| event["type"].as_str().unwrap()).collect()
}

/// Five endings and their payloads as users read them: each is a file in `snapshots/`, the
/// wire format `docs/realtime.md` describes. `OFFSTAGE_UPDATE_SNAPSHOTS=1` rewrites the files
/// after a deliberate change (review the diff).
const SNAPSHOTS: [(&str, &str, DeliveryHint, Option<&str>); 5] = [
    // cancels the reply in progress, adds the result, asks for a reply
    ("completed_interrupt", "completed", DeliveryHint::Interrupt, Some(CALL)),
    // no call to answer: no Gemini tool response
    ("completed_when_idle_without_call_id", "completed", DeliveryHint::WhenIdle, None),
    // only adds to the context
    ("completed_silent", "completed", DeliveryHint::Silent, Some(CALL)),
    // says why, and answers the call with the error
    ("failed_when_idle", "failed", DeliveryHint::WhenIdle, Some(CALL)),
    ("failed_interrupt_without_call_id", "failed", DeliveryHint::Interrupt, None),
];

#[test]
#[expect(clippy::disallowed_methods, reason = "the test's own switch, not configuration")]
fn payloads_match_their_snapshots() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/push/realtime/snapshots");
    let update = std::env::var_os("OFFSTAGE_UPDATE_SNAPSHOTS").is_some();
    for (name, status, hint, call_id) in SNAPSHOTS {
        let actual = payloads_for(status, hint, call_id);
        let path = dir.join(format!("{name}.json"));
        if update {
            let text = serde_json::to_string_pretty(&actual).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let expected: Value = serde_json::from_str(&expected).unwrap();
        check(name, &actual, &expected);
    }
}

#[test]
fn openai_events_are_documented_client_events() {
    for (status, hint, _, payloads) in all_payloads() {
        for event in openai_events(&payloads) {
            let kind = event["type"].as_str().unwrap_or_default();
            assert!(OPENAI_CLIENT_EVENTS.contains(&kind), "{status}/{hint:?}: unknown {kind}");
            if kind != "conversation.item.create" {
                // `response.cancel` and `response.create` need nothing but their type.
                let keys: Vec<&String> = event.as_object().unwrap().keys().collect();
                assert_eq!(keys.len(), 2, "{status}/{hint:?}: {event}");
                continue;
            }
            let item = &event["item"];
            assert_eq!(item["type"], "message");
            // Only user messages accept `input_image`.
            assert_eq!(item["role"], "user");
            let parts = item["content"].as_array().expect("content is an array");
            assert_eq!(parts[0]["type"], "input_text");
            assert!(parts[0]["text"].as_str().is_some_and(|text| !text.is_empty()));
            for part in &parts[1..] {
                assert_eq!(part["type"], "input_image", "{status}/{hint:?}: {part}");
            }
        }
    }
}

#[test]
fn openai_event_ids_are_unique_and_stable_per_job() {
    for (status, hint, call_id, payloads) in all_payloads() {
        let ids: Vec<&str> = openai_events(&payloads)
            .iter()
            .map(|event| event["event_id"].as_str().expect("every event has an event_id"))
            .collect();
        let unique: HashSet<&str> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "{status}/{hint:?}: {ids:?}");
        for id in &ids {
            assert!(id.starts_with(&format!("offstage_{JOB}_")), "{id}");
        }
        // Building the same announcement again yields the same ids: a resend is recognisable.
        assert_eq!(payloads, payloads_for(status, hint, call_id));
    }
}

#[test]
fn openai_sequence_follows_the_delivery_hint() {
    for status in STATUSES {
        let of = |hint| event_types(&payloads_for(status, hint, None)).join(" ");
        assert_eq!(
            of(DeliveryHint::Interrupt),
            "response.cancel conversation.item.create response.create"
        );
        assert_eq!(of(DeliveryHint::WhenIdle), "conversation.item.create response.create");
        assert_eq!(of(DeliveryHint::Silent), "conversation.item.create");
    }
}

#[test]
fn input_image_is_the_job_image_and_only_when_completed() {
    for (status, hint, _, payloads) in all_payloads() {
        let images: Vec<&Value> = openai_events(&payloads)
            .iter()
            .filter_map(|event| event["item"]["content"].as_array())
            .flatten()
            .filter(|part| part["type"] == "input_image")
            .collect();
        if status == "completed" {
            assert_eq!(images.len(), 1, "{hint:?}");
            assert_eq!(images[0]["image_url"], IMAGE);
        } else {
            assert!(images.is_empty(), "{status}/{hint:?}: {images:?}");
        }
    }
}

#[test]
fn gemini_scheduling_follows_the_delivery_hint_in_both_places() {
    let expected = [
        (DeliveryHint::Interrupt, "INTERRUPT"),
        (DeliveryHint::WhenIdle, "WHEN_IDLE"),
        (DeliveryHint::Silent, "SILENT"),
    ];
    for status in STATUSES {
        for (hint, scheduling) in expected {
            let payloads = payloads_for(status, hint, Some(CALL));
            let response =
                &payloads["gemini"]["tool_response"]["toolResponse"]["functionResponses"][0];
            assert!(GEMINI_SCHEDULING.contains(&response["scheduling"].as_str().unwrap()));
            assert_eq!(response["scheduling"], scheduling, "{status}/{hint:?}");
            assert_eq!(response["response"]["scheduling"], scheduling, "{status}/{hint:?}");
        }
    }
}

#[test]
fn gemini_tool_response_closes_the_pending_call() {
    for (status, hint, call_id, payloads) in all_payloads() {
        let tool_response = &payloads["gemini"]["tool_response"];
        let Some(call_id) = call_id else {
            assert!(tool_response.is_null(), "{status}/{hint:?}: {tool_response}");
            continue;
        };
        let responses = tool_response["toolResponse"]["functionResponses"].as_array().unwrap();
        assert_eq!(responses.len(), 1);
        let response = &responses[0];
        assert_eq!(response["id"], call_id);
        assert_eq!(response["name"], "generate_image");
        assert_eq!(response["willContinue"], false);
        // Gemini reads `output` on success and `error` otherwise, never both.
        let body = response["response"].as_object().unwrap();
        let (present, absent) =
            if status == "completed" { ("output", "error") } else { ("error", "output") };
        assert!(body.contains_key(present) && !body.contains_key(absent), "{status}: {body:?}");
    }
}

#[test]
fn gemini_turn_complete_follows_the_delivery_hint() {
    for (status, hint, _, payloads) in all_payloads() {
        let content = &payloads["gemini"]["client_content"]["clientContent"];
        assert_eq!(
            content["turnComplete"],
            hint != DeliveryHint::Silent,
            "{status}/{hint:?}: {content}"
        );
        assert_eq!(content["turns"][0]["role"], "user");
    }
}

#[test]
fn both_platforms_read_the_same_line() {
    for (status, hint, _, payloads) in all_payloads() {
        let item = openai_events(&payloads)
            .iter()
            .find(|event| event["type"] == "conversation.item.create")
            .expect("an item to add");
        let gemini_text =
            &payloads["gemini"]["client_content"]["clientContent"]["turns"][0]["parts"][0]["text"];
        assert_eq!(&item["item"]["content"][0]["text"], gemini_text, "{status}/{hint:?}");
        let text = gemini_text.as_str().unwrap();
        assert!(text.starts_with(&format!("[offstage job {JOB} {status}] ")), "{text}");
    }
}
