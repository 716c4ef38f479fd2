/*!
`promo serve`, the HTTP service of `docs/service.md`, tested as a process over loopback.

Every test starts the real binary (`promo serve --rules DIR --bind 127.0.0.1:0 --today
2020-01-02 ...`), reads its address from the first line of standard output and stops it at
the end (see `server.rs`). Decisions are compared with what `promo eval` writes for the same
events, or with decisions worked out by hand from PRODUCT.md (the calendar facts are those
of `clauses.rs`: a bill paid on 2019-12-19 is credited by 2019-12-23 and valid until
2020-03-21; an autopay paid on 2019-12-20 is credited by 2019-12-27 and valid until
2020-05-24). Every wait is bounded (poll every 100 ms for at most 10 s), every load is
bounded in count, and no assertion is about timing.
*/

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::gen::{self, GenConfig};
use crate::util::*;

#[path = "server.rs"]
pub(crate) mod server;

use server::{metric, Client, Resp, Serve, Server, TODAY, WAIT};

// ---------------------------------------------------------------------------------------
// Helpers

/// A server on the shipped rules, logs in `dir`.
pub(crate) fn shipped(dir: &Dir) -> Serve {
    Serve::new(&shipped_rules(), &dir.path().join("serve.log"))
}

/// The decisions of results, in order, one list.
pub(crate) fn decisions_of(results: &[Value]) -> Vec<Value> {
    results
        .iter()
        .flat_map(|r| {
            r["decisions"]
                .as_array()
                .unwrap_or_else(|| panic!("no decisions array in {r}"))
                .clone()
        })
        .collect()
}

/// Asserts the envelope of one result: its event, version, replay and dry-run flags, and
/// that each of its decisions is about its event.
#[track_caller]
pub(crate) fn assert_result(
    result: &Value,
    event: &Value,
    version: &str,
    replay: bool,
    dry_run: bool,
) {
    let id = &event["id"];
    assert_eq!(&result["event_id"], id, "event_id of {result}");
    assert_eq!(
        result["ruleset_version"].as_str(),
        Some(version),
        "ruleset_version of {result}"
    );
    assert_eq!(result["replay"], json!(replay), "replay of {result}");
    assert_eq!(result["dry_run"], json!(dry_run), "dry_run of {result}");
    let decisions = result["decisions"]
        .as_array()
        .unwrap_or_else(|| panic!("decisions not an array in {result}"));
    for d in decisions {
        assert_eq!(
            &d["event_id"], id,
            "a decision of another event in {result}"
        );
    }
}

/// Asserts an error answer: `status`, a JSON body `{code, message, field}` with a non-empty
/// code and message, and the code and field given (`None`: any).
#[track_caller]
pub(crate) fn assert_error(
    what: &str,
    r: &Resp,
    status: u16,
    code: Option<&str>,
    field: Option<Value>,
) {
    assert_eq!(r.status, status, "{what}: status; body {}", r.body);
    let body: Value = serde_json::from_str(&r.body).unwrap_or_else(|e| {
        panic!(
            "{what}: status {} with a body that is not JSON ({e}): {:?}",
            r.status, r.body
        )
    });
    let c = body["code"].as_str().unwrap_or_default();
    assert!(!c.is_empty(), "{what}: no code in {body}");
    let m = body["message"].as_str().unwrap_or_default();
    assert!(!m.is_empty(), "{what}: no message in {body}");
    let f = body
        .as_object()
        .and_then(|o| o.get("field"))
        .unwrap_or_else(|| panic!("{what}: no field key in {body}"));
    assert!(f.is_null() || f.is_string(), "{what}: field {f} in {body}");
    if let Some(code) = code {
        assert_eq!(c, code, "{what}: code in {body}");
    }
    if let Some(field) = field {
        assert_eq!(f, &field, "{what}: field in {body}");
    }
}

/// Collects failed checks so that one test reports all of them at once.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    /// Runs `check`; a panic in it is recorded, not propagated.
    fn check(&mut self, what: &str, check: impl FnOnce()) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check));
        if let Err(e) = outcome {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            self.0.push(format!("{what}: {msg}"));
        }
    }

    #[track_caller]
    fn assert_none(self, server: &Server) {
        if !self.0.is_empty() {
            panic!(
                "{} problem(s):\n- {}\n{}",
                self.0.len(),
                self.0.join("\n- "),
                server.logs()
            );
        }
    }
}

/// Writes `contents` to `rules/<rel>` in one step (written beside the rules, then renamed
/// into place), so that the watcher never sees half a file.
pub(crate) fn put(dir: &Dir, rules: &Path, rel: &str, contents: &str) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let staging = dir.path().join(format!("staging-{n}.yaml"));
    std::fs::write(&staging, contents).unwrap();
    std::fs::rename(&staging, rules.join(rel)).unwrap();
}

