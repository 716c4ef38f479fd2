/*!
The clauses S1-S18 of PRODUCT.md, run through `promo eval` with the shipped rules.

Every expected value is worked out by hand from PRODUCT.md and `rules/calendars/hk.yaml`.
The calendar facts used below (Hong Kong time is UTC+8, no daylight saving):

```text
2019-12  19 Thu  20 Fri  21 Sat  22 Sun  23 Mon  24 Tue  25 Wed (holiday)  26 Thu (holiday)
         27 Fri  28 Sat  29 Sun  30 Mon  31 Tue
2020-01  01 Wed (holiday)  02 Thu  03 Fri ... 23 Thu  24 Fri  25 Sat (holiday)  26 Sun
         27 Mon (holiday)  28 Tue (holiday)  29 Wed ... 31 Fri
2020-02  01 Sat  02 Sun  03 Mon  04 Tue (no holidays in February 2020)
```

Credit dates, "the 2nd HK working day after the payment date":

```text
paid 2019-12-19 -> 20, 23             -> 2019-12-23
paid 2019-12-20 -> 23, 24             -> 2019-12-24
paid 2019-12-23 -> 24, (25, 26) 27    -> 2019-12-27
paid 2019-12-24 -> (25, 26) 27, 30    -> 2019-12-30
paid 2019-12-31 -> (01) 02, 03        -> 2020-01-03
paid 2020-01-23 -> 24, (25..28) 29    -> 2020-01-29
paid 2020-01-31 -> (01, 02) 03, 04    -> 2020-02-04
```

Expiry dates (2020 is a leap year): reward 1 `valid_until` = credit_by + 89 days,
reward 2 = credit_by + 149 days:

```text
+89:  2019-12-23 -> 2020-03-21   2019-12-24 -> 2020-03-22   2019-12-27 -> 2020-03-25
      2019-12-30 -> 2020-03-28   2020-01-03 -> 2020-04-01   2020-01-29 -> 2020-04-27
      2020-02-04 -> 2020-05-03
+149: 2019-12-27 -> 2020-05-24   2019-12-30 -> 2020-05-27   2020-01-29 -> 2020-06-26
      2020-02-04 -> 2020-07-02
```
*/

use serde_json::{json, Value};

use crate::util::*;

/// Ten HK$50 coupons, HK$500.
const FIVE_HUNDRED: [&str; 10] = ["50"; 10];

// S1 ------------------------------------------------------------------------------------

#[test]
fn s1_period_boundaries_use_hk_date() {
    // 15:59:59Z on 2019-12-18 is 23:59:59 on the 18th in Hong Kong: before the period.
    let before = bill("b1", "2019-12-18T15:59:59Z", "c1");
    // 16:00:00Z on 2019-12-18 is midnight on the 19th in Hong Kong: the first day.
    let first_day = bill("b2", "2019-12-18T16:00:00Z", "c2");
    let first_day_local = bill("b3", "2019-12-19T00:00:00+08:00", "c3");
    // 15:59:59Z on 2020-01-31 is still the 31st in Hong Kong: the last day.
    let last_day = bill("b4", "2020-01-31T15:59:59Z", "c4");
    // 16:00:00Z on 2020-01-31 is 2020-02-01 in Hong Kong: after the period.
    let after = bill("b5", "2020-01-31T16:00:00Z", "c5");
    let events = [before, first_day, first_day_local, last_day, after];
    let expected = [
        first_time(&events[1], "2019-12-23", "2020-03-21"),
        first_time(&events[2], "2019-12-23", "2020-03-21"),
        first_time(&events[3], "2020-02-04", "2020-05-03"),
    ];
    check("s1-bill", &events, &[], &expected);
}

#[test]
fn s1_period_boundaries_apply_to_reward_2() {
    let first_day = autopay("a1", "2019-12-18T16:00:00Z", "c1");
    let last_day = autopay("a2", "2020-01-31T15:59:59Z", "c2");
    let after = autopay("a3", "2020-01-31T16:00:00Z", "c3");
    let events = [first_day, last_day, after];
    let expected = [
        // Paid 2019-12-19 (HK), before 2019-12-24: credited by 2019-12-27 (S9).
        reward_2(&events[0], "2019-12-27", "2020-05-24"),
        reward_2(&events[1], "2020-02-04", "2020-07-02"),
    ];
    check("s1-autopay", &events, &[], &expected);
}

// S2 ------------------------------------------------------------------------------------

#[test]
fn s2_eligible_cards_for_rewards() {
    let eligible = [
        "citi_prestige",
        "citi_premiermiles",
        "citi_rewards",
        "citi_cash_back",
        "citi_clear",
        "citi_ultima",
        "citi_gold",
        "citi_classic",
        "citi_octopus",
    ];
    let not_eligible = ["citi_cash_back_amex", "citi_rewards_unionpay", "other"];
    let mut events = Vec::new();
    let mut expected = Vec::new();
    for card in eligible {
        let e =
            bill(&format!("b-{card}"), "2019-12-19T10:00:00+08:00", card).set("card_product", card);
        expected.push(first_time(&e, "2019-12-23", "2020-03-21"));
        events.push(e);
    }
    for card in not_eligible {
        events.push(
            bill(&format!("b-{card}"), "2019-12-19T10:00:00+08:00", card).set("card_product", card),
        );
    }
    check("s2-cards", &events, &[], &expected);
}

#[test]
fn s2_supplementary_cards_qualify_like_principal() {
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1").set("card_role", "supplementary"),
        autopay("a1", "2019-12-20T10:00:00+08:00", "c2").set("card_role", "supplementary"),
    ];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        reward_2(&events[1], "2019-12-27", "2020-05-24"),
    ];
    check("s2-supplementary", &events, &[], &expected);
}

