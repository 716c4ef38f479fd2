//! The fast path for flat JSON lines agrees with serde_json on every line: the same event, or
//! (where it declines) the same error from the full parser.

use promo::io::event_json::{parse_event, parse_event_full};
use promo::io::flat_json::parse_flat;

use crate::gen::{write_jsonl_event, GenConfig, Generator};

fn agree(line: &str) {
    let fast = parse_event(line);
    let full = parse_event_full(line);
    assert_eq!(fast, full, "line: {line}");
    if let Some(flat) = parse_flat(line) {
        assert_eq!(
            Ok(flat),
            full,
            "the fast path accepted a line the full parser reads otherwise: {line}"
        );
    }
}

#[test]
fn fast_path_agrees_on_a_generated_stream() {
    let mut buf = Vec::new();
    let mut taken = 0;
    for e in Generator::new(&GenConfig {
        seed: 9,
        events: 5_000,
        customers: 500,
    }) {
        buf.clear();
        write_jsonl_event(&mut buf, &e).unwrap();
        let line = String::from_utf8(buf.clone()).unwrap();
        agree(line.trim_end());
        taken += usize::from(parse_flat(line.trim_end()).is_some());
    }
    assert!(
        taken > 4_900,
        "the generated lines are flat: {taken} took the fast path"
    );
}

#[test]
fn fast_path_agrees_on_edge_cases() {
    let base =
        r#""type":"purchase","at":"2020-01-02T10:00:00+08:00","customer":"C1","wallet":"W1""#;
    for line in [
        format!(r#"{{"id":"E1",{base}}}"#),
        format!(r#"  {{ "id" : "E1" , {base} , "amount" : "12.50" }}  "#),
        format!(r#"{{"id":"E\u0031",{base}}}"#),
        format!(r#"{{"id":"E\"1",{base}}}"#),
        format!(r#"{{"id":"E1",{base},"amount":12.5}}"#),
        format!(r#"{{"id":"E1",{base},"amount":null}}"#),
        format!(r#"{{"id":"E1",{base},"amount":"twelve"}}"#),
        format!(r#"{{"id":"E1",{base},"coupons":["a", "b"],"face_values":["50","20"]}}"#),
        format!(r#"{{"id":"E1",{base},"coupons":[]}}"#),
        format!(r#"{{"id":"E1",{base},"face_values":["5O"]}}"#),
        format!(r#"{{"id":"E1",{base},"face_values":[50]}}"#),
        format!(r#"{{"id":"E1",{base},"extra":{{"a":1}}}}"#),
        format!(r#"{{"id":"E1",{base},"tags":["x","y"],"n":3,"ok":true}}"#),
        format!(r#"{{"id":"E1",{base},"id":"E2"}}"#),
        format!(r#"{{"id":"E1",{base}}} trailing"#),
        // A field given again where the line's order expects it next.
        r#"{"type":"purchase","id":"E1","type":"refund","at":"2020-01-02T10:00:00Z","customer":"C1","wallet":"W1"}"#.to_string(),
        format!(r#"{{"id":"E1",{base},"coupons":"a"}}"#),
        format!(r#"{{"id":"E1",{base},"amount":["1.00"]}}"#),
        format!(r#"{{"idx":"E0","id":"E1",{base}}}"#),
        format!(r#"{{"id":"E1",{base},"card_product":"p","card_role":"r"}}"#),
        format!(r#"{{"id":"E1",{base},"card_product" :"p"}}"#),
        format!(r#"{{"id":"E1",{base},"face_values":["50.00","x"]}}"#),
        format!(r#"{{"id":"E1",{base},}}"#),
        format!("{{\"id\":\"E\t1\",{base}}}"),
        format!(r#"{{"id":"E1",{base},"at":"2020-01-02 10:00"}}"#),
        format!(r#"{{"id":"E1","at":"2020-01-02 10:00",{base}}}"#),
        format!(r#"{{"id":"E1",{base},"at":"2020-01-02T10:00:00+08:00x"}}"#),
        format!(r#"{{"id":"E1",{base},"at":"2020-01-02T10:00:00+08:00"}}"#),
        format!(r#"{{"id":"E1",{base},"at":"2020-01-02T10:00:00Z"}}"#),
        format!(r#"{{"id":"E1",{base},"at":["2020-01-02T10:00:00Z"]}}"#),
        format!(r#"{{{base}}}"#),
        format!(r#"{{"id":["E1"],{base}}}"#),
        "{}".to_string(),
        "[]".to_string(),
        "{\"id\":".to_string(),
        "not json".to_string(),
    ] {
        agree(&line);
    }
}
