//! What scripts see: the event (every field, unknown extra fields included) and the
//! customer's and wallet's facts, as Rhai maps. Money is `Decimal` in scripts too.

use chrono::NaiveDate;
use rhai::{Dynamic, Map};
use rust_decimal::Decimal;

use super::state::{FactValue, State};
use crate::model::Event;
use crate::rules::ruleset::Scope;
use crate::rules::script::absent_fact;
use crate::rules::Ruleset;

fn text(s: &str) -> Dynamic {
    Dynamic::from(s.to_string())
}

fn json(v: &serde_json::Value) -> Dynamic {
    match v {
        serde_json::Value::Null => Dynamic::UNIT,
        serde_json::Value::Bool(b) => (*b).into(),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n
                .to_string()
                .parse::<Decimal>()
                .map_or_else(|_| text(&n.to_string()), Dynamic::from),
        },
        serde_json::Value::String(s) => text(s),
        serde_json::Value::Array(items) => items.iter().map(json).collect::<rhai::Array>().into(),
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.as_str().into(), json(v)))
            .collect::<Map>()
            .into(),
    }
}

/// The event as a map; `date` is its date in the ruleset's zone, `YYYY-MM-DD`.
pub fn event_map(ev: &Event<'_>, date: NaiveDate) -> Map {
    let mut m = Map::new();
    m.insert("id".into(), text(&ev.id));
    m.insert("type".into(), text(&ev.kind));
    m.insert("at".into(), text(&ev.at.to_rfc3339()));
    m.insert("date".into(), text(&date.to_string()));
    m.insert("customer".into(), text(&ev.customer));
    m.insert("wallet".into(), text(&ev.wallet));
    for (k, v) in [
        ("card_product", &ev.card_product),
        ("card_role", &ev.card_role),
        ("merchant", &ev.merchant),
        ("channel", &ev.channel),
    ] {
        if let Some(v) = v {
            m.insert(k.into(), text(v));
        }
    }
    if let Some(a) = ev.amount {
        m.insert("amount".into(), Dynamic::from(a));
    }
    if let Some(c) = &ev.coupons {
        m.insert(
            "coupons".into(),
            c.iter().map(|s| text(s)).collect::<rhai::Array>().into(),
        );
    }
    if let Some(f) = &ev.face_values {
        m.insert(
            "face_values".into(),
            f.iter()
                .map(|d| Dynamic::from(*d))
                .collect::<rhai::Array>()
                .into(),
        );
    }
    for (k, v) in &ev.extra {
        m.insert(k.as_ref().into(), json(v));
    }
    m
}

/// The customer's and the wallet's facts by name; a fact with no value reads as
/// `script::absent_fact` says (dates `()`, the others zero or false).
pub fn facts_map(ruleset: &Ruleset, state: &State, customer: u32, wallet: u32) -> Map {
    ruleset
        .facts
        .iter()
        .map(|f| {
            let owner = if f.scope == Scope::Wallet {
                wallet
            } else {
                customer
            };
            let v = match state.fact(f.scope, owner, f.slot) {
                FactValue::Absent => absent_fact(f.kind),
                FactValue::Int(i) => i.into(),
                FactValue::Date(d) => text(&d.to_string()),
                FactValue::Bool(b) => b.into(),
                FactValue::Decimal(d) => Dynamic::from(d),
            };
            (f.name.as_str().into(), v)
        })
        .collect()
}
