//! An event line: the fast flat-JSON parser and the serde path agree. Where the fast path
//! reads a line it must read what serde reads (accepted, with the same values); where it
//! declines, `parse_event` is serde's answer, acceptance or error alike. No panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promo::io::event_json::{parse_event, parse_event_full};
use promo::io::flat_json::parse_flat;

fuzz_target!(|data: &[u8]| {
    let Ok(line) = std::str::from_utf8(data) else {
        return;
    };
    let full = parse_event_full(line);
    if let Some(flat) = parse_flat(line) {
        assert_eq!(Ok(&flat), full.as_ref(), "fast path disagrees: {line:?}");
    }
    assert_eq!(parse_event(line), full, "parse_event disagrees: {line:?}");
});
