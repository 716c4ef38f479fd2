/*!
docs/rules.md, the reference of the rule language, documents every key of the rule files:
each property name of the JSON Schemas `promo schema` prints (rule file, manifest, calendar),
and each enumerated value (windows, fact types, fact ops, scopes, `decides`, coupon checks),
appears in it as code, `` `name` ``. A key added to the rule language without its
documentation fails here, with the list of every key missing.
*/

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

/// The schema `promo schema --kind KIND` prints.
fn printed_schema(kind: &str) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_promo"))
        .args(["schema", "--kind", kind])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promo schema --kind {kind}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("promo schema --kind {kind} printed no JSON: {e}"))
}

/// Every key an author may write by the schema: the names of all `properties`, and the
/// string values of `enum` and `const`, wherever they are. The walk goes through every
/// object and array of the schema, so it reaches `definitions` / `$defs`, `oneOf` / `anyOf`
/// / `allOf`, `items` and `additionalProperties` alike; descriptions, titles, types and
/// patterns are values of other keywords and are not collected.
fn schema_keys(schema: &Value) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    collect(schema, &mut keys);
    keys
}

fn collect(v: &Value, keys: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (keyword, sub) in map {
                match (keyword.as_str(), sub) {
                    ("properties", Value::Object(props)) => {
                        keys.extend(props.keys().cloned());
                    }
                    ("enum", Value::Array(values)) => {
                        keys.extend(values.iter().filter_map(Value::as_str).map(String::from));
                    }
                    ("const", Value::String(value)) => {
                        keys.insert(value.clone());
                    }
                    _ => {}
                }
                collect(sub, keys);
            }
        }
        Value::Array(items) => items.iter().for_each(|x| collect(x, keys)),
        _ => {}
    }
}

/// The keys that `text` does not show as code (`` `key` ``).
fn undocumented<'k>(keys: &'k BTreeSet<String>, text: &str) -> Vec<&'k str> {
    keys.iter()
        .map(String::as_str)
        .filter(|k| !text.contains(&format!("`{k}`")))
        .collect()
}

#[test]
fn every_schema_key_is_documented_in_rules_md() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs")
        .join("rules.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut missing = Vec::new();
    // Each schema with a key of its own nested in `definitions`: a walk that stopped at
    // the top would pass on any text.
    for (kind, nested) in [
        ("rule", "between"),
        ("manifest", "increment"),
        ("calendar", "date"),
    ] {
        let keys = schema_keys(&printed_schema(kind));
        assert!(keys.contains(nested), "{kind}: no `{nested}` in {keys:?}");
        missing.extend(
            undocumented(&keys, &doc)
                .into_iter()
                .map(|k| format!("{kind}: `{k}`")),
        );
    }
    assert!(
        missing.is_empty(),
        "docs/rules.md does not document {} key(s) of `promo schema`; write each as code \
         (`name`) with its meaning, type, default and an example:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn the_walk_reaches_every_kind_of_subschema_and_reports_each_missing_key() {
    let schema = json!({
        "title": "not_a_key",
        "description": "neither `is_this`",
        "properties": {
            "top": { "$ref": "#/definitions/Inner" },
            "map": { "type": "object", "additionalProperties": { "$ref": "#/$defs/Valued" } },
            "list": { "type": "array", "items": { "properties": { "in_items": true } } }
        },
        "definitions": {
            "Inner": {
                "oneOf": [
                    { "type": "string", "const": "one_const" },
                    { "type": "object", "properties": { "in_one_of": { "type": "integer" } } }
                ]
            },
            "Kind": { "type": "string", "enum": ["first_value", "second_value", 3] }
        },
        "$defs": {
            "Valued": {
                "anyOf": [{ "properties": { "in_any_of": true } }],
                "allOf": [{ "properties": { "in_all_of": true } }],
                "additionalProperties": { "properties": { "in_additional": true } }
            }
        }
    });
    let keys = schema_keys(&schema);
    let want = [
        "first_value",
        "in_additional",
        "in_all_of",
        "in_any_of",
        "in_items",
        "in_one_of",
        "list",
        "map",
        "one_const",
        "second_value",
        "top",
    ];
    assert_eq!(keys.iter().map(String::as_str).collect::<Vec<_>>(), want);

    // A text naming all but two of them, one only as plain text, not as code.
    let text = "`first_value` `in_additional` `in_all_of` `in_any_of` `in_items` `list` \
                `map` `one_const` second_value `top` and `in_one_of_more`";
    assert_eq!(undocumented(&keys, text), ["in_one_of", "second_value"]);
    let all: String = want.iter().map(|k| format!("`{k}` ")).collect();
    assert!(undocumented(&keys, &all).is_empty());
}