#[test]
fn s2_excluded_cards_get_no_reward_2() {
    let events = [
        autopay("a1", "2019-12-20T10:00:00+08:00", "c1").set("card_product", "citi_cash_back_amex"),
        autopay("a2", "2019-12-20T10:00:00+08:00", "c2")
            .set("card_product", "citi_rewards_unionpay"),
        autopay("a3", "2019-12-20T10:00:00+08:00", "c3").set("card_product", "other"),
        autopay("a4", "2019-12-20T10:00:00+08:00", "c4").set("card_product", "citi_octopus"),
    ];
    let expected = [reward_2(&events[3], "2019-12-27", "2020-05-24")];
    check("s2-autopay", &events, &[], &expected);
}

// S3 ------------------------------------------------------------------------------------

#[test]
fn s3_first_time_bill_payment_gets_80() {
    // c1 is not in the snapshot: no history. c2 is, with no prior bill payment. c3 only
    // did things that are not bill payments before paying a bill.
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        bill("b2", "2019-12-19T11:00:00+08:00", "c2"),
        event("l3", "card_link", "2019-12-19T09:00:00+08:00", "c3"),
        purchase("p3", "2019-12-19T09:10:00+08:00", "c3"),
        event(
            "x3",
            "autopay_activation",
            "2019-12-19T09:20:00+08:00",
            "c3",
        ),
        bill("b3", "2019-12-19T12:00:00+08:00", "c3"),
    ];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        first_time(&events[1], "2019-12-23", "2020-03-21"),
        first_time(&events[5], "2019-12-23", "2020-03-21"),
    ];
    check("s3", &events, &[customer("c2")], &expected);
}

// S4 ------------------------------------------------------------------------------------

#[test]
fn s4_returning_bill_payment_gets_40() {
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        // c2 paid a bill before the period: nothing then, returning in the period.
        bill("b2", "2019-12-01T10:00:00+08:00", "c2"),
        bill("b3", "2019-12-20T10:00:00+08:00", "c2"),
    ];
    let snapshot = [customer("c1").set("prior_bill_payments", 3)];
    let expected = [
        returning(&events[0], "2019-12-23", "2020-03-21"),
        returning(&events[2], "2019-12-24", "2020-03-22"),
    ];
    check("s4", &events, &snapshot, &expected);
}

// S5 ------------------------------------------------------------------------------------

#[test]
fn s5_reward_1_at_most_once_per_customer() {
    let events = [
        // c1: first-time, then never again, neither first-time nor returning.
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        bill("b2", "2019-12-20T10:00:00+08:00", "c1"),
        bill("b3", "2020-01-02T10:00:00+08:00", "c1").set("card_product", "citi_gold"),
        // c2: returning, then nothing.
        bill("b4", "2019-12-19T10:00:00+08:00", "c2"),
        bill("b5", "2019-12-19T11:00:00+08:00", "c2"),
    ];
    let snapshot = [customer("c2").set("prior_bill_payments", 1)];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        returning(&events[3], "2019-12-23", "2020-03-21"),
    ];
    check("s5", &events, &snapshot, &expected);
}

#[test]
fn s5_first_qualifying_payment_decides() {
    // A payment outside the period or with an excluded card is not a qualifying one: the
    // reward goes to the first payment that qualifies (returning by then, S6).
    let events = [
        bill("b1", "2019-12-18T10:00:00+08:00", "c1"),
        bill("b2", "2019-12-19T10:00:00+08:00", "c1").set("card_product", "citi_cash_back_amex"),
        bill("b3", "2019-12-20T10:00:00+08:00", "c1"),
        bill("b4", "2019-12-23T10:00:00+08:00", "c1"),
    ];
    let expected = [returning(&events[2], "2019-12-24", "2020-03-22")];
    check("s5-first", &events, &[], &expected);
}

// S6 ------------------------------------------------------------------------------------

#[test]
fn s6_other_card_bill_payment_counts_as_earlier() {
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1").set("card_product", "other"),
        bill("b2", "2019-12-20T10:00:00+08:00", "c1"),
    ];
    let expected = [returning(&events[1], "2019-12-24", "2020-03-22")];
    check("s6-other-card", &events, &[], &expected);
}

#[test]
fn s6_autopay_payments_any_date_count_as_earlier() {
    let events = [
        // Not a designated merchant, long before the period, another bank's card.
        autopay("a1", "2019-11-15T10:00:00+08:00", "c1")
            .set("merchant", "WSD")
            .set("card_product", "other"),
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        // In the period: reward 2 for c2, and a bill payment afterwards is returning.
        autopay("a2", "2019-12-19T10:00:00+08:00", "c2"),
        bill("b2", "2019-12-19T11:00:00+08:00", "c2"),
    ];
    let expected = [
        returning(&events[1], "2019-12-23", "2020-03-21"),
        reward_2(&events[2], "2019-12-27", "2020-05-24"),
        returning(&events[3], "2019-12-23", "2020-03-21"),
    ];
    check("s6-autopay", &events, &[], &expected);
}

#[test]
fn s6_snapshot_prior_bill_payments_count() {
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        bill("b2", "2019-12-19T10:00:00+08:00", "c2"),
    ];
    let snapshot = [
        customer("c1").set("prior_bill_payments", 1),
        customer("c2").set("prior_bill_payments", 0),
    ];
    let expected = [
        returning(&events[0], "2019-12-23", "2020-03-21"),
        first_time(&events[1], "2019-12-23", "2020-03-21"),
    ];
    check("s6-snapshot", &events, &snapshot, &expected);
}