/// Runs `promo test RULES` and asserts every golden case passes.
pub(crate) fn assert_golden_pass(rules: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("test")
        .arg(rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promo test {} failed:\n{}\n{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A HK$120 in-store purchase with a Citi Octopus card (no golden case has one).
pub(crate) fn octopus(id: &str, at: &str, customer: &str) -> Value {
    purchase(id, at, customer)
        .set("card_product", "citi_octopus")
        .set("amount", "120.00")
}

/// A rule granting one HK$30 coupon for an in-store Citi Octopus purchase in January 2020;
/// no limit, so it adds no counter, fact or channel.
pub(crate) const OCTOPUS_WELCOME: &str = r#"id: octopus-welcome
clause: "Test rule: an in-store purchase with a Citi Octopus card in January 2020 earns a HK$30 coupon"
phase: promotion
on: [purchase]
when:
  - name: in_january_2020
    clause: "purchases from 2020-01-01 to 2020-01-31 inclusive, HK date"
    field: at
    between: [2020-01-01, 2020-01-31]
  - name: octopus_card
    clause: "paid with a Citi Octopus card"
    field: card_product
    eq: citi_octopus
  - name: in_store
    clause: "made in store"
    field: channel
    eq: in_store
grant:
  clause: "one HK$30 coupon, min spend HK$100, in store, credited the same day, valid 30 days"
  coupons:
    - face_value: "30"
      min_spend: "100"
      usable_for: [in_store]
  credit_by:
    days_after: 0
  valid_days: 30
"#;

/// A rule granting one HK$10 coupon for an in-store Citi Octopus purchase, at most 5
/// grants in total (`per: all`).
pub(crate) const OCTOPUS_BUDGET: &str = r#"id: octopus-budget
clause: "Test rule: in-store purchases with a Citi Octopus card earn a HK$10 coupon, 5 grants in total"
phase: promotion
on: [purchase]
when:
  - name: octopus_card
    clause: "paid with a Citi Octopus card"
    field: card_product
    eq: citi_octopus
  - name: in_store
    clause: "made in store"
    field: channel
    eq: in_store
limits:
  - name: five_in_total
    clause: "at most 5 grants in total"
    counter: octopus-budget-total
    per: all
    max_grants: 5
grant:
  clause: "one HK$10 coupon, min spend HK$50, in store, credited the same day, valid 30 days"
  coupons:
    - face_value: "10"
      min_spend: "50"
      usable_for: [in_store]
  credit_by:
    days_after: 0
  valid_days: 30
"#;

/// The coupon ids of the decisions of `result`.
pub(crate) fn coupon_ids(result: &Value) -> Vec<String> {
    decisions_of(std::slice::from_ref(result))
        .iter()
        .flat_map(|d| d["coupons"].as_array().cloned().unwrap_or_default())
        .map(|c| c["coupon_id"].as_str().unwrap().to_owned())
        .collect()
}

/// `GET /v1/wallets/{wallet}/coupons[?on=]`, asserted 200, by coupon id.
pub(crate) fn wallet_coupons(
    client: &Client,
    wallet: &str,
    on: Option<&str>,
) -> BTreeMap<String, Value> {
    let path = match on {
        Some(on) => format!("/v1/wallets/{wallet}/coupons?on={on}"),
        None => format!("/v1/wallets/{wallet}/coupons"),
    };
    let r = client.get(&path);
    assert_eq!(r.status, 200, "GET {path}: {}", r.body);
    let body = r.json();
    assert_eq!(body["wallet"], json!(wallet), "GET {path}: {body}");
    body["coupons"]
        .as_array()
        .unwrap_or_else(|| panic!("GET {path}: no coupons array in {body}"))
        .iter()
        .map(|c| (c["coupon_id"].as_str().unwrap().to_owned(), c.clone()))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Deciding events

/// One event, then an array: the decisions are `promo eval`'s for the same events, in the
/// same shapes, and every result carries the live ruleset's version.
#[test]
fn events_are_decided_as_eval_decides_them() {
    let dir = Dir::new("serve-events");
    let server = shipped(&dir).start();
    let client = server.client();
    let version = server.version();

    let r4 = redeem("v4", "2019-12-21T10:00:00+08:00", "c3", &["50", "50"]);
    let events = vec![
        bill("v1", "2019-12-19T10:00:00+08:00", "c1"),
        autopay("v2", "2019-12-20T10:00:00+08:00", "c2"),
        event(
            "v3",
            "points_authorization",
            "2019-12-20T11:00:00+08:00",
            "c3",
        ),
        r4.clone(),
        purchase("v5", "2019-12-22T10:00:00+08:00", "c3")
            .set("coupons", json!([coupon_id(&r4, "points-conversion", 1)])),
        // Decides nothing.
        event("v6", "card_link", "2019-12-22T10:00:00+08:00", "c4"),
        redeem("v7", "2019-12-22T10:00:00+08:00", "c5", &["50", "50"]),
        // Reward 1 was c1's already: nothing.
        bill("v8", "2019-12-23T10:00:00+08:00", "c1"),
    ];
    let run = eval("serve-events-eval", &events, &[]);
    run.assert_clean();
    // The batch run decides what PRODUCT.md says, so the comparison below is not vacuous.
    assert_decisions(
        &[
            first_time(&events[0], "2019-12-23", "2020-03-21"),
            reward_2(&events[1], "2019-12-27", "2020-05-24"),
            approve(&events[3], "2019-12-21"),
            accept_coupon(&events[4], &coupon_id(&r4, "points-conversion", 1)),
            reject(&events[6], "not_authorized"),
        ],
        &run,
    );

    let first = client.decide(&events[0]);
    assert!(first.is_object(), "one event answers one result: {first}");
    let rest = client.decide_all(&events[1..]);
    assert_eq!(
        rest.len(),
        events.len() - 1,
        "one result per event: {rest:?}"
    );
    let results: Vec<Value> = std::iter::once(first).chain(rest).collect();
    for (r, e) in results.iter().zip(&events) {
        assert_result(r, e, &version, false, false);
    }
    assert_eq!(
        results[5]["decisions"],
        json!([]),
        "card_link decides nothing"
    );
    eqnice(run.decisions.clone(), decisions_of(&results));
}

/// An id already decided answers its first decisions (`replay: true`); the same id with
/// another body is 409 `id_conflict`; key order and spacing do not make another body.
#[test]
fn replays_and_id_conflicts() {
    let dir = Dir::new("serve-replay");
    let server = shipped(&dir).start();
    let client = server.client();
    let version = server.version();

    let b1 = bill("r1", "2019-12-19T10:00:00+08:00", "rc1");
    let first = client.decide(&b1);
    assert_result(&first, &b1, &version, false, false);
    assert_eq!(
        first["decisions"],
        json!([first_time(&b1, "2019-12-23", "2020-03-21")])
    );

    // The same event again: the same decisions, nothing decided again.
    let again = client.decide(&b1);
    assert_result(&again, &b1, &version, true, false);
    assert_eq!(again["decisions"], first["decisions"]);

    // The same event with its keys in reverse order and other spacing: still a replay.
    let obj = b1.as_object().unwrap();
    let reordered: Vec<String> = obj
        .iter()
        .rev()
        .map(|(k, v)| format!("\n   {} :\t{}", Value::from(k.as_str()), v))
        .collect();
    let raw = format!("  {{{}\n}}\n", reordered.join(" ,"));
    assert_eq!(serde_json::from_str::<Value>(&raw).unwrap(), b1, "{raw}");
    let r = client.post_raw("/v1/events", &raw);
    assert_eq!(r.status, 200, "the reordered event: {}", r.body);
    let reordered = r.json();
    assert_result(&reordered, &b1, &version, true, false);
    assert_eq!(reordered["decisions"], first["decisions"]);

    // The same id with another amount: 409, naming the id.
    let other = b1.clone().set("amount", "300.00");
    let r = client.post("/v1/events", &other);
    assert_error(
        "same id, other body",
        &r,
        409,
        Some("id_conflict"),
        Some(json!("id")),
    );
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("r1"),
        "the message names the id: {message}"
    );

    // In a batch, the conflict is `[i].id` and nothing of the batch is decided.
    let b2 = bill("r2", "2019-12-19T11:00:00+08:00", "rc2");
    let r = client.post("/v1/events", &json!([b2, other]));
    assert_error(
        "a batch with a conflict",
        &r,
        409,
        Some("id_conflict"),
        Some(json!("[1].id")),
    );
    let fresh = client.decide(&b2);
    assert_result(&fresh, &b2, &version, false, false);
    assert_eq!(
        fresh["decisions"],
        json!([first_time(&b2, "2019-12-23", "2020-03-21")])
    );

    // A batch of a replay and a new event: the replay's first decisions, the new one decided.
    let b3 = bill("r3", "2019-12-19T12:00:00+08:00", "rc3");
    let results = client.decide_all(&[b1.clone(), b3.clone()]);
    assert_eq!(results.len(), 2, "{results:?}");
    assert_result(&results[0], &b1, &version, true, false);
    assert_eq!(results[0]["decisions"], first["decisions"]);
    assert_result(&results[1], &b3, &version, false, false);
    assert_eq!(
        results[1]["decisions"],
        json!([first_time(&b3, "2019-12-23", "2020-03-21")])
    );

    // And the conflict changed nothing: r1 still replays its first decisions.
    let last = client.decide(&b1);
    assert_result(&last, &b1, &version, true, false);
    assert_eq!(last["decisions"], first["decisions"]);
}

/// `?dry_run=true` answers what would be decided and changes nothing: no fact, counter or
/// coupon, and the id stays undecided.
#[test]
fn dry_run_changes_nothing() {
    let dir = Dir::new("serve-dry-run");
    let server = shipped(&dir).start();
    let client = server.client();
    let version = server.version();

    let d1 = bill("d1", "2019-12-19T10:00:00+08:00", "dc");
    let customer_before = client.get("/v1/customers/dc");
    assert_eq!(customer_before.status, 200, "{}", customer_before.body);
    let coupons_before = wallet_coupons(&client, "w-dc", None);
    assert!(coupons_before.is_empty(), "{coupons_before:?}");

    let expected = json!([first_time(&d1, "2019-12-23", "2020-03-21")]);
    for round in 0..2 {
        let r = client.post("/v1/events?dry_run=true", &d1);
        assert_eq!(r.status, 200, "dry run {round}: {}", r.body);
        let dry = r.json();
        assert_result(&dry, &d1, &version, false, true);
        assert_eq!(dry["decisions"], expected, "dry run {round}");
        assert_eq!(
            client.get("/v1/customers/dc").json(),
            customer_before.json(),
            "the customer after dry run {round}"
        );
        assert_eq!(
            wallet_coupons(&client, "w-dc", None),
            coupons_before,
            "the coupons after dry run {round}"
        );
    }

    // Decided for real: fresh, not a replay, and granted as the dry run said.
    let real = client.decide(&d1);
    assert_result(&real, &d1, &version, false, false);
    assert_eq!(real["decisions"], expected);
    let coupons = wallet_coupons(&client, "w-dc", None);
    assert_eq!(
        coupons.keys().cloned().collect::<Vec<_>>(),
        vec![coupon_id(&d1, "bill-first-time", 1)]
    );
    assert_eq!(
        client.get("/v1/customers/dc").json()["facts"]["bill_payments"],
        json!(1)
    );

    // A dry run uses none of a daily limit: HK$1,000 dry, then HK$1,000 for real.
    client.decide(&event(
        "d2",
        "points_authorization",
        "2020-01-06T09:00:00+08:00",
        "dp",
    ));
    let thousand = ["50"; 20];
    let dry = redeem("d3", "2020-01-06T10:00:00+08:00", "dp", &thousand);
    let r = client.post("/v1/events?dry_run=true", &dry);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["decisions"], json!([approve(&dry, "2020-01-06")]));
    assert!(
        wallet_coupons(&client, "w-dp", Some("2020-01-06")).is_empty(),
        "a dry run credits no coupon"
    );
    let real = redeem("d4", "2020-01-06T11:00:00+08:00", "dp", &thousand);
    let r = client.decide(&real);
    assert_result(&r, &real, &version, false, false);
    assert_eq!(r["decisions"], json!([approve(&real, "2020-01-06")]));
    // The dry-run id is still undecided: decided now, against the spent limit.
    let r = client.decide(&dry);
    assert_result(&r, &dry, &version, false, false);
    assert_eq!(
        r["decisions"],
        json!([reject(&dry, "daily_limit_exceeded")])
    );
}

// ---------------------------------------------------------------------------------------
// Reading state

/// Coupons with their status as of `?on=` (default `--today`), and a customer's facts and
/// counters; a bad `?on=` is a 400 naming `on`.
#[test]
fn coupons_and_customers() {
    let dir = Dir::new("serve-reads");
    let snapshot = dir.write_jsonl(
        "customers.jsonl",
        &[customer("se").set("prior_bill_payments", 3)],
    );
    let server = shipped(&dir).customers(&snapshot).start();
    let client = server.client();

    let s1 = bill("s1", "2019-12-19T10:00:00+08:00", "sa");
    let s2 = bill("s2", "2019-12-19T10:00:00+08:00", "sb");
    let s2_coupon = coupon_id(&s2, "bill-first-time", 1);
    let s3 = bill("s3", "2019-12-24T10:00:00+08:00", "sb").set("coupons", json!([s2_coupon]));
    let s5 = redeem("s5", "2019-12-30T10:00:00+08:00", "sc", &["50", "20", "50"]);
    let s6 = autopay("s6", "2019-12-20T10:00:00+08:00", "sd");
    let events = [
        s1.clone(),
        s2.clone(),
        s3.clone(),
        event(
            "s4",
            "points_authorization",
            "2019-12-29T10:00:00+08:00",
            "sc",
        ),
        s5.clone(),
        s6.clone(),
    ];
    let results = client.decide_all(&events);
    eqnice(
        vec![
            first_time(&s1, "2019-12-23", "2020-03-21"),
            first_time(&s2, "2019-12-23", "2020-03-21"),
            accept_coupon(&s3, &s2_coupon),
            approve(&s5, "2019-12-30"),
            reward_2(&s6, "2019-12-27", "2020-05-24"),
        ],
        decisions_of(&results),
    );

    sa_coupon_through_its_life(&client, &s1);
    other_wallets(&client, &s2_coupon, &s5, &s6);
    customers_read(&client);
    bad_on_dates(&client);
}

fn sa_coupon_through_its_life(client: &Client, s1: &Value) {
    // sa's HK$80 coupon through its life: credited 2019-12-23, valid until 2020-03-21.
    let granted = first_time(s1, "2019-12-23", "2020-03-21")["coupons"][0].clone();
    for (on, status) in [
        (Some("2019-12-20"), "not_yet_credited"),
        (Some("2019-12-22"), "not_yet_credited"),
        (Some("2019-12-23"), "usable"),
        (None, "usable"),
        (Some("2020-03-21"), "usable"),
        (Some("2020-03-22"), "expired"),
    ] {
        let path = match on {
            Some(on) => format!("/v1/wallets/w-sa/coupons?on={on}"),
            None => "/v1/wallets/w-sa/coupons".to_owned(),
        };
        let r = client.get(&path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        eqnice(
            json!({
                "wallet": "w-sa",
                "on": on.unwrap_or(TODAY),
                "coupons": [granted.clone().set("status", status)],
            }),
            r.json(),
        );
    }
}

/// The coupons of the other wallets: spent, credited on the redemption's day, autopay's,
/// and none.
fn other_wallets(client: &Client, s2_coupon: &str, s5: &Value, s6: &Value) {
    // sb's coupon was spent by s3.
    let sb = wallet_coupons(client, "w-sb", None);
    assert_eq!(sb.len(), 1, "{sb:?}");
    assert_eq!(sb[s2_coupon]["status"], json!("spent"), "{sb:?}");

    // sc's redemption coupons: credited the day of the redemption, no expiry.
    for (on, status) in [
        ("2019-12-29", "not_yet_credited"),
        ("2019-12-30", "usable"),
        ("2030-01-01", "usable"),
    ] {
        let sc = wallet_coupons(client, "w-sc", Some(on));
        let expected: BTreeMap<String, (Value, Value)> = approve(s5, "2019-12-30")["coupons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["coupon_id"].as_str().unwrap().to_owned(),
                    (c["face_value"].clone(), json!(status)),
                )
            })
            .collect();
        let actual: BTreeMap<String, (Value, Value)> = sc
            .iter()
            .map(|(k, c)| (k.clone(), (c["face_value"].clone(), c["status"].clone())))
            .collect();
        eqnice(expected, actual);
    }

    // sd's two HK$50 autopay coupons.
    let sd = wallet_coupons(client, "w-sd", Some("2020-05-24"));
    let granted = reward_2(s6, "2019-12-27", "2020-05-24")["coupons"].clone();
    let expected: BTreeMap<String, Value> = granted
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["coupon_id"].as_str().unwrap().to_owned(),
                c.clone().set("status", "usable"),
            )
        })
        .collect();
    eqnice(expected, sd);

    // A wallet with no coupons.
    let r = client.get("/v1/wallets/w-nobody/coupons");
    assert_eq!(r.status, 200, "{}", r.body);
    eqnice(
        json!({"wallet": "w-nobody", "on": TODAY, "coupons": []}),
        r.json(),
    );
}

