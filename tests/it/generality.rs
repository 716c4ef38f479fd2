/*!
The proof of generality: a new promotion is one new YAML file in `promotions/`, written
in the same rule language as the seed rules, with no change to the engine.

The promotion (`tests/fixtures/octopus-first-purchase.yaml`): the first `purchase` in store
with a `citi_octopus` card in January 2020 (HK date) gets one HK$30 coupon, min spend
HK$100, usable in store, credited the same day, valid 30 days (`valid_until` = credit_by +
29 days), at most once per customer and at most 500 coupons in total.
*/

use std::path::PathBuf;

use serde_json::{json, Value};

use crate::util::*;

const RULE: &str = "octopus-first-purchase";

/// The shipped rules plus the new promotion, in `dir`.
fn rules_with_octopus(dir: &Dir) -> PathBuf {
    let rules = dir.copy_rules();
    std::fs::copy(
        fixture("octopus-first-purchase.yaml"),
        rules.join("promotions").join("octopus-first-purchase.yaml"),
    )
    .unwrap();
    rules
}

/// A HK$120 in-store purchase with a Citi Octopus card.
fn octopus(id: &str, at: &str, customer: &str) -> Value {
    purchase(id, at, customer)
        .set("card_product", "citi_octopus")
        .set("amount", "120.00")
}

fn octopus_grant(event: &Value, credit_by: &str, valid_until: &str) -> Value {
    let c = coupon(
        &coupon_id(event, RULE, 1),
        "30.00",
        "100.00",
        &["in_store"],
        credit_by,
        Some(valid_until),
    );
    grant(event, RULE, vec![c])
}

#[test]
fn new_promotion_is_one_yaml_file() {
    let o1 = octopus("o1", "2020-01-10T10:00:00+08:00", "c1");
    let o7 = octopus("o7", "2019-12-31T16:00:00Z", "c5");
    let own = coupon_id(&o1, RULE, 1);
    let c5s = coupon_id(&o7, RULE, 1);
    let events = [
        // Granted: credited 2020-01-10, valid until 2020-02-08.
        o1.clone(),
        // c1's coupon spent the same day at exactly the min spend; no second grant.
        octopus("o2", "2020-01-10T13:00:00+08:00", "c1")
            .set("amount", "100.00")
            .set("coupons", json!([own])),
        octopus("o3", "2020-01-11T10:00:00+08:00", "c1"),
        // Online, another card, services: nothing.
        octopus("o4", "2020-01-10T10:00:00+08:00", "c2").set("channel", "online"),
        octopus("o5", "2020-01-10T10:00:00+08:00", "c3").set("card_product", "citi_prestige"),
        octopus("o9", "2020-01-10T10:00:00+08:00", "c7").set("channel", "services"),
        // December, also by a minute in Hong Kong time, and February: nothing.
        octopus("o10", "2019-12-20T10:00:00+08:00", "c8"),
        octopus("o6", "2019-12-31T15:59:59Z", "c4"),
        octopus("o8", "2020-01-31T16:00:00Z", "c6"),
        // Midnight on 2020-01-01 in Hong Kong: granted, valid until 2020-01-30.
        o7.clone(),
        // c5's coupon is for in-store only, and expires after 2020-01-30.
        octopus("o11", "2020-01-02T10:00:00+08:00", "c5")
            .set("channel", "online")
            .set("coupons", json!([c5s])),
        octopus("o12", "2020-01-31T10:00:00+08:00", "c5").set("coupons", json!([c5s])),
        // The seed rules still decide as before.
        bill("b13", "2019-12-19T10:00:00+08:00", "c9"),
    ];
    let expected = [
        octopus_grant(&events[0], "2020-01-10", "2020-02-08"),
        accept_coupon(&events[1], &own),
        octopus_grant(&events[9], "2020-01-01", "2020-01-30"),
        reject_coupon(&events[10], &c5s, "channel_not_allowed"),
        reject_coupon(&events[11], &c5s, "coupon_expired"),
        first_time(&events[12], "2019-12-23", "2020-03-21"),
    ];

    let dir = Dir::new("octopus");
    let rules = rules_with_octopus(&dir);
    let input = dir.write_jsonl("events.jsonl", &events);
    let run = dir.eval(&rules, &input, None);
    run.assert_clean();
    assert_decisions(&expected, &run);

    // Without the new file, the same purchases earn nothing.
    let run = dir.eval(&shipped_rules(), &input, None);
    run.assert_clean();
    let expected_without = [
        reject_coupon(&events[1], &own, "coupon_unknown"),
        reject_coupon(&events[10], &c5s, "coupon_unknown"),
        reject_coupon(&events[11], &c5s, "coupon_unknown"),
        first_time(&events[12], "2019-12-23", "2020-03-21"),
    ];
    assert_decisions(&expected_without, &run);
}

#[test]
fn new_promotion_stops_after_500_coupons() {
    let at = "2020-01-15T10:00:00+08:00";
    let customer = |n: usize| format!("m{n:03}");
    // Customer 1 buys twice: the refused second purchase uses none of the 500.
    let mut events = vec![
        octopus("k1", at, &customer(1)),
        octopus("k1b", at, &customer(1)),
    ];
    for n in 2..=501 {
        events.push(octopus(&format!("k{n}"), at, &customer(n)));
    }
    // Customers 1 to 500 get one coupon each, credited 2020-01-15, valid until 2020-02-13;
    // the 501st gets nothing.
    let mut expected = vec![octopus_grant(&events[0], "2020-01-15", "2020-02-13")];
    for e in &events[2..events.len() - 1] {
        expected.push(octopus_grant(e, "2020-01-15", "2020-02-13"));
    }
    assert_eq!(expected.len(), 500);

    let dir = Dir::new("octopus-500");
    let rules = rules_with_octopus(&dir);
    let input = dir.write_jsonl("events.jsonl", &events);
    let run = dir.eval(&rules, &input, None);
    run.assert_clean();
    assert_decisions(&expected, &run);
}
