//! The JSON Schema of rule files, for `promo schema`: editors use it to complete keys, show
//! their descriptions and flag misspelt ones while marketing writes a rule. Each schema is
//! generated from the serde shapes in [`super::raw`] (`#[derive(JsonSchema)]`), so it cannot
//! drift from what the loader accepts: a key the loader refuses (`deny_unknown_fields`) is
//! `additionalProperties: false` here. The schema checks shape only, as the loader's YAML
//! step does; names that must be declared elsewhere (phases, lists, facts, calendars) are
//! still checked by `promo check`. The schemas are draft-07, the draft editors' YAML and
//! JSON support understands best.
//!
//! A few rule values are held as YAML values by the loader and read later (amounts,
//! comparison values); [`Amount`], [`AmountOrExpression`], [`Scalar`] and [`MinSpendByFaceValue`] describe them for
//! the schema only.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use super::raw::{RawCalendar, RawManifest, RawRule};

/// Which rule file a schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaKind {
    /// A rule file, `promotions/<rule-id>.yaml`.
    Rule,
    /// The manifest, `ruleset.yaml`.
    Manifest,
    /// A working-day calendar, `calendars/<id>.yaml`.
    Calendar,
}

/// The JSON Schema of a rule file (`promotions/<rule-id>.yaml`).
pub fn rule_schema() -> serde_json::Value {
    generate::<RawRule>("promo rule file (promotions/<rule-id>.yaml)")
}

/// The JSON Schema of a ruleset's manifest (`ruleset.yaml`).
pub fn manifest_schema() -> serde_json::Value {
    generate::<RawManifest>("promo ruleset manifest (ruleset.yaml)")
}

/// The JSON Schema of a working-day calendar file (`calendars/<id>.yaml`).
pub fn calendar_schema() -> serde_json::Value {
    generate::<RawCalendar>("promo working-day calendar (calendars/<id>.yaml)")
}

/// The JSON Schema of the given kind of rule file.
pub fn schema_for(kind: SchemaKind) -> serde_json::Value {
    match kind {
        SchemaKind::Rule => rule_schema(),
        SchemaKind::Manifest => manifest_schema(),
        SchemaKind::Calendar => calendar_schema(),
    }
}

/// The draft-07 root schema of `T`, titled `title`, with its `$schema` and no `$id`.
fn generate<T: JsonSchema>(title: &str) -> serde_json::Value {
    let mut schema = SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>();
    schema.insert("title".into(), title.into());
    schema.remove("$id");
    schema.to_value()
}

/// A decimal as text, as the loader reads it (`12.50`, `80`, `1_000`, `-5`, `1e3`), spaces
/// around it allowed.
const DECIMAL_TEXT: &str =
    r"^\s*[+-]?([0-9][0-9_]*(\.[0-9_]*)?|\.[0-9][0-9_]*)([eE][+-]?[0-9]+)?\s*$";

/// An amount of money or points: a decimal written as a quoted string (`"10"`, `"12.50"`)
/// or a whole number (`10`). Unquoted numbers with a fraction are refused so that no binary
/// rounding reaches money.
pub struct Amount;

impl JsonSchema for Amount {
    fn schema_name() -> Cow<'static, str> {
        "Amount".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": concat!(
                "An amount: a decimal in quotes, such as \"10\" or \"12.50\", or a whole ",
                "number such as 10. Write a fraction in quotes: \"12.50\", not 12.50."
            ),
            "anyOf": [
                { "type": "string", "pattern": DECIMAL_TEXT },
                { "type": "integer" }
            ]
        })
    }
}

/// A coupon's `face_value` or `min_spend`: an amount, or an expression computing one.
pub struct AmountOrExpression;

impl JsonSchema for AmountOrExpression {
    fn schema_name() -> Cow<'static, str> {
        "AmountOrExpression".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let amount = generator.subschema_for::<Amount>();
        json_schema!({
            "description": concat!(
                "An amount (\"10\", \"12.50\", 10), or an expression computing one over the ",
                "event, facts, accumulators and params, such as \"min(amount * 10%, 50)\"."
            ),
            "anyOf": [
                amount,
                { "type": "string", "pattern": "[-+*/%(]" }
            ]
        })
    }
}

/// A value a condition compares with: a text, a number, an amount, a date or a yes/no.
pub struct Scalar;

impl JsonSchema for Scalar {
    fn schema_name() -> Cow<'static, str> {
        "Scalar".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": concat!(
                "A value to compare with, of the kind compared: a text (gold_visa), ",
                "a whole number (0), an amount (\"12.50\"), a date (2031-03-01) or true / false."
            ),
            "type": ["string", "number", "boolean"]
        })
    }
}

/// `min_spend_by_face_value`: a minimum spend for each face value, both amounts.
pub struct MinSpendByFaceValue;

impl JsonSchema for MinSpendByFaceValue {
    fn schema_name() -> Cow<'static, str> {
        "MinSpendByFaceValue".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let amount = generator.subschema_for::<Amount>();
        json_schema!({
            "description": concat!(
                "The minimum spend for each face value, both amounts. ",
                "Example: { \"10\": \"30\", \"25\": \"60\" }."
            ),
            "type": "object",
            "propertyNames": { "pattern": DECIMAL_TEXT },
            "additionalProperties": amount
        })
    }
}