/// Customers' facts and per-customer counters: decided, known from the snapshot alone,
/// unknown.
fn customers_read(client: &Client) {
    // Customers: facts and per-customer counters.
    let get = |c: &str| {
        let r = client.get(&format!("/v1/customers/{c}"));
        assert_eq!(r.status, 200, "GET /v1/customers/{c}: {}", r.body);
        r.json()
    };
    let counter = |name: &str, coupons: u64, value: &str| {
        json!({"counter": name, "per": "customer", "day": null,
               "grants": 1, "coupons": coupons, "value": value})
    };
    eqnice(
        json!({
            "customer": "sa", "known": true,
            "facts": {"bill_payments": 1, "autopay_activated_on": null},
            "counters": [counter("reward-1", 1, "80.00")],
        }),
        get("sa"),
    );
    eqnice(
        json!({
            "customer": "sb", "known": true,
            "facts": {"bill_payments": 2, "autopay_activated_on": null},
            "counters": [counter("reward-1", 1, "80.00")],
        }),
        get("sb"),
    );
    eqnice(
        json!({
            "customer": "sd", "known": true,
            "facts": {"bill_payments": 1, "autopay_activated_on": "2019-12-20"},
            "counters": [counter("reward-2", 2, "100.00")],
        }),
        get("sd"),
    );
    // Known from the snapshot alone.
    let se = get("se");
    assert_eq!(se["known"], json!(true), "{se}");
    assert_eq!(
        se["facts"],
        json!({"bill_payments": 3, "autopay_activated_on": null}),
        "{se}"
    );
    // Unknown: every fact null.
    let nobody = get("nobody");
    assert_eq!(nobody["customer"], json!("nobody"), "{nobody}");
    assert_eq!(nobody["known"], json!(false), "{nobody}");
    assert_eq!(
        nobody["facts"],
        json!({"bill_payments": null, "autopay_activated_on": null}),
        "{nobody}"
    );
    assert_eq!(nobody["counters"], json!([]), "{nobody}");
}

fn bad_on_dates(client: &Client) {
    // A bad `on`.
    for on in ["2020-13-01", "2020-02-30", "yesterday", "20200102", ""] {
        let r = client.get(&format!("/v1/wallets/w-sa/coupons?on={on}"));
        assert_error(&format!("?on={on}"), &r, 400, None, Some(json!("on")));
    }
}

