/*!
The JSON Schema of rule files (`promo schema`), called as library functions: every shipped
rule file, manifest, calendar and test fixture validates against its schema, and a misspelt
key is refused with an error that names it.
*/

use std::path::{Path, PathBuf};

use jsonschema::Validator;
use promo::rules::schema::{calendar_schema, manifest_schema, rule_schema, schema_for, SchemaKind};
use serde_json::Value;

use crate::util::{fixture, shipped_rules};

/// A compiled validator for `schema`; the schema itself must be valid.
fn validator(schema: &Value) -> Validator {
    jsonschema::validator_for(schema).unwrap_or_else(|e| panic!("invalid schema: {e}"))
}

/// A YAML file as JSON, the way an editor's YAML support sees it.
fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every error of `instance` against `v`, one a line, with where it is.
fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

fn assert_valid(v: &Validator, path: &Path) {
    let errs = errors(v, &yaml_file(path));
    assert!(errs.is_empty(), "{}:\n{}", path.display(), errs.join("\n"));
}

/// The `.yaml` files directly in `dir`, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

#[test]
fn schemas_have_a_title_a_draft_and_no_id() {
    for kind in [SchemaKind::Rule, SchemaKind::Manifest, SchemaKind::Calendar] {
        let s = schema_for(kind);
        assert!(
            s["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{kind:?}"
        );
        assert_eq!(
            s["$schema"], "http://json-schema.org/draft-07/schema#",
            "{kind:?}"
        );
        assert!(s.get("$id").is_none(), "{kind:?}");
        assert_eq!(s["additionalProperties"], false, "{kind:?}");
        // The draft's own meta-schema accepts it.
        assert!(jsonschema::meta::is_valid(&s), "{kind:?}");
    }
    assert_eq!(schema_for(SchemaKind::Rule), rule_schema());
    assert_eq!(schema_for(SchemaKind::Manifest), manifest_schema());
    assert_eq!(schema_for(SchemaKind::Calendar), calendar_schema());
}

#[test]
fn schema_keys_carry_descriptions() {
    let s = rule_schema();
    for key in ["id", "phase", "on", "when", "grant"] {
        let d = s["properties"][key]["description"].as_str().unwrap_or("");
        assert!(!d.is_empty(), "rule key `{key}` has no description");
    }
    let condition = &s["definitions"]["RawCondition"];
    assert_eq!(condition["additionalProperties"], false);
    for key in ["field", "between", "in_list", "script"] {
        let d = condition["properties"][key]["description"]
            .as_str()
            .unwrap_or("");
        assert!(!d.is_empty(), "condition key `{key}` has no description");
    }
}

#[test]
fn shipped_rule_files_match_the_rule_schema() {
    let v = validator(&rule_schema());
    let files = yaml_files(&shipped_rules().join("promotions"));
    assert!(files.len() >= 5, "{files:?}");
    for f in files {
        assert_valid(&v, &f);
    }
}

#[test]
fn shipped_manifest_matches_the_manifest_schema() {
    let v = validator(&manifest_schema());
    assert_valid(&v, &shipped_rules().join("ruleset.yaml"));
}

#[test]
fn shipped_calendar_matches_the_calendar_schema() {
    let v = validator(&calendar_schema());
    assert_valid(&v, &shipped_rules().join("calendars").join("hk.yaml"));
}

#[test]
fn fixture_rule_files_match_the_rule_schema() {
    let v = validator(&rule_schema());
    let dir = fixture("");
    let files = yaml_files(&dir);
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    for f in files {
        assert_valid(&v, &f);
    }
}

const MISSPELT: &str = r#"
id: misspelt
phase: promotion
on: [purchase]
whn:
  - name: in_january
    field: at
    between: [2020-01-01, 2020-01-31]
grant:
  coupons:
    - { face_value: "30", usable_for: [in_store] }
  credit_by: { days_after: 0 }
"#;

#[test]
fn a_misspelt_rule_key_is_refused_by_name() {
    let v = validator(&rule_schema());
    let rule: Value = serde_saphyr::from_str(MISSPELT).unwrap();
    let errs = errors(&v, &rule);
    assert!(!errs.is_empty(), "`whn` was accepted");
    assert!(
        errs.iter()
            .any(|e| e.contains("'whn'") || e.contains("\"whn\"")),
        "no error names `whn`:\n{}",
        errs.join("\n")
    );
}

#[test]
fn a_misspelt_condition_key_is_refused_by_name() {
    let v = validator(&rule_schema());
    let text = MISSPELT
        .replace("whn:", "when:")
        .replace("between:", "betwen:");
    let rule: Value = serde_saphyr::from_str(&text).unwrap();
    let errs = errors(&v, &rule);
    assert!(
        errs.iter()
            .any(|e| e.starts_with("/when/0")
                && (e.contains("'betwen'") || e.contains("\"betwen\""))),
        "no error names `betwen` at /when/0:\n{}",
        errs.join("\n")
    );
    // Spelt right, the same rule passes.
    let fixed: Value = serde_saphyr::from_str(&MISSPELT.replace("whn:", "when:")).unwrap();
    assert_eq!(errors(&v, &fixed), Vec::<String>::new());
}

#[test]
fn amounts_are_quoted_decimals_whole_numbers_or_expressions() {
    let v = validator(&rule_schema());
    let with_face_value = |fv: &str| -> Value {
        serde_saphyr::from_str(&MISSPELT.replace("whn:", "when:").replace("\"30\"", fv)).unwrap()
    };
    for ok in [
        "\"30\"",
        "\"12.50\"",
        "30",
        "\"min(amount * 10%, 30)\"",
        "\"2 * 15\"",
    ] {
        assert!(v.is_valid(&with_face_value(ok)), "{ok} refused");
    }
    for bad in ["12.50", "\"thirty\"", "true"] {
        assert!(!v.is_valid(&with_face_value(bad)), "{bad} accepted");
    }
}