// S7 ------------------------------------------------------------------------------------

#[test]
fn s7_credit_by_second_hk_working_day_and_valid_90_days() {
    let events = [
        // Thursday: Friday, then Monday.
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        // Monday before Christmas: 24th, then 27th (25th, 26th are holidays).
        bill("b2", "2019-12-23T10:00:00+08:00", "c2"),
        // 16:30Z on Sunday 22nd is 00:30 on Monday 23rd in Hong Kong.
        bill("b3", "2019-12-22T16:30:00Z", "c3"),
        // Christmas Eve: 27th, then 30th.
        bill("b4", "2019-12-24T10:00:00+08:00", "c4"),
        // New Year's Eve: 1st is a holiday, then 2nd and 3rd.
        bill("b5", "2019-12-31T10:00:00+08:00", "c5"),
        // Lunar New Year: 24th, then 25th-28th are weekend or holidays, then 29th.
        bill("b6", "2020-01-23T10:00:00+08:00", "c6"),
        // Last day: a weekend, then Monday 3rd and Tuesday 4th.
        bill("b7", "2020-01-31T10:00:00+08:00", "c7"),
    ];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        first_time(&events[1], "2019-12-27", "2020-03-25"),
        first_time(&events[2], "2019-12-27", "2020-03-25"),
        first_time(&events[3], "2019-12-30", "2020-03-28"),
        first_time(&events[4], "2020-01-03", "2020-04-01"),
        first_time(&events[5], "2020-01-29", "2020-04-27"),
        first_time(&events[6], "2020-02-04", "2020-05-03"),
    ];
    check("s7", &events, &[], &expected);
}

#[test]
fn s7_returning_coupon_has_the_same_dates() {
    let events = [bill("b1", "2020-01-23T10:00:00+08:00", "c1")];
    let snapshot = [customer("c1").set("prior_bill_payments", 5)];
    let expected = [returning(&events[0], "2020-01-29", "2020-04-27")];
    check("s7-returning", &events, &snapshot, &expected);
}

// S8 ------------------------------------------------------------------------------------

#[test]
fn s8_first_autopay_to_designated_merchant_gets_two_50s() {
    let at = "2019-12-20T10:00:00+08:00";
    let events = [
        autopay("a1", at, "c1"),
        autopay("a2", at, "c2").set("merchant", "HK_ELECTRIC"),
        autopay("a3", at, "c3").set("merchant", "THREE_HK"),
        autopay("a4", at, "c4").set("merchant", "WSD"),
        autopay("a5", at, "c5").set("merchant", "TOWNGAS"),
    ];
    let expected = [
        reward_2(&events[0], "2019-12-27", "2020-05-24"),
        reward_2(&events[1], "2019-12-27", "2020-05-24"),
        reward_2(&events[2], "2019-12-27", "2020-05-24"),
    ];
    check("s8-merchants", &events, &[], &expected);
}

#[test]
fn s8_snapshot_activation_before_period_blocks_reward_2() {
    let at = "2019-12-20T10:00:00+08:00";
    let events = [
        autopay("a1", at, "c1"),
        autopay("a2", at, "c2"),
        autopay("a3", at, "c3"),
        autopay("a4", at, "c4"),
    ];
    let snapshot = [
        customer("c1").set("autopay_activated_on", "2019-12-18"),
        customer("c2").set("autopay_activated_on", "2019-12-19"),
        customer("c3").set("autopay_activated_on", "2018-06-01"),
        customer("c4").set("autopay_activated_on", "2019-12-20"),
    ];
    let expected = [
        reward_2(&events[1], "2019-12-27", "2020-05-24"),
        reward_2(&events[3], "2019-12-27", "2020-05-24"),
    ];
    check("s8-snapshot", &events, &snapshot, &expected);
}

#[test]
fn s8_stream_activation_before_period_blocks_reward_2() {
    let at = "2019-12-20T10:00:00+08:00";
    let events = [
        // 23:59:59 on the 18th in Hong Kong: before the period.
        event("x1", "autopay_activation", "2019-12-18T15:59:59Z", "c1"),
        autopay("a1", at, "c1"),
        // Midnight on the 19th in Hong Kong: in the period, does not block.
        event("x2", "autopay_activation", "2019-12-18T16:00:00Z", "c2"),
        autopay("a2", at, "c2"),
        // An autopay payment before the period is an activation too, any card, any merchant.
        autopay("a3", "2019-12-10T10:00:00+08:00", "c3")
            .set("card_product", "other")
            .set("merchant", "WSD"),
        autopay("a4", at, "c3"),
        // An activation in the period followed by the payment.
        event(
            "x5",
            "autopay_activation",
            "2019-12-19T10:00:00+08:00",
            "c5",
        ),
        autopay("a5", at, "c5"),
    ];
    let expected = [
        reward_2(&events[3], "2019-12-27", "2020-05-24"),
        reward_2(&events[7], "2019-12-27", "2020-05-24"),
    ];
    check("s8-stream", &events, &[], &expected);
}

#[test]
fn s8_reward_2_at_most_once_per_customer() {
    let events = [
        autopay("a1", "2019-12-20T10:00:00+08:00", "c1"),
        autopay("a2", "2019-12-21T10:00:00+08:00", "c1").set("merchant", "HK_ELECTRIC"),
        autopay("a3", "2020-01-20T10:00:00+08:00", "c1").set("merchant", "THREE_HK"),
    ];
    let expected = [reward_2(&events[0], "2019-12-27", "2020-05-24")];
    check("s8-once", &events, &[], &expected);
}

// S9 ------------------------------------------------------------------------------------