// ---------------------------------------------------------------------------------------
// Bad requests

/// Malformed JSON, unknown types, missing fields, oversized bodies and batches, unknown
/// routes: each a 4xx with `{code, message, field}`, never a 5xx, and nothing decided.
#[test]
fn bad_requests_are_4xx_json() {
    let dir = Dir::new("serve-bad");
    let server = shipped(&dir)
        .opt("--max-body-bytes", "1000")
        .opt("--max-batch", "3")
        .start();
    let client = server.client();
    let mut p = Problems::default();
    unreadable_bodies(&mut p, &client);
    bad_fields(&mut p, &client);
    bad_values(&mut p, &client);
    over_limits(&mut p, &client);
    unknown_routes(&mut p, &client);
    still_healthy(&mut p, &server);
    p.assert_none(&server);
}

/// When the test's events happen.
const BAD_AT: &str = "2019-12-19T10:00:00+08:00";

/// Bodies that are not JSON events.
fn unreadable_bodies(p: &mut Problems, client: &Client) {
    p.check("malformed JSON", || {
        let r = client.post_raw("/v1/events", r#"{"id": "x1", "type": "#);
        assert_error("malformed JSON", &r, 400, None, None);
    });
    p.check("not an event (a number)", || {
        let r = client.post_raw("/v1/events", "42");
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
        assert_error("a number", &r, r.status, None, None);
    });
    p.check("an unreadable event in an array", || {
        let r = client.post_raw("/v1/events", "[1]");
        assert_error("[1]", &r, 400, Some("bad_event"), None);
    });
}

/// Events of an unknown type, or missing or unreadable fields, alone or in a batch.
fn bad_fields(p: &mut Problems, client: &Client) {
    let at = BAD_AT;
    p.check("unknown event type", || {
        let e = event("x2", "login", at, "xc");
        let r = client.post("/v1/events", &e);
        assert_error(
            "unknown type",
            &r,
            422,
            Some("invalid_event"),
            Some(json!("type")),
        );
    });
    p.check("missing required field", || {
        let e = bill("x3", at, "xc").unset("amount");
        let r = client.post("/v1/events", &e);
        assert_error(
            "no amount",
            &r,
            422,
            Some("invalid_event"),
            Some(json!("amount")),
        );
        assert!(
            r.json()["message"].as_str().unwrap().contains("amount"),
            "the message names the field: {}",
            r.body
        );
    });
    // The fields every event carries (PRODUCT.md): without one, or with an unreadable
    // `at`, the event is refused (400 `bad_event` or 422 `invalid_event`; service.md does not
    // say which) and `field` names it, alone or in a batch.
    for name in ["id", "type", "at", "customer", "wallet"] {
        p.check(&format!("missing {name}"), || {
            let e = bill(&format!("x4-{name}"), at, "xc").unset(name);
            let r = client.post("/v1/events", &e);
            assert!(
                r.status == 400 || r.status == 422,
                "no {name}: {} {}",
                r.status,
                r.body
            );
            assert_error(&format!("no {name}"), &r, r.status, None, Some(json!(name)));
        });
        p.check(&format!("missing {name} in a batch"), || {
            let good = event(&format!("x4b-{name}"), "card_link", at, "xc");
            let e = bill(&format!("x4c-{name}"), at, "xc").unset(name);
            let r = client.post("/v1/events", &json!([good, e]));
            assert!(
                r.status == 400 || r.status == 422,
                "no {name}: {} {}",
                r.status,
                r.body
            );
            assert_error(
                &format!("no {name} in [1]"),
                &r,
                r.status,
                None,
                Some(json!(format!("[1].{name}"))),
            );
        });
    }
    p.check("unreadable at", || {
        let e = bill("x4-at", "yesterday", "xc");
        let r = client.post("/v1/events", &e);
        assert_error(
            "at: yesterday",
            &r,
            400,
            Some("bad_event"),
            Some(json!("at")),
        );
    });
}

/// Empty names and amounts that are not plain decimals within the currency's decimals.
fn bad_values(p: &mut Problems, client: &Client) {
    let at = BAD_AT;
    // Issue 18, defects 2 and 3: an empty id, customer or wallet, and an amount that is not
    // a plain decimal within the currency's decimals, are refused naming the field.
    for name in ["id", "customer", "wallet"] {
        p.check(&format!("empty {name}"), || {
            let e = bill(&format!("x9-{name}"), at, "xe").set(name, "");
            let r = client.post("/v1/events", &e);
            assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
            assert_error(
                &format!("empty {name}"),
                &r,
                r.status,
                None,
                Some(json!(name)),
            );
        });
    }
    for amount in ["-5", "1e3", "100.123", " 160 "] {
        p.check(&format!("amount {amount}"), || {
            let e = bill("x9-amount", at, "xe").set("amount", amount);
            let r = client.post("/v1/events", &e);
            assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
            assert_error(amount, &r, r.status, None, Some(json!("amount")));
        });
    }
}

/// A bad event among good ones, a body over `--max-body-bytes`, a batch over
/// `--max-batch`.
fn over_limits(p: &mut Problems, client: &Client) {
    let at = BAD_AT;
    p.check("a bad event in a batch", || {
        let good = bill("x5", at, "xg");
        let bad = event("x6", "login", at, "xc");
        let r = client.post("/v1/events", &json!([good, bad]));
        assert_error(
            "batch",
            &r,
            422,
            Some("invalid_event"),
            Some(json!("[1].type")),
        );
        // All or nothing: the good event was not decided.
        let again = client.decide(&good);
        assert_eq!(again["replay"], json!(false), "{again}");
    });
    p.check("oversized body", || {
        let big = bill("x7", at, "xc").set("note", "x".repeat(5000));
        let r = client.post("/v1/events", &big);
        assert_error("5 kB body", &r, 413, None, None);
    });
    p.check("batch over --max-batch", || {
        let batch: Vec<Value> = (0..4)
            .map(|i| event(&format!("x8-{i}"), "card_link", at, "xb"))
            .collect();
        let body = Value::Array(batch.clone()).to_string();
        assert!(body.len() < 1000, "the batch must be under the body limit");
        let r = client.post_raw("/v1/events", &body);
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
        assert_error("4 events", &r, r.status, None, None);
        // At the limit it is fine.
        let results = client.decide_all(&batch[..3]);
        assert_eq!(results.len(), 3);
    });
}

fn unknown_routes(p: &mut Problems, client: &Client) {
    p.check("unknown route", || {
        let r = client.get("/v1/nothing-here");
        assert_error("GET /v1/nothing-here", &r, 404, None, None);
        let r = client.post_raw("/v2/events", "{}");
        assert_error("POST /v2/events", &r, 404, None, None);
    });
    p.check("wrong method", || {
        let r = client.get("/v1/events");
        assert!((400..500).contains(&r.status), "{} {}", r.status, r.body);
        assert_error("GET /v1/events", &r, r.status, None, None);
    });
}

/// After all that: alive, ready, and no 5xx counted.
fn still_healthy(p: &mut Problems, server: &Server) {
    let client = server.client();
    p.check("still healthy", || {
        let r = client.get("/healthz");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), json!({"status": "ok"}));
        let r = client.get("/readyz");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json(), json!({"status": "ready"}));
    });
    p.check("no 5xx counted", || {
        let text = server.metrics();
        for line in text.lines() {
            if line.starts_with("promo_http_requests_total") {
                assert!(!line.contains("status=\"5"), "a 5xx: {line}");
            }
        }
    });
}

// ---------------------------------------------------------------------------------------
// Reloads

