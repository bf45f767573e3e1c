//! The compact schema compiler on any JSON object: it never panics, its output stays in the
//! portable subset, and compiling twice changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offstage::tools::listing::schema::{self, portable};
use serde_json::Value;

fn keys_in_subset(schema: &Value) -> bool {
    let Value::Object(object) = schema else { return true };
    object.keys().all(|key| portable::KEYS.contains(&key.as_str()) && key != "nullable")
        && object.get("properties").and_then(Value::as_object).is_none_or(|p| p.values().all(keys_in_subset))
        && object.get("items").is_none_or(keys_in_subset)
        && object.get("anyOf").and_then(Value::as_array).is_none_or(|b| b.iter().all(keys_in_subset))
}

fuzz_target!(|data: &[u8]| {
    let Ok(Value::Object(source)) = serde_json::from_slice::<Value>(data) else { return };
    let once = schema::compile(&source);
    assert!(keys_in_subset(&Value::Object(once.clone())), "{once:?}");
    assert_eq!(schema::compile(&once), once);
});
