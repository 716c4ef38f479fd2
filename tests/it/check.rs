//! `promo check`: one broken copy of the shipped rules per class of error, and the exact
//! located message the author sees for it.

use std::process::Command;

use crate::util::*;

/// Copies the shipped rules, replaces `from` by `to` in `file` (relative to the rules), runs
/// `promo check` and returns its exit code and the diagnostics' first lines, with the temp
/// path shown as `rules/`.
fn check_with(name: &str, file: &str, from: &str, to: &str) -> (Option<i32>, Vec<String>, String) {
    let dir = Dir::new(name);
    let rules = dir.copy_rules();
    let path = rules.join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        from.is_empty() || text.contains(from),
        "`{from}` not in {file}"
    );
    std::fs::write(
        &path,
        if from.is_empty() {
            to.to_string()
        } else {
            text.replacen(from, to, 1)
        },
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", rules.display()), "rules/");
    let heads = stderr
        .lines()
        .filter(|l| l.starts_with("rules/"))
        .map(String::from)
        .collect();
    (out.status.code(), heads, stderr)
}

/// Runs `promo check --format json` on `rules`: its exit code and the JSON it printed.
fn check_json(rules: &std::path::Path) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["check", "--format", "json"])
        .arg(rules)
        .output()
        .unwrap();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
    )
}

fn assert_reports(case: (Option<i32>, Vec<String>, String), expected: &str) {
    let (code, heads, stderr) = case;
    eqnice(Some(1), code);
    assert!(
        heads.iter().any(|h| h == expected),
        "expected the line\n  {expected}\namong:\n{stderr}"
    );
}

#[test]
fn shipped_rules_check_clean() {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(shipped_rules())
        .output()
        .unwrap();
    eqnice(Some(0), out.status.code());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: 5 rules"));
}