/// A new rule file goes live without a restart: new decisions, a new version; what the old
/// version decided still replays with the old version.
#[test]
fn edited_rules_go_live() {
    let dir = Dir::new("serve-reload");
    let rules = dir.copy_rules();
    let server = Serve::new(&rules, &dir.path().join("serve.log")).start();
    let client = server.client();
    let v1 = server.version();
    let before = server.ruleset();
    assert!(!before["rules"]
        .as_array()
        .unwrap()
        .contains(&json!("octopus-welcome")));

    let at = "2020-01-10T10:00:00+08:00";
    let o1 = octopus("o1", at, "oc1");
    let r = client.decide(&o1);
    assert_result(&r, &o1, &v1, false, false);
    assert_eq!(r["decisions"], json!([]), "no rule for it yet");

    // The edit keeps every golden case passing (checked on a copy first).
    let check = Dir::new("serve-reload-check");
    let copy = check.copy_rules();
    std::fs::write(
        copy.join("promotions/octopus-welcome.yaml"),
        OCTOPUS_WELCOME,
    )
    .unwrap();
    assert_golden_pass(&copy);

    put(
        &dir,
        &rules,
        "promotions/octopus-welcome.yaml",
        OCTOPUS_WELCOME,
    );
    let after = server.wait_ruleset("a new version", |r| r["version"] != json!(v1));
    let v2 = after["version"].as_str().unwrap().to_owned();
    assert!(
        after["rules"]
            .as_array()
            .unwrap()
            .contains(&json!("octopus-welcome")),
        "{after}"
    );

    let o2 = octopus("o2", at, "oc2");
    let r = client.decide(&o2);
    assert_result(&r, &o2, &v2, false, false);
    let coupon = coupon(
        &coupon_id(&o2, "octopus-welcome", 1),
        "30.00",
        "100.00",
        &["in_store"],
        "2020-01-10",
        Some("2020-02-08"),
    );
    assert_eq!(
        r["decisions"],
        json!([grant(&o2, "octopus-welcome", vec![coupon])])
    );
    // o1 was decided by the old rules: it replays as it was, with their version.
    let r = client.decide(&o1);
    assert_result(&r, &o1, &v1, true, false);
    assert_eq!(r["decisions"], json!([]));

    // Nothing changed since: a reload now is `unchanged`.
    let r = client.post_empty("/v1/ruleset/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["outcome"], json!("unchanged"), "{body}");
    assert_eq!(body["ruleset"]["version"], json!(v2), "{body}");

    let metrics = server.metrics();
    assert!(
        metric(&metrics, "promo_reloads_total", &[("outcome", "ok")]).unwrap_or(0) >= 1,
        "{metrics}"
    );
    assert_eq!(
        metric(&metrics, "promo_ruleset_info", &[("version", &v2)]),
        Some(1),
        "{metrics}"
    );
}

/// A broken edit never goes live: a rule that fails `check`, then one that passes check
/// but fails its golden tests. The old rules keep serving; `last_rejected` says why.
#[test]
fn broken_edits_never_go_live() {
    let dir = Dir::new("serve-broken");
    let rules = dir.copy_rules();
    let server = Serve::new(&rules, &dir.path().join("serve.log")).start();
    let client = server.client();
    let v1 = server.version();
    let rule_path = rules.join("promotions/bill-first-time.yaml");
    let original = std::fs::read_to_string(&rule_path).unwrap();

    decides_hk80_with(&client, "k1", &v1);

    // 1. A misspelt fact: `check` fails at line 16, column 11.
    let misspelt = original.replace("fact: bill_payments", "fact: bill_paymnts");
    assert_ne!(misspelt, original);
    put(&dir, &rules, "promotions/bill-first-time.yaml", &misspelt);
    let rs = server.wait_ruleset("a rejected reload", |r| r["last_rejected"].is_object());
    assert_eq!(rs["version"], json!(v1), "{rs:#}");
    let rejected = &rs["last_rejected"];
    assert_eq!(rejected["stage"], json!("check"), "{rs:#}");
    assert!(rejected["at"].is_string(), "{rs:#}");
    let errors = rejected["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{rs:#}"));
    assert!(
        errors.iter().any(|e| {
            e["file"]
                .as_str()
                .is_some_and(|f| f.ends_with("promotions/bill-first-time.yaml"))
                && e["line"] == json!(16)
                && e["column"] == json!(11)
                && e["code"] == json!("unknown_fact")
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("bill_paymnts"))
        }),
        "a located unknown_fact error: {rs:#}"
    );
    // The old rules serve, and a reload by hand is rejected the same way.
    decides_hk80_with(&client, "k2", &v1);
    reload_rejected_at(&client, &v1, "check");

    // 2. HK$90 instead of HK$80: a valid rule whose golden cases fail.
    let ninety = original.replace("face_value: \"80\"", "face_value: \"90\"");
    assert_ne!(ninety, original);
    put(&dir, &rules, "promotions/bill-first-time.yaml", &ninety);
    let rs = server.wait_ruleset("rejected by its tests", |r| {
        r["last_rejected"]["stage"] == json!("tests")
    });
    assert_eq!(rs["version"], json!(v1), "{rs:#}");
    decides_hk80_with(&client, "k3", &v1);
    reload_rejected_at(&client, &v1, "tests");

    let metrics = server.metrics();
    let rejected = metric(&metrics, "promo_reloads_total", &[("outcome", "rejected")]);
    assert!(rejected.unwrap_or(0) >= 2, "two edits rejected: {metrics}");
    assert_eq!(
        metric(&metrics, "promo_ruleset_info", &[("version", &v1)]),
        Some(1),
        "{metrics}"
    );
    let r = client.get("/readyz");
    assert_eq!(r.status, 200, "still ready: {}", r.body);
}

/// A first bill of a new customer (`{id}`'s own) is decided by version `v1`: HK$80, as the
/// shipped rules say.
fn decides_hk80_with(client: &Client, id: &str, v1: &str) {
    let b = bill(id, "2019-12-19T10:00:00+08:00", &format!("c-{id}"));
    let r = client.decide(&b);
    assert_result(&r, &b, v1, false, false);
    assert_eq!(
        r["decisions"],
        json!([first_time(&b, "2019-12-23", "2020-03-21")]),
        "HK$80 from version {v1}"
    );
}

/// A reload by hand is rejected at `stage`, and `v1` stays live.
fn reload_rejected_at(client: &Client, v1: &str, stage: &str) {
    let r = client.post_empty("/v1/ruleset/reload");
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["outcome"], json!("rejected"), "{body:#}");
    assert_eq!(body["ruleset"]["version"], json!(v1), "{body:#}");
    assert_eq!(
        body["ruleset"]["last_rejected"]["stage"],
        json!(stage),
        "{body:#}"
    );
}

// ---------------------------------------------------------------------------------------
// Caps under concurrency

/// 50 redemptions of HK$100 by one wallet on one day (its cap is HK$1,000 a day).
pub(crate) fn fifty_redemptions() -> Vec<Value> {
    (0..50)
        .map(|i| {
            redeem(
                &format!("cap{i:02}"),
                "2020-01-06T12:00:00+08:00",
                "cp",
                &["50", "50"],
            )
        })
        .collect()
}

/// The answers to `fifty_redemptions` that approve, and how many reject on the daily cap;
/// every answer is one or the other.
pub(crate) fn under_daily_cap(
    results: &[Value],
    events: &[Value],
    version: &str,
) -> (Vec<Value>, usize) {
    let mut approved = Vec::new();
    let mut rejected = 0;
    for (r, e) in results.iter().zip(events) {
        assert_result(r, e, version, false, false);
        let d = r["decisions"].as_array().unwrap();
        assert_eq!(d.len(), 1, "{r}");
        if d[0] == approve(e, "2020-01-06") {
            approved.push(r.clone());
        } else {
            assert_eq!(d[0], reject(e, "daily_limit_exceeded"), "{r}");
            rejected += 1;
        }
    }
    (approved, rejected)
}

/// S14 under 50 concurrent requests: HK$100 each on one wallet and one HK date, so exactly
/// 10 are approved (HK$1,000) and 40 rejected `daily_limit_exceeded`.
#[test]
fn daily_limit_holds_under_concurrency() {
    let dir = Dir::new("serve-daily-cap");
    let state = dir.path().join("state");
    let server = shipped(&dir).state(&state).start();
    let client = server.client();
    let version = server.version();
    client.decide(&event(
        "auth",
        "points_authorization",
        "2020-01-05T10:00:00+08:00",
        "cp",
    ));

    let events = fifty_redemptions();
    let results = decide_at_once(&client, &events);

    let (approved, rejected) = under_daily_cap(&results, &events, &version);
    assert_eq!((approved.len(), rejected), (10, 40), "approved, rejected");

    // The wallet holds the 20 coupons of the 10 approvals.
    let held: BTreeSet<String> = wallet_coupons(&client, "w-cp", Some("2020-01-06"))
        .into_iter()
        .map(|(id, c)| {
            assert_eq!(c["status"], json!("usable"), "{c}");
            id
        })
        .collect();
    let granted: BTreeSet<String> = approved.iter().flat_map(coupon_ids).collect();
    assert_eq!(granted.len(), 20);
    eqnice(granted, held);

    // Every one of the 50 replays its first answer.
    for (r, e) in results.iter().zip(&events) {
        let again = client.decide(e);
        assert_result(&again, e, &version, true, false);
        assert_eq!(again["decisions"], r["decisions"]);
    }
    // The next HK day starts from zero.
    let next = redeem("cap-next", "2020-01-07T00:00:00+08:00", "cp", &["50", "50"]);
    assert_eq!(
        client.decide(&next)["decisions"],
        json!([approve(&next, "2020-01-07")])
    );
}