#[test]
fn s9_reward_2_credit_dates_and_150_days() {
    let events = [
        // Friday 20th: the 2nd working day would be the 24th; before the 24th, so the 27th.
        autopay("a1", "2019-12-20T10:00:00+08:00", "c1"),
        // 23:59:59 on the 23rd in Hong Kong: still before the 24th.
        autopay("a2", "2019-12-23T15:59:59Z", "c2"),
        // Midnight on the 24th in Hong Kong: the 2nd working day after, the 30th.
        autopay("a3", "2019-12-23T16:00:00Z", "c3"),
        autopay("a4", "2020-01-23T10:00:00+08:00", "c4"),
    ];
    let expected = [
        reward_2(&events[0], "2019-12-27", "2020-05-24"),
        reward_2(&events[1], "2019-12-27", "2020-05-24"),
        reward_2(&events[2], "2019-12-30", "2020-05-27"),
        reward_2(&events[3], "2020-01-29", "2020-06-26"),
    ];
    check("s9", &events, &[], &expected);
}

// S10 -----------------------------------------------------------------------------------

/// A snapshot row for a customer whose wallet authorized the points programme.
fn authorized(c: &str) -> Value {
    customer(c).set("points_authorized", true)
}

#[test]
fn s10_points_need_a_principal_card_of_the_listed_products() {
    let at = "2019-12-20T10:00:00+08:00";
    let eligible = [
        "citi_ultima",
        "citi_prestige",
        "citi_premiermiles",
        "citi_rewards",
        "citi_gold",
        "citi_classic",
    ];
    let not_eligible = [
        "citi_cash_back",
        "citi_clear",
        "citi_octopus",
        "citi_cash_back_amex",
        "citi_rewards_unionpay",
        "other",
    ];
    let mut events = Vec::new();
    let mut snapshot = Vec::new();
    let mut expected = Vec::new();
    for card in eligible {
        let e = redeem(&format!("r-{card}"), at, card, &["50", "50"]).set("card_product", card);
        expected.push(approve(&e, "2019-12-20"));
        events.push(e);
        snapshot.push(authorized(card));
    }
    for card in not_eligible {
        let e = redeem(&format!("r-{card}"), at, card, &["50", "50"]).set("card_product", card);
        expected.push(reject(&e, "card_not_eligible"));
        events.push(e);
        snapshot.push(authorized(card));
    }
    for card in eligible {
        let e = redeem(&format!("s-{card}"), at, card, &["50", "50"])
            .set("card_product", card)
            .set("card_role", "supplementary");
        expected.push(reject(&e, "card_not_eligible"));
        events.push(e);
    }
    check("s10", &events, &snapshot, &expected);
}

// S11 -----------------------------------------------------------------------------------

#[test]
fn s11_points_need_an_authorization() {
    let events = [
        // c1: not yet authorized, then authorized by an event.
        redeem("r1", "2019-12-20T10:00:00+08:00", "c1", &["50", "50"]),
        event(
            "z1",
            "points_authorization",
            "2019-12-20T10:05:00+08:00",
            "c1",
        ),
        redeem("r2", "2019-12-20T10:10:00+08:00", "c1", &["50", "50"]),
        // c2: authorized in the snapshot.
        redeem("r3", "2019-12-20T10:00:00+08:00", "c2", &["50", "50"]),
        // c3: the snapshot says no.
        redeem("r4", "2019-12-20T10:00:00+08:00", "c3", &["50", "50"]),
        // c4's authorization is not c5's.
        event(
            "z4",
            "points_authorization",
            "2019-12-20T10:00:00+08:00",
            "c4",
        ),
        redeem("r5", "2019-12-20T10:10:00+08:00", "c5", &["50", "50"]),
    ];
    let snapshot = [
        authorized("c2"),
        customer("c3").set("points_authorized", false),
    ];
    let expected = [
        reject(&events[0], "not_authorized"),
        approve(&events[2], "2019-12-20"),
        approve(&events[3], "2019-12-20"),
        reject(&events[4], "not_authorized"),
        reject(&events[6], "not_authorized"),
    ];
    check("s11", &events, &snapshot, &expected);
}

// S12 -----------------------------------------------------------------------------------

#[test]
fn s12_face_values_are_50_or_20_and_not_empty() {
    let at = "2019-12-20T10:00:00+08:00";
    let events = [
        redeem("r1", at, "c1", &["30"]),
        redeem("r2", at, "c1", &[]),
        redeem("r3", at, "c1", &["50", "50", "30"]),
        redeem("r4", at, "c1", &["100"]),
        redeem("r5", at, "c1", &["50", "20", "20", "20"]),
    ];
    let expected = [
        reject(&events[0], "invalid_face_value"),
        reject(&events[1], "invalid_face_value"),
        reject(&events[2], "invalid_face_value"),
        reject(&events[3], "invalid_face_value"),
        approve(&events[4], "2019-12-20"),
    ];
    check("s12", &events, &[authorized("c1")], &expected);
}

// S13 -----------------------------------------------------------------------------------

#[test]
fn s13_redemption_at_least_100() {
    let at = "2019-12-20T10:00:00+08:00";
    let events = [
        redeem("r1", at, "c1", &["50", "20"]),
        redeem("r2", at, "c1", &["20", "20", "20", "20"]),
        redeem("r3", at, "c1", &["50", "20", "20"]),
        redeem("r4", at, "c1", &["20", "20", "20", "20", "20"]),
        redeem("r5", at, "c1", &["50", "50"]),
    ];
    let expected = [
        reject(&events[0], "below_minimum"),
        reject(&events[1], "below_minimum"),
        reject(&events[2], "below_minimum"),
        approve(&events[3], "2019-12-20"),
        approve(&events[4], "2019-12-20"),
    ];
    check("s13", &events, &[authorized("c1")], &expected);
}