/// `promo check` on the shipped rules, exactly: its standard output in text (the fixture,
/// captured before the front end was rebuilt) and in JSON, nothing on standard error.
#[test]
fn shipped_rules_check_output_is_unchanged() {
    let run = |format: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_promo"))
            .args(["check", "--format", format])
            .arg("rules")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        eqnice(Some(0), out.status.code());
        eqnice(
            String::new(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let expected = std::fs::read_to_string(fixture("check/shipped.txt")).unwrap();
    eqnice(expected, run("human"));
    eqnice("[]\n".to_string(), run("json"));
}

#[test]
fn yaml_syntax_error_is_located() {
    assert_reports(
        check_with(
            "check-yaml",
            "promotions/bill-first-time.yaml",
            "on: [bill_payment]",
            "on: [bill_payment",
        ),
        "rules/promotions/bill-first-time.yaml:5:5: error[yaml]: illegal placement of ':' indicator",
    );
}

/// Runs `promo check` on the shipped rules with `file` replaced by `bytes`.
fn check_bytes(name: &str, file: &str, bytes: &[u8]) -> (Option<i32>, Vec<String>, String) {
    let dir = Dir::new(name);
    let rules = dir.copy_rules();
    std::fs::write(rules.join(file), bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", rules.display()), "rules/");
    let heads = stderr
        .lines()
        .filter(|l| l.starts_with("rules/"))
        .map(String::from)
        .collect();
    (out.status.code(), heads, stderr)
}

fn shipped(file: &str) -> Vec<u8> {
    std::fs::read(shipped_rules().join(file)).unwrap()
}

#[test]
fn a_byte_order_mark_is_accepted_in_rule_files_manifest_and_calendars() {
    for (i, file) in [
        "promotions/bill-first-time.yaml",
        "ruleset.yaml",
        "calendars/hk.yaml",
    ]
    .into_iter()
    .enumerate()
    {
        let mut bytes = b"\xEF\xBB\xBF".to_vec();
        bytes.extend(shipped(file));
        let (code, _, stderr) = check_bytes(&format!("check-bom-{i}"), file, &bytes);
        assert_eq!(Some(0), code, "{file}: {stderr}");
    }
}

#[test]
fn a_rule_file_that_is_not_utf8_is_located() {
    let text = shipped("promotions/bill-first-time.yaml");
    let mut bytes = text.clone();
    let at = text.windows(7).position(|w| w == b"phase: ").unwrap() + 7;
    bytes.insert(at, 0xff);
    assert_reports(
        check_bytes("check-utf8", "promotions/bill-first-time.yaml", &bytes),
        "rules/promotions/bill-first-time.yaml:3:8: error[not_utf8]: this file is not UTF-8 text: save it as UTF-8",
    );
}

#[test]
fn a_truncated_rule_file_is_located_inside_it() {
    let text = shipped("promotions/bill-first-time.yaml");
    let cut = text.windows(9).position(|w| w == b"between: ").unwrap() + 18;
    let (code, heads, stderr) = check_bytes(
        "check-truncated",
        "promotions/bill-first-time.yaml",
        text.get(..cut).unwrap(),
    );
    eqnice(Some(1), code);
    assert!(
        heads.iter().any(
            |h| h.starts_with("rules/promotions/bill-first-time.yaml:9:")
                && h.contains("error[yaml]")
        ),
        "{stderr}"
    );
}

#[test]
fn an_alias_bomb_is_refused_and_located() {
    let mut text = String::from_utf8(shipped("promotions/bill-first-time.yaml")).unwrap();
    let mut bomb = String::from("params:\n  a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    for w in names.windows(2) {
        let refs = vec![format!("*{}", w[0]); 10].join(", ");
        bomb += &format!("  {}: &{} [{refs}]\n", w[1], w[1]);
    }
    text = text.replacen("when:\n", &format!("{bomb}when:\n"), 1);
    let (code, heads, stderr) = check_bytes(
        "check-bomb",
        "promotions/bill-first-time.yaml",
        text.as_bytes(),
    );
    eqnice(Some(1), code);
    assert!(
        heads
            .iter()
            .any(|h| h.starts_with("rules/promotions/bill-first-time.yaml:")
                && !h.starts_with("rules/promotions/bill-first-time.yaml: ")
                && h.contains("error[yaml]")),
        "{stderr}"
    );
}

#[test]
fn misspelt_key_gets_a_did_you_mean() {
    let case = check_with(
        "check-key",
        "promotions/bill-first-time.yaml",
        "\nwhen:",
        "\nwhn:",
    );
    assert!(
        case.2.contains("= help: did you mean `when`?"),
        "{}",
        case.2
    );
    assert_reports(
        case,
        "rules/promotions/bill-first-time.yaml:5:1: error[unknown_key]: unknown field `whn`, expected one of `id`, `clause`, `phase`, `on`, `decides`, `params`, `when`, `limits`, `points`, `grant`, `coupon_use`",
    );
}

#[test]
fn amount_that_is_not_a_decimal() {
    assert_reports(
        check_with("check-amount", "promotions/bill-returning.yaml", "face_value: \"40\"", "face_value: \"4O\""),
        "rules/promotions/bill-returning.yaml:27:19: error[bad_decimal]: `4O` is not a decimal; expected a decimal string such as \"40.00\"",
    );
}

#[test]
fn date_that_is_not_a_date() {
    assert_reports(
        check_with("check-date", "promotions/bill-first-time.yaml", "2019-12-19,", "2019-12-32,"),
        "rules/promotions/bill-first-time.yaml:9:15: error[bad_literal]: `2019-12-32` is not a date; expected YYYY-MM-DD (`at` is compared as a date YYYY-MM-DD)",
    );
}

#[test]
fn unknown_fact_names_the_closest() {
    let case = check_with(
        "check-fact",
        "promotions/bill-first-time.yaml",
        "fact: bill_payments",
        "fact: bill_paymnts",
    );
    assert!(
        case.2.contains("= help: did you mean `bill_payments`?"),
        "{}",
        case.2
    );
    assert_reports(
        case,
        "rules/promotions/bill-first-time.yaml:16:11: error[unknown_fact]: unknown fact `bill_paymnts`; facts are declared in the manifest",
    );
}

#[test]
fn unknown_event_type_channel_list_and_calendar() {
    assert_reports(
        check_with("check-type", "promotions/bill-first-time.yaml", "on: [bill_payment]", "on: [bill_paymnt]"),
        "rules/promotions/bill-first-time.yaml:4:6: error[unknown_event_type]: unknown event type `bill_paymnt`",
    );
    assert_reports(
        check_with("check-channel", "promotions/bill-first-time.yaml", "usable_for: [bill_payment]", "usable_for: [bil_payment]"),
        "rules/promotions/bill-first-time.yaml:29:20: error[unknown_channel]: unknown channel `bil_payment`",
    );
    assert_reports(
        check_with("check-list", "promotions/bill-first-time.yaml", "in_list: designated_cards", "in_list: designated_card"),
        "rules/promotions/bill-first-time.yaml:13:14: error[unknown_list]: unknown list `designated_card`; lists are declared in the manifest",
    );
    assert_reports(
        check_with("check-calendar", "promotions/bill-first-time.yaml", "calendar: hk", "calendar: hkg"),
        "rules/promotions/bill-first-time.yaml:32:15: error[unknown_calendar]: unknown calendar `hkg`; calendars are declared in the manifest's `calendars`",
    );
}

#[test]
fn duplicate_rule_id() {
    let text =
        std::fs::read_to_string(shipped_rules().join("promotions/bill-returning.yaml")).unwrap();
    // Rule files are read in name order: `bill-returning-2.yaml` first, so the original is
    // the one whose id is taken.
    assert_reports(
        check_with("check-duplicate", "promotions/bill-returning-2.yaml", "", &text),
        "rules/promotions/bill-returning.yaml:1:5: error[duplicate_rule_id]: rule id `bill-returning` is used by another rule file",
    );
}

#[test]
fn rules_whose_order_decides_are_ambiguous() {
    let case = check_with(
        "check-order",
        "promotions/bill-returning.yaml",
        "    gte: 1\n",
        "    gte: 0\n",
    );
    assert!(
        case.2.contains("= help: make their conditions exclusive"),
        "{}",
        case.2
    );
    assert_reports(
        case,
        "rules/promotions/bill-returning.yaml:21:14: error[ambiguous_order]: rules `bill-first-time` and `bill-returning` both count on `reward-1` for `bill_payment` events in phase `promotion`, so which one decides first depends on their order",
    );
}

#[test]
fn json_format_for_tools() {
    let dir = Dir::new("check-json");
    let rules = dir.copy_rules();
    let path = rules.join("promotions/bill-first-time.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("fact: bill_payments", "fact: bill_paymnts"),
    )
    .unwrap();
    let (code, list) = check_json(&rules);
    eqnice(Some(1), code);
    eqnice(serde_json::json!("unknown_fact"), list[0]["code"].clone());
    eqnice(serde_json::json!(16), list[0]["line"].clone());
    eqnice(serde_json::json!(11), list[0]["column"].clone());
    eqnice(
        serde_json::json!("did you mean `bill_payments`?"),
        list[0]["help"].clone(),
    );
}

#[test]
fn unknown_event_field_and_the_clause_it_encodes() {
    let case = check_with(
        "check-field",
        "promotions/bill-first-time.yaml",
        "field: card_product",
        "field: card_prodcut",
    );
    assert!(
        case.2.contains("= help: did you mean `card_product`?"),
        "{}",
        case.2
    );
    assert!(
        case.2.contains("= note: condition `designated_card` encodes: S2 / note 2: Citi credit cards except Cash Back AMEX and Rewards UnionPay"),
        "the message names the clause of the terms: {}",
        case.2
    );
    assert_reports(
        case,
        "rules/promotions/bill-first-time.yaml:12:12: error[unknown_field]: unknown event field `card_prodcut`; fields beyond the contract's are declared in the manifest's `extra_fields`",
    );
}

#[test]
fn fact_updates_take_only_fields_that_fit_the_fact() {
    assert_reports(
        check_with(
            "check-add-field",
            "ruleset.yaml",
            "        op: increment\n",
            "        op: add_field\n        field: amount\n",
        ),
        "rules/ruleset.yaml:65:13: error[bad_update]: update `add_field` does not apply to fact `bill_payments` of type count",
    );
    assert_reports(
        check_with(
            "check-set-field",
            "ruleset.yaml",
            "        op: set_true\n",
            "        op: set_field\n        field: merchant\n",
        ),
        "rules/ruleset.yaml:82:16: error[bad_update]: update of fact `points_authorized`: field `merchant` cannot update a fact; `at` gives a date, `amount` and `face_values` a decimal",
    );
}

/// Which fact rows and counters each event type's deciding uses, as the compiled ruleset
/// says (the engine reads them ahead of deciding): bill payments read and count the
/// customer's facts and count on reward 1 once (two rules share it), points redemptions read
/// the wallet's and count on a daily counter per wallet, purchases (coupon use only) neither.
#[test]
fn the_ruleset_knows_which_fact_rows_and_counters_each_event_type_uses() {
    let ruleset = promo::rules::load_ruleset(&crate::util::shipped_rules()).unwrap();
    let rows = |kind: &str| {
        let t = ruleset.event_type(kind).unwrap();
        let r = &ruleset.reads_by_type[t];
        (r.customer, r.wallet)
    };
    assert_eq!(rows("bill_payment"), (true, false));
    assert_eq!(rows("autopay_activation"), (true, false));
    assert_eq!(rows("points_redemption"), (false, true));
    assert_eq!(rows("points_authorization"), (false, true));
    assert_eq!(rows("purchase"), (false, false));
    assert_eq!(rows("card_link"), (false, false));
    let counters = |kind: &str| {
        let t = ruleset.event_type(kind).unwrap();
        let reads = &ruleset.reads_by_type[t];
        let named = reads.counters.iter().map(|&(c, per, window)| {
            (
                ruleset.counters[c].clone(),
                format!("{per:?}"),
                window.name(),
            )
        });
        named.collect::<Vec<_>>()
    };
    let c = |name: &str, per: &str, window: &str| {
        (name.to_string(), per.to_string(), window.to_string())
    };
    assert_eq!(
        counters("bill_payment"),
        [c("reward-1", "Customer", "period")]
    );
    assert_eq!(
        counters("autopay_payment"),
        [c("reward-2", "Customer", "period")]
    );
    assert_eq!(
        counters("points_redemption"),
        [c("points-daily", "Wallet", "day")]
    );
    assert_eq!(counters("purchase"), []);
}

/// The reproduction of issue 15: a second condition with a bad operator is reported once,
/// at its own line, with no false `no_test`.
#[test]
fn a_bad_operator_is_reported_once_at_its_own_condition() {
    let (code, heads, stderr) = check_with(
        "check-second-condition",
        "promotions/bill-first-time.yaml",
        "    between: [2019-12-19, 2020-01-31]\n",
        "    between: [2019-12-19, 2020-01-31]\n  - name: merchant_range\n    field: merchant\n    between: [a, b]\n",
    );
    eqnice(Some(1), code);
    eqnice(
        vec!["rules/promotions/bill-first-time.yaml:12:15: error[bad_operator]: `between` needs a number or a date, and `merchant` is text".to_string()],
        heads,
    );
    assert!(stderr.contains("1 error(s)"), "{stderr}");
}

#[test]
fn condition_shapes_are_located_at_the_condition() {
    let case = |name: &str, to: &str| {
        check_with(
            name,
            "promotions/bill-first-time.yaml",
            "  - name: designated_card\n",
            to,
        )
    };
    assert_reports(
        case("check-no-test", "  - name: just_a_field\n    field: merchant\n  - name: designated_card\n"),
        "rules/promotions/bill-first-time.yaml:10:5: error[no_test]: condition `just_a_field` names `merchant` but no test such as `eq`, `in_list` or `between`",
    );
    assert_reports(
        case("check-missing-name", "  - field: merchant\n    eq: x\n  - name: designated_card\n"),
        "rules/promotions/bill-first-time.yaml:10:5: error[missing_name]: every condition of `when` needs a `name`",
    );
    assert_reports(
        case("check-two-operands", "  - name: two\n    field: merchant\n    fact: bill_payments\n    eq: x\n  - name: designated_card\n"),
        "rules/promotions/bill-first-time.yaml:10:5: error[bad_condition]: condition `two` needs exactly one of `field`, `fact`, `sum_of`, `count_of`, `accumulator`, `working_day`, `value`, `all`, `any` or `script`",
    );
    assert_reports(
        case("check-reject", "  - name: rejecting\n    field: merchant\n    eq: x\n    reject: no\n  - name: designated_card\n"),
        "rules/promotions/bill-first-time.yaml:13:13: error[reject_not_allowed]: condition `rejecting`: only `decides: redemption` rules reject with a reason",
    );
    assert_reports(
        case("check-sum-of", "  - name: summed\n    sum_of: merchant\n    gte: \"1\"\n  - name: designated_card\n"),
        "rules/promotions/bill-first-time.yaml:11:13: error[bad_field_type]: `sum_of` needs a list of decimals such as `face_values`, not `merchant`",
    );
    assert_reports(
        case("check-list-op", "  - name: listed\n    field: coupons\n    eq: x\n  - name: designated_card\n"),
        "rules/promotions/bill-first-time.yaml:12:9: error[bad_operator]: `eq` does not apply to the list `coupons`; use `each_in`, `not_empty` or `count_of`",
    );
    assert_reports(
        case("check-in-literal", "  - name: amounts\n    field: amount\n    in: [\"1\", x]\n  - name: designated_card\n"),
        "rules/promotions/bill-first-time.yaml:12:15: error[bad_literal]: `x` is not a decimal; expected a decimal string such as \"40.00\" (`amount` is compared as a decimal string such as \"100.00\")",
    );
}

/// Issue 18 item 5: a condition no value passes is a located error.
#[test]
fn a_condition_that_never_holds_is_an_error() {
    assert_reports(
        check_with("check-reversed", "promotions/bill-first-time.yaml", "between: [2019-12-19, 2020-01-31]", "between: [2020-02-14, 2019-12-19]"),
        "rules/promotions/bill-first-time.yaml:9:15: error[never_holds]: `between: [2020-02-14, 2019-12-19]` is empty: its first bound is after its second, so the condition never holds",
    );
    assert_reports(
        check_with("check-in-empty", "promotions/bill-first-time.yaml", "    between: [2019-12-19, 2020-01-31]\n", "    between: [2019-12-19, 2020-01-31]\n  - name: no_merchant\n    field: merchant\n    in: []\n"),
        "rules/promotions/bill-first-time.yaml:12:9: error[never_holds]: `in: []` lists no value, so the condition never holds",
    );
}

/// Issue 18 item 4: a face value is more than zero, a minimum spend zero or more, and a
/// coupon is valid for at least a day.
#[test]
fn face_values_min_spends_and_valid_days_have_bounds() {
    for (i, fv) in ["\"-10\"", "\"0\"", "0"].into_iter().enumerate() {
        assert_reports(
            check_with(&format!("check-face-{i}"), "promotions/bill-returning.yaml", "face_value: \"40\"", &format!("face_value: {fv}")),
            &format!("rules/promotions/bill-returning.yaml:27:19: error[bad_amount]: `face_value: {}` must be more than zero", fv.trim_matches('"')),
        );
    }
    assert_reports(
        check_with("check-min-spend", "promotions/bill-returning.yaml", "min_spend: \"80\"", "min_spend: \"-1\""),
        "rules/promotions/bill-returning.yaml:28:18: error[bad_amount]: `min_spend: -1` must be zero or more",
    );
    let (code, _, stderr) = check_with(
        "check-min-spend-zero",
        "promotions/bill-returning.yaml",
        "min_spend: \"80\"",
        "min_spend: \"0\"",
    );
    eqnice(Some(0), code);
    assert!(stderr.is_empty(), "{stderr}");
    assert_reports(
        check_with("check-valid-days", "promotions/bill-first-time.yaml", "valid_days: 90", "valid_days: 0"),
        "rules/promotions/bill-first-time.yaml:33:15: error[bad_number]: `valid_days: 0` leaves a coupon no day to be used; it must be at least 1",
    );
}

/// A bad value in a manifest list that several conditions name is one error, at its line of
/// the manifest: not one per condition, nor at the conditions.
#[test]
fn a_bad_value_of_a_manifest_list_is_reported_once_at_the_manifest() {
    let dir = Dir::new("check-list-cascade");
    let rules = dir.copy_rules();
    let edit = |file: &str, from: &str, to: &str| {
        let path = rules.join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(from), "`{from}` not in {file}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "ruleset.yaml",
        "lists:\n",
        "lists:\n  closed_days:\n    - 2019-12-25\n    - 2019-12-32\n",
    );
    for rule in [
        "bill-first-time",
        "bill-returning",
        "autopay-first-activation",
    ] {
        edit(
            &format!("promotions/{rule}.yaml"),
            "when:\n",
            "when:\n  - name: open_day\n    field: at\n    not_in_list: closed_days\n",
        );
    }
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", rules.display()), "rules/");
    let heads: Vec<&str> = stderr.lines().filter(|l| l.starts_with("rules/")).collect();
    eqnice(Some(1), out.status.code());
    eqnice(
        vec!["rules/ruleset.yaml:41:7: error[bad_literal]: `2019-12-32` is not a date; expected YYYY-MM-DD (`at` is compared as a date YYYY-MM-DD)"],
        heads,
    );
}

/// A script's syntax error is shown at its own line and column of the rule file, also when
/// the script is a double-quoted string with `\n` escapes or a folded `>` block.
#[test]
fn script_errors_are_located_inside_quoted_and_folded_scalars() {
    let condition = |script: &str| {
        format!("    between: [2019-12-19, 2020-01-31]\n  - name: scripted\n{script}")
    };
    let case = |name: &str, script: &str| {
        check_with(
            name,
            "promotions/bill-first-time.yaml",
            "    between: [2019-12-19, 2020-01-31]\n",
            &condition(script),
        )
    };
    // Line 11 holds the script; the error (the second `>`) is on its escaped second line,
    // which the file still shows on line 11.
    let (code, heads, stderr) = case(
        "check-script-quoted",
        "    script: \"let a = 1;\\n  a > > 3\"\n",
    );
    eqnice(Some(1), code);
    assert!(
        heads
            .iter()
            .any(|h| h
                .starts_with("rules/promotions/bill-first-time.yaml:11:32: error[script_syntax]: script of condition `scripted`: Unexpected")),
        "{stderr}"
    );
    let (code, heads, stderr) = case(
        "check-script-folded",
        "    script: >\n      event.amount\n      > > 3\n",
    );
    eqnice(Some(1), code);
    assert!(
        heads.iter().any(
            |h| h.starts_with("rules/promotions/bill-first-time.yaml:13:")
                && h.contains("error[script_syntax]")
        ),
        "{stderr}"
    );
}

/// A script that breaks the sandbox's limits on a probe event fails the check at the
/// statement that ran away.
#[test]
fn a_runaway_script_is_located_at_its_loop() {
    let (code, heads, stderr) = check_with(
        "check-script-limit",
        "promotions/bill-first-time.yaml",
        "    between: [2019-12-19, 2020-01-31]\n",
        "    between: [2019-12-19, 2020-01-31]\n  - name: spinning\n    script: |\n      let n = 0;\n      while n >= 0 { n += 1; }\n      true\n",
    );
    eqnice(Some(1), code);
    assert!(
        heads.iter().any(|h| h.starts_with(
            "rules/promotions/bill-first-time.yaml:13:13: error[script_limit]: script of condition `spinning` in rule `bill-first-time` breaks the sandbox's limits"
        )),
        "{stderr}"
    );
}

/// Every code of the registry is asserted by some test, at its exact place: this fails when a
/// code is added without one.
#[test]
fn every_diagnostic_code_has_a_located_test() {
    let tests = [include_str!("check.rs"), include_str!("scripts.rs")].concat();
    let untested: Vec<&str> = promo::rules::error::CODES
        .iter()
        .copied()
        .filter(|code| {
            !tests.contains(&format!("error[{code}]: "))
                && !tests.contains(&format!("warning[{code}]: "))
        })
        .collect();
    eqnice(Vec::<&str>::new(), untested);
}

/// docs/check.md lists every code of the registry, so that a new code is documented.
#[test]
fn every_diagnostic_code_is_documented() {
    let docs = include_str!("../../docs/check.md");
    let undocumented: Vec<&str> = promo::rules::error::CODES
        .iter()
        .copied()
        .filter(|code| !docs.contains(&format!("- `{code}`")))
        .collect();
    eqnice(Vec::<&str>::new(), undocumented);
}

#[test]
fn manifest_and_calendar_codes_are_located() {
    let case = |name: &str, file: &str, from: &str, to: &str| check_with(name, file, from, to);
    assert_reports(
        case("check-tz", "ruleset.yaml", "timezone: Asia/Hong_Kong", "timezone: Asia/Hong_Kongg"),
        "rules/ruleset.yaml:5:11: error[unknown_timezone]: unknown time zone `Asia/Hong_Kongg`; expected an IANA name such as `Europe/Paris`",
    );
    let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    assert_reports(
        case(
            "check-too-many",
            "ruleset.yaml",
            "channels: [in_store, bill_payment, autopay, services, online]",
            &format!(
                "channels: [in_store, bill_payment, autopay, services, online, {}]",
                many.join(", ")
            ),
        ),
        "rules/ruleset.yaml:20:3: error[too_many]: at most 64 event types and 64 channels",
    );
    assert_reports(
        case("check-channel-both", "ruleset.yaml", "    channel: autopay\n", "    channel: autopay\n    channel_field: channel\n"),
        "rules/ruleset.yaml:27:14: error[conflicting_keys]: event type `autopay_payment` has both `channel` and `channel_field`; keep one",
    );
    assert_reports(
        case("check-scope", "ruleset.yaml", "    scope: customer\n", "    scope: all\n"),
        "rules/ruleset.yaml:60:12: error[bad_scope]: fact `bill_payments` must be kept per `customer` or per `wallet`",
    );
    assert_reports(
        case("check-weekday", "calendars/hk.yaml", "weekend: [saturday, sunday]", "weekend: [saturday, sundy]"),
        "rules/calendars/hk.yaml:5:21: error[bad_weekday]: `sundy` is not a weekday name such as `saturday`",
    );
    assert_reports(
        case("check-holiday", "calendars/hk.yaml", "date: 2019-01-01,", "date: 2019-01-32,"),
        "rules/calendars/hk.yaml:7:13: error[bad_date]: `2019-01-32` is not a date; expected YYYY-MM-DD",
    );
    assert_reports(
        case("check-cal-id", "calendars/hk.yaml", "id: hk", "id: hkg"),
        "rules/calendars/hk.yaml:3:5: error[id_mismatch]: calendar id `hkg` differs from the manifest's name `hk` for this file",
    );
    assert_reports(
        case("check-per", "promotions/bill-first-time.yaml", "per: customer", "per: custmer"),
        "rules/promotions/bill-first-time.yaml:22:10: error[unknown_value]: unknown variant `custmer`, expected one of `customer`, `wallet`, `all`",
    );
}

#[test]
fn rule_file_codes_are_located() {
    let case = |name: &str, from: &str, to: &str| {
        check_with(name, "promotions/bill-first-time.yaml", from, to)
    };
    let cases: [(&str, &str, &str, &str); 8] = [
        (
            "check-phase",
            "phase: promotion",
            "phase: promotoin",
            "rules/promotions/bill-first-time.yaml:3:8: error[unknown_phase]: unknown phase `promotoin`; the manifest's phases are [\"coupon_use\", \"promotion\"]",
        ),
        (
            "check-rule-id",
            "id: bill-first-time",
            "id: bill-first",
            "rules/promotions/bill-first-time.yaml:1:5: error[id_mismatch]: rule id `bill-first` differs from its file name `bill-first-time.yaml`; a rule's id is its file name",
        ),
        (
            "check-shape",
            "phase: promotion\n",
            "phase: promotion\ndecides: coupon_use\n",
            "rules/promotions/bill-first-time.yaml:4:10: error[bad_rule_shape]: a `coupon_use` rule needs a `coupon_use` block and no `grant`",
        ),
        (
            "check-empty-grant",
            "  coupons:\n    - face_value: \"80\"\n      min_spend: \"160\"\n      usable_for: [bill_payment]\n",
            "",
            "rules/promotions/bill-first-time.yaml:25:3: error[bad_rule_shape]: this `grant` lists no coupon: add `coupons` or `tiers`",
        ),
        (
            "check-points",
            "phase: promotion\n",
            "phase: promotion\npoints: { balance_fact: points_balance, reject: low }\n",
            "rules/promotions/bill-first-time.yaml:4:9: error[points_not_allowed]: `points` apply to `decides: redemption` rules only",
        ),
        (
            "check-empty-limit",
            "    max_grants: 1\n",
            "",
            "rules/promotions/bill-first-time.yaml:19:11: error[empty_limit]: limit `reward_1_once_per_customer` sets no bound: add `max_grants`, `max_coupons` or `max_value`",
        ),
        (
            "check-coupon",
            "    - face_value: \"80\"\n",
            "    - from_field: face_values\n      face_value: \"80\"\n",
            "rules/promotions/bill-first-time.yaml:27:7: error[bad_coupon]: a coupon has either a `face_value` or a `from_field`",
        ),
        (
            "check-credit-by",
            "    working_days_after: 2\n",
            "    working_days_after: 2\n    days_after: 1\n",
            "rules/promotions/bill-first-time.yaml:31:5: error[bad_credit_by]: `credit_by` needs exactly one of `working_days_after` or `days_after`",
        ),
    ];
    for (name, from, to, expected) in cases {
        assert_reports(case(name, from, to), expected);
    }
    let (code, heads, stderr) = case(
        "check-script-file",
        "    between: [2019-12-19, 2020-01-31]\n",
        "    between: [2019-12-19, 2020-01-31]\n  - name: scripted\n    script_file: nope.rhai\n",
    );
    eqnice(Some(1), code);
    assert!(
        heads.iter().any(|h| h.starts_with("rules/promotions/bill-first-time.yaml:11:18: error[unreadable_script]: cannot read script `")),
        "{stderr}"
    );
    assert_reports(
        check_with("check-balance-fact", "promotions/points-conversion.yaml", "balance_fact: points_balance", "balance_fact: bill_payments"),
        "rules/promotions/points-conversion.yaml:39:17: error[bad_fact_type]: `bill_payments` must be a decimal fact kept per wallet",
    );
}

#[test]
fn a_ruleset_without_rule_files_is_unreadable() {
    let dir = Dir::new("check-no-promotions");
    let rules = dir.copy_rules();
    std::fs::remove_dir_all(rules.join("promotions")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .arg("check")
        .arg(&rules)
        .output()
        .unwrap();
    let stderr =
        String::from_utf8_lossy(&out.stderr).replace(&format!("{}/", rules.display()), "rules/");
    eqnice(Some(1), out.status.code());
    assert!(
        stderr.starts_with("rules/promotions: error[unreadable]: cannot list rule files: "),
        "{stderr}"
    );
}

/// A script file is read by the loader, even inside `all`, and its syntax error is reported
/// at its own line of the script file, not of the rule file.
#[test]
fn a_script_file_error_is_located_in_the_script_file() {
    let dir = Dir::new("check-script-file-syntax");
    let rules = dir.copy_rules();
    let rule = rules.join("promotions/bill-first-time.yaml");
    let text = std::fs::read_to_string(&rule).unwrap().replacen(
        "    between: [2019-12-19, 2020-01-31]\n",
        "    between: [2019-12-19, 2020-01-31]\n  - name: scripted\n    all:\n      - script_file: bad.rhai\n",
        1,
    );
    std::fs::write(&rule, text).unwrap();
    std::fs::write(
        rules.join("promotions/bad.rhai"),
        "let x = 1;\nlet = 2;\nx > 0\n",
    )
    .unwrap();
    let (code, list) = check_json(&rules);
    eqnice(Some(1), code);
    let first = &list[0];
    eqnice("script_syntax", first["code"].as_str().unwrap());
    assert!(
        first["file"]
            .as_str()
            .unwrap()
            .ends_with("promotions/bad.rhai"),
        "{list}"
    );
    eqnice(2, first["line"].as_u64().unwrap());
}

/// A rule number past its documented maximum is refused at its place (issue 18, item 14):
/// `count: 100000000` aborted eval on allocation, `working_days_after: 4000000000` walked
/// centuries of days per event; each of these passed `check` before.
#[test]
fn numbers_that_could_take_the_process_down_are_bounded() {
    let rule = |name: &str, file: &str, from: &str, to: &str| {
        check_with(name, &format!("promotions/{file}.yaml"), from, to)
    };
    assert_reports(
        rule("check-count", "autopay-first-activation", "      count: 2\n", "      count: 100000000\n"),
        "rules/promotions/autopay-first-activation.yaml:35:14: error[too_large]: `count: 100000000` is more than 100, the most promo takes",
    );
    assert_reports(
        rule("check-working-days", "bill-first-time", "working_days_after: 2", "working_days_after: 4000000000"),
        "rules/promotions/bill-first-time.yaml:31:25: error[too_large]: `working_days_after: 4000000000` is more than 1000, the most promo takes",
    );
    assert_reports(
        rule("check-days-after", "bill-first-time", "working_days_after: 2", "days_after: 4000000000"),
        "rules/promotions/bill-first-time.yaml:31:17: error[too_large]: `days_after: 4000000000` is more than 3660, the most promo takes",
    );
    assert_reports(
        rule("check-valid-days", "bill-first-time", "valid_days: 90", "valid_days: 4000000000"),
        "rules/promotions/bill-first-time.yaml:33:15: error[too_large]: `valid_days: 4000000000` is more than 3660, the most promo takes",
    );
    let limits = "currency: HKD\nscript_limits:\n  call_depth: 100000\n  operations: 1000000000000\n  string_len: 1000000000\n";
    let case = check_with(
        "check-script-limits",
        "ruleset.yaml",
        "currency: HKD\n",
        limits,
    );
    for expected in [
        "rules/ruleset.yaml:8:15: error[too_large]: `call_depth: 100000` is more than 64, the most promo takes",
        "rules/ruleset.yaml:9:15: error[too_large]: `operations: 1000000000000` is more than 1000000, the most promo takes",
        "rules/ruleset.yaml:10:15: error[too_large]: `string_len: 1000000000` is more than 1000000, the most promo takes",
    ] {
        assert_reports(case.clone(), expected);
    }
}

/// A calendar with no working day made each credit date a walk to the end of the calendar's
/// dates, and then the payment date: refused, for a full weekend or a year of holidays.
#[test]
fn a_calendar_without_a_working_day_is_refused() {
    let week = "weekend: [monday, tuesday, wednesday, thursday, friday, saturday, sunday]";
    assert_reports(
        check_with("check-all-weekend", "calendars/hk.yaml", "weekend: [saturday, sunday]", week),
        "rules/calendars/hk.yaml:5:11: error[no_working_day]: calendar `hk` has no working day: its `weekend` lists all seven days",
    );
    let weekdays: String = chrono::NaiveDate::from_ymd_opt(2031, 1, 1)
        .unwrap()
        .iter_days()
        .take_while(|d| chrono::Datelike::year(d) == 2031)
        .filter(|d| chrono::Datelike::weekday(d).number_from_monday() <= 5)
        .map(|d| format!("  - {{ date: {d}, name: \"closed\" }}\n"))
        .collect();
    assert_reports(
        check_with("check-year-of-holidays", "calendars/hk.yaml", "holidays:\n", &format!("holidays:\n{weekdays}")),
        "rules/calendars/hk.yaml:7:13: error[no_working_day]: calendar `hk` has no working day in 2031: each day of it is a weekend day or a holiday",
    );
}

/// The codes of accumulators, expressions and partial fills, each at its value.
#[test]
fn accumulator_expression_and_partial_fill_codes_are_located() {
    assert_reports(
        check_with(
            "check-acc-scope",
            "ruleset.yaml",
            "channels: [in_store",
            "accumulators:\n  spend: { per: all, on: [bill_payment], sum: amount }\nchannels: [in_store",
        ),
        "rules/ruleset.yaml:36:17: error[bad_accumulator]: accumulator `spend`: it is kept per `customer` or per `wallet`",
    );
    assert_reports(
        check_with(
            "check-acc-unknown",
            "promotions/bill-first-time.yaml",
            "fact: bill_payments",
            "accumulator: bill_paymnts",
        ),
        "rules/promotions/bill-first-time.yaml:16:18: error[unknown_accumulator]: unknown accumulator `bill_paymnts`; accumulators are declared in the manifest",
    );
    assert_reports(
        check_with(
            "check-partial-fill",
            "promotions/points-conversion.yaml",
            "    max_value: \"1000\"",
            "    max_value: \"1000\"\n    partial_fill: true",
        ),
        "rules/promotions/points-conversion.yaml:36:19: error[bad_partial_fill]: limit `daily_limit_per_wallet`: `partial_fill` needs a grant of exactly one coupon (one `face_value`, no `count`, no `from_field`)",
    );
    let (code, heads, stderr) = check_with(
        "check-expression",
        "promotions/bill-first-time.yaml",
        "face_value: \"80\"",
        "face_value: \"min(amont * 10%, 80)\"",
    );
    assert_reports(
        (code, heads, stderr.clone()),
        "rules/promotions/bill-first-time.yaml:27:24: error[bad_expression]: `min(amont * 10%, 80)`: unknown name `amont`",
    );
    assert!(stderr.contains("did you mean `amount`?"), "{stderr}");
    assert_reports(
        check_with(
            "check-counter-window",
            "promotions/bill-returning.yaml",
            "    per: customer\n",
            "    per: customer\n    window: day\n",
        ),
        "rules/promotions/bill-returning.yaml:23:13: error[counter_window]: counter `reward-1` is counted by `day` here and by `period` in a limit before; limits that share a counter (with the same `per`) share its `window`",
    );
}