/// A total budget (`per: all`, 5 grants) under 50 concurrent eligible events of 50
/// customers: exactly 5 grants.
#[test]
fn total_budget_holds_under_concurrency() {
    let dir = Dir::new("serve-budget");
    let rules = dir.copy_rules();
    std::fs::write(rules.join("promotions/octopus-budget.yaml"), OCTOPUS_BUDGET).unwrap();
    assert_golden_pass(&rules);
    let server = Serve::new(&rules, &dir.path().join("serve.log")).start();
    let client = server.client();
    let version = server.version();
    assert!(
        server.ruleset()["rules"]
            .as_array()
            .unwrap()
            .contains(&json!("octopus-budget")),
        "the extra rule is loaded"
    );

    let at = "2020-01-10T10:00:00+08:00";
    let events = fifty_octopus_customers(at);
    let results = decide_at_once(&client, &events);

    let granted: Vec<String> = budget_grants(&results, &events, &version)
        .into_keys()
        .collect();
    assert_eq!(granted.len(), 5, "grants to {granted:?}");
    for c in &granted {
        assert_eq!(wallet_coupons(&client, &wallet(c), None).len(), 1, "{c}");
    }
    let metrics = server.metrics();
    assert_eq!(
        metric(
            &metrics,
            "promo_decisions_total",
            &[("rule", "octopus-budget"), ("decision", "grant")]
        ),
        Some(5),
        "{metrics}"
    );
    // The budget is spent: a 51st customer gets nothing.
    let late = octopus("ob-late", at, "obc-late");
    assert_eq!(client.decide(&late)["decisions"], json!([]));
}

/// 50 Octopus top-ups at `at`, each of a new customer (the budget of `OCTOPUS_BUDGET` is 5).
pub(crate) fn fifty_octopus_customers(at: &str) -> Vec<Value> {
    (0..50)
        .map(|i| octopus(&format!("ob{i:02}"), at, &format!("obc{i:02}")))
        .collect()
}

/// The grants of `octopus-budget` among the answers to `fifty_octopus_customers` sent on
/// 2020-01-10 (the coupons' dates follow from it): the customer and the coupon of each;
/// every other answer decides nothing.
pub(crate) fn budget_grants(
    results: &[Value],
    events: &[Value],
    version: &str,
) -> BTreeMap<String, String> {
    let mut granted = BTreeMap::new();
    for (r, e) in results.iter().zip(events) {
        assert_result(r, e, version, false, false);
        match r["decisions"].as_array().unwrap().as_slice() {
            [] => {}
            [d] => {
                let id = coupon_id(e, "octopus-budget", 1);
                let c = coupon(
                    &id,
                    "10.00",
                    "50.00",
                    &["in_store"],
                    "2020-01-10",
                    Some("2020-02-08"),
                );
                assert_eq!(d, &grant(e, "octopus-budget", vec![c]), "{r}");
                granted.insert(e["customer"].as_str().unwrap().to_owned(), id);
            }
            _ => panic!("more than one decision: {r}"),
        }
    }
    granted
}

// ---------------------------------------------------------------------------------------
// Crashes and stops

/// What a load of requests got: the events answered 200, with their results, and the
/// statuses of the other answers.
#[derive(Default)]
pub(crate) struct Load {
    pub(crate) answered: Mutex<Vec<(Value, Value)>>,
    pub(crate) other: Mutex<Vec<(u16, String)>>,
}

/// The `n`-th event of load thread `t`: bills (a first-time grant) and autopays (two
/// coupons), each of a new customer.
pub(crate) fn load_event(prefix: &str, t: usize, n: usize) -> Value {
    let id = format!("{prefix}-{t}-{n}");
    let customer = format!("{prefix}c-{t}-{n}");
    if n % 3 == 2 {
        autopay(&id, "2019-12-20T10:00:00+08:00", &customer)
    } else {
        bill(&id, "2019-12-19T10:00:00+08:00", &customer)
    }
}

/// Runs `threads` threads each posting at most `per_thread` events, one per request, until
/// the server stops answering; calls `stop` once `after` events were answered (or the load
/// ended), while the load goes on.
pub(crate) fn under_load(
    client: &Client,
    prefix: &str,
    threads: usize,
    per_thread: usize,
    after: usize,
    stop: impl FnOnce(),
) -> Load {
    let load = Load::default();
    let running = AtomicUsize::new(threads);
    std::thread::scope(|s| {
        for t in 0..threads {
            let client = client.clone();
            let load = &load;
            let running = &running;
            s.spawn(move || {
                for n in 0..per_thread {
                    let e = load_event(prefix, t, n);
                    match client.try_post_raw("/v1/events", &e.to_string()) {
                        Ok(r) if r.status == 200 => {
                            load.answered.lock().unwrap().push((e, r.json()));
                        }
                        Ok(r) => load.other.lock().unwrap().push((r.status, r.body)),
                        // The server is gone.
                        Err(_) => break,
                    }
                }
                running.fetch_sub(1, Ordering::SeqCst);
            });
        }
        let start = Instant::now();
        while load.answered.lock().unwrap().len() < after
            && running.load(Ordering::SeqCst) > 0
            && start.elapsed() < WAIT
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        stop();
    });
    load
}

/// After a restart on the same state: every answered event replays its first decisions
/// with the version that made them, and every coupon answered is in its wallet.
pub(crate) fn assert_answered_replay(server: &Server, load: &Load) {
    let client = server.client();
    let answered = load.answered.lock().unwrap();
    assert!(
        !answered.is_empty(),
        "nothing was answered\n{}",
        server.logs()
    );
    let mut wallets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (e, first) in answered.iter() {
        let version = first["ruleset_version"].as_str().unwrap();
        assert_result(first, e, version, false, false);
        assert_eq!(first["decisions"].as_array().unwrap().len(), 1, "{first}");
        let again = client.decide(e);
        assert_result(&again, e, version, true, false);
        assert_eq!(
            again["decisions"],
            first["decisions"],
            "the replay of {e}\n{}",
            server.logs()
        );
        wallets
            .entry(e["wallet"].as_str().unwrap().to_owned())
            .or_default()
            .extend(coupon_ids(first));
    }
    for (w, ids) in wallets {
        let held: BTreeSet<String> = wallet_coupons(&client, &w, None).into_keys().collect();
        assert!(ids.is_subset(&held), "{w}: answered {ids:?}, held {held:?}");
    }
}

/// SIGKILL in the middle of a load with `--state`: after a restart on the same state,
/// every event that was answered replays exactly and its coupons are in their wallets.
#[test]
fn kill9_under_load_loses_no_answered_decision() {
    let dir = Dir::new("serve-kill9");
    let state = dir.path().join("state");
    let serve = shipped(&dir).state(&state);
    let mut server = serve.start();
    let client = server.client();
    let load = under_load(&client, "k9", 4, 250, 40, || server.kill9());
    for (status, body) in load.other.lock().unwrap().iter() {
        assert!(*status < 500, "a {status} under load: {body}");
    }
    let restarted = serve.start();
    assert_answered_replay(&restarted, &load);
}