// S14 -----------------------------------------------------------------------------------

#[test]
fn s14_daily_limit_1000_per_wallet_per_hk_date() {
    let mut five_twenty = FIVE_HUNDRED.to_vec();
    five_twenty.push("20");
    let mut also_five_hundred = vec!["50"; 8];
    also_five_hundred.extend(["20"; 5]);
    let events = [
        redeem("r1", "2019-12-20T10:00:00+08:00", "c1", &FIVE_HUNDRED),
        // 500 + 520 = 1,020: the whole request is rejected, nothing of it counts.
        redeem("r2", "2019-12-20T11:00:00+08:00", "c1", &five_twenty),
        // 500 + 500 = 1,000 exactly.
        redeem("r3", "2019-12-20T12:00:00+08:00", "c1", &also_five_hundred),
        // 23:59:59 on the 20th in Hong Kong: still the 20th, over the limit.
        redeem("r4", "2019-12-20T15:59:59Z", "c1", &["50", "50"]),
        // Another wallet has its own limit.
        redeem("r5", "2019-12-20T13:00:00+08:00", "c2", &["50", "50"]),
        // Midnight on the 21st in Hong Kong: a new day.
        redeem("r6", "2019-12-20T16:00:00Z", "c1", &["50", "50"]),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        reject(&events[1], "daily_limit_exceeded"),
        approve(&events[2], "2019-12-20"),
        reject(&events[3], "daily_limit_exceeded"),
        approve(&events[4], "2019-12-20"),
        approve(&events[5], "2019-12-21"),
    ];
    check(
        "s14",
        &events,
        &[authorized("c1"), authorized("c2")],
        &expected,
    );
}

// S15 -----------------------------------------------------------------------------------

#[test]
fn s15_no_rate_means_no_points_and_no_balance_check() {
    // The shipped rules set no rate: a zero balance does not stop an approval, and the
    // approval carries no `points`.
    let events = [redeem(
        "r1",
        "2019-12-20T10:00:00+08:00",
        "c1",
        &["50", "50"],
    )];
    let snapshot = [authorized("c1").set("points_balance", "0")];
    let expected = [approve(&events[0], "2019-12-20")];
    check("s15-no-rate", &events, &snapshot, &expected);
}

/// `points` as a canonical decimal string, whether written as a number or a string.
fn normalize_points(mut d: Value) -> Value {
    if let Some(p) = d.get("points").cloned() {
        let text = match p {
            Value::String(s) => s,
            other => other.to_string(),
        };
        let text = if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        } else {
            text
        };
        d = d.set("points", text);
    }
    d
}

#[test]
fn s15_a_rate_checks_and_debits_a_known_balance() {
    // A copy of the rules with the commented rate switched on: 250 points per HK$1.
    let dir = Dir::new("s15-rate");
    let rules = dir.copy_rules();
    let file = rules.join("promotions").join("points-conversion.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains("# rate: \"250\""),
        "the rate line moved:\n{text}"
    );
    std::fs::write(&file, text.replace("# rate: \"250\"", "rate: \"250\"")).unwrap();

    let at = "2019-12-20T10:00:00+08:00";
    let events = [
        // HK$100 needs 25,000 points of 30,000: approved, 5,000 left.
        redeem("r1", at, "c1", &["50", "50"]),
        // Another 25,000: more than 5,000.
        redeem("r2", at, "c1", &["20", "20", "20", "20", "20"]),
        // c2's balance is not known: no check, still debited.
        redeem("r3", at, "c2", &["50", "50"]),
        // S13 comes before S15.
        redeem("r4", at, "c3", &["50", "20"]),
    ];
    let snapshot = [
        authorized("c1").set("points_balance", "30000"),
        authorized("c2"),
        authorized("c3").set("points_balance", "0"),
    ];
    let input = dir.write_jsonl("events.jsonl", &events);
    let customers = dir.write_jsonl("customers.jsonl", &snapshot);
    let mut run = dir.eval(&rules, &input, Some(&customers));
    run.assert_clean();
    run.decisions = run.decisions.into_iter().map(normalize_points).collect();
    let expected = [
        approve(&events[0], "2019-12-20").set("points", "25000"),
        reject(&events[1], "insufficient_points"),
        approve(&events[2], "2019-12-20").set("points", "25000"),
        reject(&events[3], "below_minimum"),
    ];
    assert_decisions(&expected, &run);
}

// S16 -----------------------------------------------------------------------------------

#[test]
fn s16_approved_coupons_credited_same_day_without_expiry() {
    // 17:00Z on the 19th is 01:00 on the 20th in Hong Kong.
    let r1 = redeem(
        "r1",
        "2019-12-19T17:00:00Z",
        "c1",
        &["50", "20", "50", "20"],
    );
    let c = |n| coupon_id(&r1, "points-conversion", n);
    let events = [
        r1.clone(),
        // Usable the same HK day, at or above the min spend.
        purchase("p1", "2019-12-20T09:00:00+08:00", "c1")
            .set("amount", "21.00")
            .set("coupons", json!([c(2)])),
        // Services, bills and autopay, months later: no expiry.
        purchase("p2", "2020-11-30T09:00:00+08:00", "c1")
            .set("channel", "services")
            .set("amount", "51.00")
            .set("coupons", json!([c(1)])),
        bill("b3", "2020-11-30T10:00:00+08:00", "c1").set("coupons", json!([c(3)])),
        autopay("a4", "2020-11-30T11:00:00+08:00", "c1")
            .set("merchant", "WSD")
            .set("coupons", json!([c(4)])),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        accept_coupon(&events[1], &c(2)),
        accept_coupon(&events[2], &c(1)),
        accept_coupon(&events[3], &c(3)),
        accept_coupon(&events[4], &c(4)),
    ];
    check("s16-coupons", &events, &[authorized("c1")], &expected);
}

