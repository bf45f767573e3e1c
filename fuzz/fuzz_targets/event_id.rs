//! `Last-Event-ID` and `?after=` values: an id is read only from plain decimal digits, and it
//! reads back as what was sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use offstage::jobs::events::parse_event_id;

fuzz_target!(|text: &str| {
    if let Some(id) = parse_event_id(text) {
        assert!(id >= 0);
        assert_eq!(id.to_string().trim_start_matches('0'), text.trim().trim_start_matches('0'));
    }
});