/// SIGTERM in the middle of a load: the server finishes what is in flight and exits 0;
/// after a restart on the same state every answered event replays exactly.
#[test]
fn sigterm_under_load_exits_0_and_keeps_answers() {
    let dir = Dir::new("serve-sigterm");
    let state = dir.path().join("state");
    let serve = shipped(&dir).state(&state);
    let mut server = serve.start();
    let client = server.client();
    let load = under_load(&client, "tm", 4, 250, 40, || server.sigterm());
    let status = server.wait_exit();
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}\n{}",
        server.logs()
    );
    for (status, body) in load.other.lock().unwrap().iter() {
        assert!(*status < 500, "a {status} under load: {body}");
    }
    let restarted = serve.start();
    assert_answered_replay(&restarted, &load);
}

/// Once its state is open, the service takes fresh memory in small pages: the kernel says
/// transparent huge pages are off for the process (`PR_SET_THP_DISABLE`).
#[cfg(target_os = "linux")]
#[test]
fn serving_takes_small_pages() {
    let dir = Dir::new("serve-small-pages");
    let server = shipped(&dir).state(&dir.path().join("state")).start();
    let status = std::fs::read_to_string(format!("/proc/{}/status", server.pid())).unwrap();
    let thp = status.lines().find(|l| l.starts_with("THP_enabled:"));
    assert_eq!(
        thp.map(|l| l.split_whitespace().nth(1)),
        Some(Some("0")),
        "THP_enabled in /proc/PID/status:\n{status}"
    );
}

/// A signal sent the moment the server says it listens is answered as any later one: SIGTERM
/// and SIGINT stop it gracefully (exit 0), SIGHUP reloads and it keeps serving. Until its
/// handlers were in place, such a signal ended the process there and then.
#[test]
fn signals_at_once_after_listening_are_answered() {
    let dir = Dir::new("serve-early-signals");
    let serve = shipped(&dir).state(&dir.path().join("state"));
    for signal in ["-TERM", "-INT"] {
        let mut server = serve.spawn();
        server.signal(signal);
        let status = server.wait_exit();
        assert_eq!(
            status.code(),
            Some(0),
            "{signal} at once: exit status {status}\n{}",
            server.logs()
        );
    }
    let mut server = serve.spawn();
    server.signal("-HUP");
    server.wait_ready();
    decides_hk80_with(&server.client(), "hup1", &server.version());
    server.sigterm();
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.logs());
}

/// An id decided by a batch `eval --state` run replays with no decisions (the batch
/// output holds them), and the service decides new events against the facts it left.
#[test]
fn eval_state_is_served() {
    let dir = Dir::new("serve-eval-state");
    let state = dir.path().join("state");
    let b1 = bill("es1", "2019-12-19T10:00:00+08:00", "esc");
    let input = dir.write_jsonl("events.jsonl", std::slice::from_ref(&b1));
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("eval")
        .arg("--rules")
        .arg(shipped_rules())
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out.jsonl"))
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        parse_jsonl(&std::fs::read(dir.path().join("out.jsonl")).unwrap()),
        vec![first_time(&b1, "2019-12-23", "2020-03-21")]
    );

    let server = shipped(&dir).state(&state).start();
    let client = server.client();
    let r = client.decide(&b1);
    assert_eq!(r["event_id"], json!("es1"), "{r}");
    assert_eq!(r["replay"], json!(true), "{r}");
    assert_eq!(r["decisions"], json!([]), "{r}");
    // Reward 1 was granted by the batch run: a second bill gets nothing.
    let b2 = bill("es2", "2019-12-20T10:00:00+08:00", "esc");
    let r = client.decide(&b2);
    assert_eq!(r["replay"], json!(false), "{r}");
    assert_eq!(r["decisions"], json!([]), "{r}");
    let c = client.get("/v1/customers/esc").json();
    assert_eq!(c["facts"]["bill_payments"], json!(2), "{c}");
    let held: Vec<String> = wallet_coupons(&client, "w-esc", None).into_keys().collect();
    assert_eq!(held, vec![coupon_id(&b1, "bill-first-time", 1)]);
}

// ---------------------------------------------------------------------------------------
// Differential: the service against `promo eval`

/// A generated stream (with its snapshot) decided by `promo eval`, then by the service one
/// event per request, then by a fresh service in batches of 100: the decisions are the
/// same, in the same order. Lines eval rejects are 4xx for the service; repeated ids are
/// duplicates for eval and replays or conflicts for the service, and add no decision.
#[test]
fn service_decides_a_stream_as_eval_does() {
    let dir = Dir::new("serve-differential");
    let cfg = GenConfig {
        seed: 20_191_219,
        events: 3_000,
        customers: 300,
    };
    stream_as_eval_does(&dir, &cfg, |snapshot| {
        shipped(&dir).customers(snapshot).start()
    });
}

/// The body of [`service_decides_a_stream_as_eval_does`]: the stream of `cfg` (written in
/// `dir`) decided by `promo eval` and by servers `start` gives (called twice, each time for
/// a fresh state, with the snapshot's path).
pub(crate) fn stream_as_eval_does(dir: &Dir, cfg: &GenConfig, start: impl Fn(&Path) -> Server) {
    let events_path = dir.path().join("events.jsonl");
    let snapshot = dir.path().join("customers.jsonl");
    gen::generate_files(cfg, &events_path, &snapshot, None).unwrap();
    let text = std::fs::read_to_string(&events_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cfg.events);

    let run = dir.eval(&shipped_rules(), &events_path, Some(&snapshot));
    // Exit 3: finished, with rejected lines.
    assert_eq!(run.code, Some(3), "eval: {}", run.stderr);
    // 1-based line numbers of the lines eval rejected.
    let rejected: BTreeSet<u64> = run
        .rejects
        .iter()
        .map(|r| r["line"].as_u64().unwrap_or_else(|| panic!("{r}")))
        .collect();
    assert!(!rejected.is_empty(), "the stream has lines eval rejects");
    assert!(
        run.decisions.len() > cfg.events / 6,
        "{} decisions",
        run.decisions.len()
    );

    // One event per request.
    let server = start(&snapshot);
    let client = server.client();
    let version = server.version();
    let mut decided: BTreeSet<String> = BTreeSet::new();
    let mut decisions = Vec::new();
    let (mut refused, mut repeats) = (0, 0);
    for (i, line) in lines.iter().enumerate() {
        let event: Value = serde_json::from_str(line).unwrap();
        let id = event["id"].as_str().unwrap().to_owned();
        let r = client.post_raw("/v1/events", line);
        if rejected.contains(&(i as u64 + 1)) {
            assert!(
                (400..500).contains(&r.status),
                "line {} rejected by eval answered {}: {}\n{line}",
                i + 1,
                r.status,
                r.body
            );
            refused += 1;
        } else if decided.contains(&id) {
            // A repeated id: a replay (same body) or a conflict (another body).
            match r.status {
                200 => {
                    let result = r.json();
                    assert_eq!(result["replay"], json!(true), "line {}: {result}", i + 1);
                }
                409 => assert_error(line, &r, 409, Some("id_conflict"), Some(json!("id"))),
                s => panic!("line {} (a repeated id) answered {s}: {}", i + 1, r.body),
            }
            repeats += 1;
        } else {
            assert_eq!(r.status, 200, "line {}: {}\n{line}", i + 1, r.body);
            let result = r.json();
            assert_result(&result, &event, &version, false, false);
            decisions.extend(result["decisions"].as_array().unwrap().iter().cloned());
            decided.insert(id);
        }
    }
    assert!(repeats > 0, "the stream repeats some ids");
    assert_eq!(refused, rejected.len());
    eqnice(run.decisions.clone(), decisions);
    drop(server);

    // Batches of 100 of the lines eval decides (a batch is all or nothing), first
    // occurrences only.
    let mut seen = BTreeSet::new();
    let kept: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| !rejected.contains(&(*i as u64 + 1)))
        .map(|(_, l)| *l)
        .filter(|l| {
            let e: Value = serde_json::from_str(l).unwrap();
            seen.insert(e["id"].as_str().unwrap().to_owned())
        })
        .collect();
    let server = start(&snapshot);
    let client = server.client();
    let mut decisions = Vec::new();
    for chunk in kept.chunks(100) {
        let body = format!("[{}]", chunk.join(","));
        let r = client.post_raw("/v1/events", &body);
        assert_eq!(r.status, 200, "a batch: {}\n{}", r.body, server.logs());
        let results = r.json();
        let results = results.as_array().unwrap();
        assert_eq!(results.len(), chunk.len());
        for (result, line) in results.iter().zip(chunk) {
            let event: Value = serde_json::from_str(line).unwrap();
            assert_result(result, &event, &version, false, false);
            decisions.extend(result["decisions"].as_array().unwrap().iter().cloned());
        }
    }
    eqnice(run.decisions.clone(), decisions);
}