#[test]
fn s16_points_coupons_not_usable_online() {
    let r1 = redeem("r1", "2019-12-20T10:00:00+08:00", "c1", &["50", "50"]);
    let c1 = coupon_id(&r1, "points-conversion", 1);
    let events = [
        r1.clone(),
        purchase("p1", "2019-12-20T11:00:00+08:00", "c1")
            .set("channel", "online")
            .set("coupons", json!([c1])),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        reject_coupon(&events[1], &c1, "channel_not_allowed"),
    ];
    check("s16-online", &events, &[authorized("c1")], &expected);
}

#[test]
fn s16_redemption_checks_run_in_order_s10_to_s15() {
    let at = "2019-12-20T10:00:00+08:00";
    let events = [
        // Everything wrong: the card comes first (S10).
        redeem("r1", at, "c1", &["30"]).set("card_role", "supplementary"),
        // Card right, not authorized, bad face value: S11.
        redeem("r2", at, "c1", &["30"]),
        event("z1", "points_authorization", at, "c1"),
        // Authorized, bad face values below the minimum: S12.
        redeem("r3", at, "c1", &["30"]),
        redeem("r4", at, "c1", &["20", "30"]),
        // Fill the day to exactly HK$1,000.
        redeem("r5", at, "c1", &FIVE_HUNDRED),
        redeem("r6", at, "c1", &FIVE_HUNDRED),
        // Below the minimum and over the limit: S13.
        redeem("r7", at, "c1", &["50", "20"]),
        // Over the limit: S14.
        redeem("r8", at, "c1", &["50", "50"]),
        // Over the limit, unauthorized, ineligible card: S10 again.
        redeem("r9", at, "c1", &["50", "50"]).set("card_product", "citi_clear"),
    ];
    let expected = [
        reject(&events[0], "card_not_eligible"),
        reject(&events[1], "not_authorized"),
        reject(&events[3], "invalid_face_value"),
        reject(&events[4], "invalid_face_value"),
        approve(&events[5], "2019-12-20"),
        approve(&events[6], "2019-12-20"),
        reject(&events[7], "below_minimum"),
        reject(&events[8], "daily_limit_exceeded"),
        reject(&events[9], "card_not_eligible"),
    ];
    check("s16-order", &events, &[], &expected);
}

// S17 -----------------------------------------------------------------------------------

/// An authorized redemption of two HK$50 coupons for `c` on 2019-12-20 (HK) and the ids
/// of its coupons.
fn two_fifties(id: &str, c: &str) -> (Value, String, String) {
    let r = redeem(id, "2019-12-20T10:00:00+08:00", c, &["50", "50"]);
    let a = coupon_id(&r, "points-conversion", 1);
    let b = coupon_id(&r, "points-conversion", 2);
    (r, a, b)
}

#[test]
fn s17_one_coupon_per_transaction() {
    let (r1, a, b) = two_fifties("r1", "c1");
    let events = [
        r1,
        purchase("p1", "2019-12-20T11:00:00+08:00", "c1").set("coupons", json!([a, b])),
        // Neither coupon was spent by p1.
        purchase("p2", "2019-12-20T12:00:00+08:00", "c1").set("coupons", json!([a])),
        // The count is checked before anything else: a used and an unknown coupon.
        purchase("p3", "2019-12-20T13:00:00+08:00", "c1").set("coupons", json!([a, "nope"])),
        purchase("p4", "2019-12-20T14:00:00+08:00", "c1").set("coupons", json!([b])),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        reject_coupon(&events[1], &a, "one_coupon_per_transaction"),
        reject_coupon(&events[1], &b, "one_coupon_per_transaction"),
        accept_coupon(&events[2], &a),
        reject_coupon(&events[3], &a, "one_coupon_per_transaction"),
        reject_coupon(&events[3], "nope", "one_coupon_per_transaction"),
        accept_coupon(&events[4], &b),
    ];
    check("s17-one", &events, &[authorized("c1")], &expected);
}

#[test]
fn s17_coupon_of_another_wallet_or_unknown() {
    let (r1, a, _) = two_fifties("r1", "c1");
    let events = [
        r1,
        purchase("p1", "2019-12-20T11:00:00+08:00", "c2").set("coupons", json!([a])),
        purchase("p2", "2019-12-20T11:00:00+08:00", "c1")
            .set("coupons", json!(["r1:points-conversion:3"])),
        purchase("p3", "2019-12-20T11:00:00+08:00", "c1").set("coupons", json!(["nope"])),
        // c2's attempt did not spend it.
        purchase("p4", "2019-12-20T12:00:00+08:00", "c1").set("coupons", json!([a])),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        reject_coupon(&events[1], &a, "coupon_unknown"),
        reject_coupon(&events[2], "r1:points-conversion:3", "coupon_unknown"),
        reject_coupon(&events[3], "nope", "coupon_unknown"),
        accept_coupon(&events[4], &a),
    ];
    check(
        "s17-unknown",
        &events,
        &[authorized("c1"), authorized("c2")],
        &expected,
    );
}

