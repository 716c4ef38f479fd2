//! Nothing promotion-specific lives in Rust: no value of the shipped ruleset (date, amount,
//! card, merchant, channel, event type, reason code, rule id, list or fact name) appears in
//! `src/`. Only the rule language's own words and the contract's field names may.

use std::path::{Path, PathBuf};

/// Words of the rule language and the event contract: the engine knows these.
const VOCABULARY: &[&str] = &[
    // scopes, windows, fact types and update ops
    "customer",
    "wallet",
    "all",
    "day",
    "count",
    "date",
    "flag",
    "decimal",
    "increment",
    "set_true",
    "set_false",
    "earliest_date",
    "latest_date",
    "add_field",
    "set_field",
    // what rules decide, and coupon lifecycle checks
    "grant",
    "redemption",
    "coupon_use",
    "owned_by_wallet",
    "unused",
    "credited",
    "not_expired",
    "channel_allowed",
    "min_spend_met",
    // weekday names of calendars
    "saturday",
    "sunday",
    // the event contract's fields
    "id",
    "type",
    "at",
    "card_product",
    "card_role",
    "merchant",
    "amount",
    "channel",
    "coupons",
    "face_values",
    "true",
    "false",
    // the product's own word, also the name of the seed's promotion phase
    "promotion",
];

fn files(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n != "tests") {
                files(&path, ext, out);
            }
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
}

/// Every scalar value (not key) of a YAML document.
fn values(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Number(n) => out.push(n.to_string()),
        serde_json::Value::Array(items) => items.iter().for_each(|i| values(i, out)),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                // Keys are the rule language's, except where a mapping is itself data.
                if k == "min_spend_by_face_value" {
                    if let serde_json::Value::Object(inner) = v {
                        out.extend(inner.keys().cloned());
                    }
                }
                values(v, out);
            }
        }
        _ => {}
    }
}

#[test]
fn src_holds_no_promotion_constant() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut rule_files = Vec::new();
    files(&root.join("rules"), "yaml", &mut rule_files);
    assert!(
        rule_files.len() >= 7,
        "expected the manifest, a calendar and five rules"
    );
    let mut tokens = Vec::new();
    for f in &rule_files {
        let doc: serde_json::Value =
            serde_saphyr::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        values(&doc, &mut tokens);
    }
    for f in rule_files
        .iter()
        .filter(|f| f.parent().is_some_and(|p| p.ends_with("promotions")))
    {
        tokens.push(f.file_stem().unwrap().to_string_lossy().into_owned());
    }
    // Fact, list and calendar names are keys of the manifest, but promotion data all the same.
    let manifest: serde_json::Value =
        serde_saphyr::from_str(&std::fs::read_to_string(root.join("rules/ruleset.yaml")).unwrap())
            .unwrap();
    for section in ["facts", "lists", "calendars"] {
        if let Some(m) = manifest.get(section).and_then(|v| v.as_object()) {
            tokens.extend(m.keys().cloned());
        }
    }
    tokens.sort();
    tokens.dedup();
    tokens.retain(|t| !VOCABULARY.contains(&t.as_str()));
    // Single digits (`eq: 0`, `count: 2`) are too common in code to mean anything.
    tokens.retain(|t| !(t.len() == 1 && t.chars().all(|c| c.is_ascii_digit())));
    assert!(
        tokens.iter().any(|t| t == "citi_prestige"),
        "the scan must see the card list"
    );
    assert!(
        tokens.iter().any(|t| t == "daily_limit_exceeded"),
        "the scan must see reason codes"
    );

    let mut sources = Vec::new();
    files(&root.join("src"), "rs", &mut sources);
    let mut found = Vec::new();
    for f in &sources {
        let text = std::fs::read_to_string(f).unwrap();
        for t in &tokens {
            // Short values (amounts such as 80, days such as 2) are only flagged as string
            // literals; longer ones anywhere, comments included.
            let hit = if t.len() >= 4 {
                text.contains(t.as_str())
            } else {
                text.contains(&format!("\"{t}\""))
            };
            if hit {
                found.push(format!("{}: `{t}`", f.display()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "promotion constants in src/:\n{}",
        found.join("\n")
    );
}