/// `GET /healthz`, `/readyz`, `/metrics` and `/openapi.json` answer, and the OpenAPI
/// document names the routes of docs/service.md.
#[test]
fn operations_routes() {
    let dir = Dir::new("serve-ops");
    let server = shipped(&dir).start();
    let client = server.client();
    let r = client.get("/healthz");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ok"})));
    let r = client.get("/readyz");
    assert_eq!((r.status, r.json()), (200, json!({"status": "ready"})));

    let b = bill("m1", "2019-12-19T10:00:00+08:00", "mc");
    client.decide(&b);
    let metrics = server.metrics();
    for name in [
        "promo_http_requests_total",
        "promo_http_request_duration_seconds",
        "promo_decisions_total",
        "promo_ruleset_info",
        "promo_state_commit_duration_seconds",
    ] {
        assert!(metrics.contains(name), "{name} in\n{metrics}");
    }
    assert!(
        !metrics.contains("promo_state_upkeep_failures"),
        "no state directory, no upkeep: {metrics}"
    );
    assert_eq!(
        metric(
            &metrics,
            "promo_decisions_total",
            &[("rule", "bill-first-time"), ("decision", "grant")]
        ),
        Some(1),
        "{metrics}"
    );

    let r = client.get("/openapi.json");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{doc}"
    );
    for path in [
        "/v1/events",
        "/v1/wallets/{wallet}/coupons",
        "/v1/customers/{customer}",
        "/v1/ruleset",
        "/v1/ruleset/reload",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} in the OpenAPI paths"
        );
    }
}

/// The served OpenAPI document says what the live ruleset admits of an event: one variant
/// per type, requiring the type's fields, and amounts in its currency's two decimals.
#[test]
fn the_served_openapi_document_says_what_the_ruleset_admits() {
    let dir = Dir::new("serve-openapi");
    let server = shipped(&dir).start();
    let r = server.client().get("/openapi.json");
    assert_eq!(r.status, 200, "{}", r.body);
    let doc = r.json();
    let variants = doc["components"]["schemas"]["EventIn"]["oneOf"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let types: Vec<&str> = variants
        .iter()
        .filter_map(|v| v["properties"]["type"]["const"].as_str())
        .collect();
    assert_eq!(
        types,
        [
            "autopay_activation",
            "autopay_payment",
            "bill_payment",
            "card_link",
            "points_authorization",
            "points_redemption",
            "purchase"
        ],
        "{doc}"
    );
    let bill = &variants[2];
    assert_eq!(
        bill["required"],
        json!([
            "id",
            "type",
            "at",
            "customer",
            "wallet",
            "card_product",
            "card_role",
            "merchant",
            "amount"
        ]),
        "{bill}"
    );
    assert_eq!(
        bill["properties"]["amount"]["type"], "string",
        "required, so not null: {bill}"
    );
    let link = &variants[3];
    assert_eq!(
        link["properties"]["amount"]["type"],
        json!(["string", "null"]),
        "{link}"
    );
    let decimals = r"^[0-9]+(\.[0-9]{1,2})?$";
    assert_eq!(bill["properties"]["amount"]["pattern"], decimals, "{bill}");
    assert_eq!(
        bill["properties"]["face_values"]["items"]["pattern"], decimals,
        "{bill}"
    );
}

#[test]
fn a_stalled_request_is_answered_408_and_the_service_goes_on() {
    use std::io::{Read, Write};
    let dir = Dir::new("serve-timeout");
    let server = shipped(&dir).opt("--request-timeout-ms", "300").start();
    // Headers promising a body that never comes: only the timeout can end the request.
    let mut conn = std::net::TcpStream::connect(server.addr()).expect("connecting");
    conn.set_read_timeout(Some(WAIT)).expect("read timeout");
    let head = "POST /v1/events HTTP/1.1\r\nhost: promo\r\ncontent-type: application/json\r\n\
                content-length: 200\r\n\r\n{\"id\":";
    conn.write_all(head.as_bytes())
        .expect("sending half a request");
    let mut answer = [0u8; 1024];
    let n = conn
        .read(&mut answer)
        .expect("an answer before the test's own timeout");
    let answer = String::from_utf8_lossy(&answer[..n]);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    assert!(head.starts_with("HTTP/1.1 408"), "{answer}");
    let r = Resp {
        status: 408,
        body: body.to_string(),
    };
    assert_error("a stalled request", &r, 408, Some("request_timeout"), None);

    let b = bill("t1", "2019-12-19T10:00:00+08:00", "ct");
    let result = server.client().decide(&b);
    assert_eq!(decisions_of(&[result]).len(), 1, "{}", server.logs());
}

#[test]
fn a_failed_commit_answers_503_and_the_service_is_not_ready() {
    let dir = Dir::new("serve-commit-fails");
    let state = dir.path().join("state");
    let server = shipped(&dir).state(&state).start();
    let client = server.client();
    client.decide(&bill("f1", "2019-12-19T10:00:00+08:00", "cf"));
    let metrics = server.metrics();
    for task in ["fold", "checkpoint"] {
        let failures = metric(
            &metrics,
            "promo_state_upkeep_failures_total",
            &[("task", task)],
        );
        assert_eq!(failures, Some(0), "{task} failures in\n{metrics}");
    }

    // The state refuses the next write of answers, as a full or failing disk would.
    let db = rusqlite::Connection::open(state.join("promo-state.db")).expect("opening the state");
    db.execute_batch(
        "CREATE TRIGGER fail_answers BEFORE INSERT ON answers \
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
    )
    .expect("adding the trigger");
    drop(db);

    let r = client.post("/v1/events", &bill("f2", "2019-12-19T11:00:00+08:00", "cg"));
    assert_error(
        "the decision whose commit failed",
        &r,
        503,
        Some("unavailable"),
        None,
    );
    assert!(r.body.contains("could not be committed"), "{}", r.body);
    let r = client.get("/readyz");
    assert_eq!(r.status, 503, "{}", r.body);
    let r = client.post("/v1/events", &bill("f3", "2019-12-19T12:00:00+08:00", "ch"));
    assert_error("a decision after it", &r, 503, Some("unavailable"), None);
    let r = client.get("/healthz");
    assert_eq!(r.status, 200, "alive, though not ready: {}", r.body);
}

/// Sends each event from a thread of its own, all released at once; their results in order.
pub(crate) fn decide_at_once(client: &Client, events: &[Value]) -> Vec<Value> {
    decide_at_once_on(std::slice::from_ref(client), events)
}

/// As [`decide_at_once`], event `i` sent to `clients[i % clients.len()]`.
pub(crate) fn decide_at_once_on(clients: &[Client], events: &[Value]) -> Vec<Value> {
    let barrier = Barrier::new(events.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let client = clients[i % clients.len()].clone();
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    client.decide(e)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// SIGHUP reloads the rules: with the watcher made too slow to see the edit within the
/// test, only the signal can bring the new rule in.
#[test]
fn sighup_reloads_the_rules() {
    let dir = Dir::new("serve-sighup");
    let rules = dir.copy_rules();
    let server = Serve::new(&rules, &dir.path().join("serve.log"))
        .opt("--debounce-ms", "600000")
        .start();
    let v1 = server.version();
    put(
        &dir,
        &rules,
        "promotions/octopus-welcome.yaml",
        OCTOPUS_WELCOME,
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.version(), v1, "the watcher is held off");
    server.signal("-HUP");
    let after = server.wait_ruleset("a new version after SIGHUP", |r| r["version"] != json!(v1));
    assert!(after["rules"]
        .as_array()
        .unwrap()
        .contains(&json!("octopus-welcome")));
    let ok = metric(
        &server.metrics(),
        "promo_reloads_total",
        &[("outcome", "ok")],
    );
    assert!(ok >= Some(1), "reloads ok: {ok:?}");
}