#[test]
fn s17_coupon_used_twice() {
    let (r1, a, _) = two_fifties("r1", "c1");
    let events = [
        r1,
        purchase("p1", "2019-12-20T11:00:00+08:00", "c1").set("coupons", json!([a])),
        purchase("p2", "2019-12-21T11:00:00+08:00", "c1").set("coupons", json!([a])),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        accept_coupon(&events[1], &a),
        reject_coupon(&events[2], &a, "coupon_already_used"),
    ];
    check("s17-used", &events, &[authorized("c1")], &expected);
}

#[test]
fn s17_coupon_before_credit_date() {
    // Paid Monday 23rd: credited by Friday 27th.
    let b1 = bill("b1", "2019-12-23T10:00:00+08:00", "c1");
    let c = coupon_id(&b1, "bill-first-time", 1);
    let events = [
        b1.clone(),
        // 23:59:59 on the 26th in Hong Kong.
        bill("b2", "2019-12-26T15:59:59Z", "c1")
            .set("amount", "160.00")
            .set("coupons", json!([c])),
        // Midnight on the 27th in Hong Kong; exactly the min spend.
        bill("b3", "2019-12-26T16:00:00Z", "c1")
            .set("amount", "160.00")
            .set("coupons", json!([c])),
    ];
    let expected = [
        first_time(&events[0], "2019-12-27", "2020-03-25"),
        reject_coupon(&events[1], &c, "coupon_not_yet_credited"),
        accept_coupon(&events[2], &c),
    ];
    check("s17-credit", &events, &[], &expected);
}

#[test]
fn s17_coupon_after_valid_until() {
    // Both credited 2019-12-23, valid until 2020-03-21 inclusive.
    let b1 = bill("b1", "2019-12-19T10:00:00+08:00", "c1");
    let b2 = bill("b2", "2019-12-19T10:00:00+08:00", "c2");
    let c1 = coupon_id(&b1, "bill-first-time", 1);
    let c2 = coupon_id(&b2, "bill-first-time", 1);
    let events = [
        b1.clone(),
        b2.clone(),
        // 23:59:59 on 2020-03-21 in Hong Kong: the last day.
        bill("b3", "2020-03-21T15:59:59Z", "c1").set("coupons", json!([c1])),
        // Midnight on 2020-03-22 in Hong Kong: expired.
        bill("b4", "2020-03-21T16:00:00Z", "c2").set("coupons", json!([c2])),
    ];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        first_time(&events[1], "2019-12-23", "2020-03-21"),
        accept_coupon(&events[2], &c1),
        reject_coupon(&events[3], &c2, "coupon_expired"),
    ];
    check("s17-expired", &events, &[], &expected);
}

#[test]
fn s17_channel_not_in_usable_for() {
    let (r1, a, _) = two_fifties("r1", "c1");
    // c2: reward 2 coupons (autopay only), credited 2019-12-27.
    let a2 = autopay("a2", "2019-12-20T10:00:00+08:00", "c2");
    let r2c = coupon_id(&a2, "autopay-first-activation", 1);
    // c3: a reward 1 coupon (bill payment only), credited 2019-12-23.
    let b3 = bill("b3", "2019-12-19T10:00:00+08:00", "c3");
    let r1c = coupon_id(&b3, "bill-first-time", 1);
    // After the period, so that no payment below earns anything.
    let feb = "2020-02-03T10:00:00+08:00";
    let events = [
        r1,
        a2.clone(),
        b3.clone(),
        purchase("p1", "2019-12-20T11:00:00+08:00", "c1")
            .set("channel", "online")
            .set("coupons", json!([a])),
        bill("b4", feb, "c2").set("coupons", json!([r2c])),
        purchase("p5", feb, "c3")
            .set("amount", "500.00")
            .set("coupons", json!([r1c])),
        autopay("a6", feb, "c3").set("coupons", json!([r1c])),
        // The right channels.
        autopay("a7", feb, "c2").set("coupons", json!([r2c])),
        bill("b8", feb, "c3").set("coupons", json!([r1c])),
        purchase("p9", feb, "c1").set("coupons", json!([a])),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        reward_2(&events[1], "2019-12-27", "2020-05-24"),
        first_time(&events[2], "2019-12-23", "2020-03-21"),
        reject_coupon(&events[3], &a, "channel_not_allowed"),
        reject_coupon(&events[4], &r2c, "channel_not_allowed"),
        reject_coupon(&events[5], &r1c, "channel_not_allowed"),
        reject_coupon(&events[6], &r1c, "channel_not_allowed"),
        accept_coupon(&events[7], &r2c),
        accept_coupon(&events[8], &r1c),
        accept_coupon(&events[9], &a),
    ];
    check("s17-channel", &events, &[authorized("c1")], &expected);
}

#[test]
fn s17_amount_below_min_spend() {
    let r1 = redeem(
        "r1",
        "2019-12-20T10:00:00+08:00",
        "c1",
        &["50", "20", "20", "20"],
    );
    let fifty = coupon_id(&r1, "points-conversion", 1);
    let twenty = coupon_id(&r1, "points-conversion", 2);
    let p = |id: &str, amount: &str, c: &str| {
        purchase(id, "2019-12-20T11:00:00+08:00", "c1")
            .set("amount", amount)
            .set("coupons", json!([c]))
    };
    let events = [
        r1.clone(),
        p("p1", "50.99", &fifty),
        p("p2", "51.00", &fifty),
        p("p3", "20.99", &twenty),
        p("p4", "21", &twenty),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        reject_coupon(&events[1], &fifty, "below_min_spend"),
        accept_coupon(&events[2], &fifty),
        reject_coupon(&events[3], &twenty, "below_min_spend"),
        accept_coupon(&events[4], &twenty),
    ];
    check("s17-min-spend", &events, &[authorized("c1")], &expected);
}

#[test]
fn s17_coupon_checks_run_in_order() {
    let (r1, a, b) = two_fifties("r1", "c1");
    // Credited 2019-12-23, valid until 2020-03-21, bill payment only.
    let b2 = bill("b2", "2019-12-19T10:00:00+08:00", "c2");
    let r1c = coupon_id(&b2, "bill-first-time", 1);
    let events = [
        r1,
        b2.clone(),
        purchase("p1", "2019-12-20T11:00:00+08:00", "c1").set("coupons", json!([a])),
        // Used, and presented by another wallet, online, too small: unknown.
        purchase("p2", "2019-12-20T12:00:00+08:00", "c3")
            .set("channel", "online")
            .set("amount", "1.00")
            .set("coupons", json!([a])),
        // Used, online, too small: already used.
        purchase("p3", "2019-12-20T12:00:00+08:00", "c1")
            .set("channel", "online")
            .set("amount", "1.00")
            .set("coupons", json!([a])),
        // Not yet credited, wrong channel, too small: not yet credited.
        purchase("p4", "2019-12-20T12:00:00+08:00", "c2")
            .set("channel", "online")
            .set("amount", "1.00")
            .set("coupons", json!([r1c])),
        // Expired, wrong channel, too small: expired.
        purchase("p5", "2020-03-25T12:00:00+08:00", "c2")
            .set("channel", "online")
            .set("amount", "1.00")
            .set("coupons", json!([r1c])),
        // Wrong channel and too small: channel.
        purchase("p6", "2020-03-25T12:00:00+08:00", "c1")
            .set("channel", "online")
            .set("amount", "1.00")
            .set("coupons", json!([b])),
    ];
    let expected = [
        approve(&events[0], "2019-12-20"),
        first_time(&events[1], "2019-12-23", "2020-03-21"),
        accept_coupon(&events[2], &a),
        reject_coupon(&events[3], &a, "coupon_unknown"),
        reject_coupon(&events[4], &a, "coupon_already_used"),
        reject_coupon(&events[5], &r1c, "coupon_not_yet_credited"),
        reject_coupon(&events[6], &r1c, "coupon_expired"),
        reject_coupon(&events[7], &b, "channel_not_allowed"),
    ];
    check("s17-order", &events, &[authorized("c1")], &expected);
}

#[test]
fn s17_payment_without_coupons_has_no_coupon_decision() {
    let events = [
        purchase("p1", "2019-12-20T11:00:00+08:00", "c1"),
        purchase("p2", "2019-12-20T11:00:00+08:00", "c1").set("coupons", json!([])),
    ];
    check("s17-none", &events, &[], &[]);
}

// S18 -----------------------------------------------------------------------------------

#[test]
fn s18_coupon_use_is_decided_before_promotions() {
    let r1 = redeem("r1", "2019-12-19T10:00:00+08:00", "c1", &["50", "50"]);
    let a = coupon_id(&r1, "points-conversion", 1);
    let events = [
        r1.clone(),
        // Uses a coupon and is the customer's first bill payment.
        bill("b1", "2019-12-19T11:00:00+08:00", "c1").set("coupons", json!([a])),
    ];
    let expected = [
        approve(&events[0], "2019-12-19"),
        accept_coupon(&events[1], &a),
        first_time(&events[1], "2019-12-23", "2020-03-21"),
    ];
    check("s18-order", &events, &[authorized("c1")], &expected);
}

#[test]
fn s18_coupon_granted_by_an_event_is_unknown_to_its_own_coupon_use() {
    // Coupon use runs first, when the event's own coupon does not exist yet (were it
    // granted first, the reason would be `coupon_not_yet_credited`).
    let b1 = bill("b1", "2019-12-19T10:00:00+08:00", "c1");
    let own = coupon_id(&b1, "bill-first-time", 1);
    let events = [b1.set("coupons", json!([own]))];
    let expected = [
        reject_coupon(&events[0], &own, "coupon_unknown"),
        first_time(&events[0], "2019-12-23", "2020-03-21"),
    ];
    check("s18-own", &events, &[], &expected);
}

#[test]
fn s18_facts_update_after_the_event() {
    // A first bill payment is not its own earlier payment; an autopay payment in the period
    // is not its own earlier activation; both count for the events after them.
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        autopay("a2", "2019-12-19T10:00:00+08:00", "c2"),
        bill("b2", "2019-12-19T11:00:00+08:00", "c2"),
    ];
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        reward_2(&events[1], "2019-12-27", "2020-05-24"),
        returning(&events[2], "2019-12-23", "2020-03-21"),
    ];
    check("s18-facts", &events, &[], &expected);
}

#[test]
fn s18_repeated_event_id_is_skipped() {
    let events = [
        bill("b1", "2019-12-19T10:00:00+08:00", "c1"),
        // Same id: skipped, no decision, and it is not c1's or c2's bill payment.
        bill("b1", "2019-12-19T11:00:00+08:00", "c1"),
        bill("b1", "2019-12-19T11:00:00+08:00", "c2"),
        bill("b2", "2019-12-20T10:00:00+08:00", "c2"),
    ];
    let run = eval("s18-duplicate", &events, &[]);
    run.assert_clean();
    let expected = [
        first_time(&events[0], "2019-12-23", "2020-03-21"),
        first_time(&events[3], "2019-12-24", "2020-03-22"),
    ];
    assert_decisions(&expected, &run);
    assert!(
        run.stderr.contains(
            "4 lines read: 2 decided, 0 rejected, 2 duplicates, 0 blank; 2 decisions written"
        ),
        "the summary should count the duplicates:\n{}",
        run.stderr
    );
}
