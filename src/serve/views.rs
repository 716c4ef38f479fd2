//! What the service shows of the state: a wallet's coupons with their status on a date, a
//! customer's facts and counters.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use chrono::NaiveDate;
use serde::Serialize;
use utoipa::ToSchema;

use super::api::IssuedCouponOut;
use super::error::ApiError;
use crate::engine::state::{CouponRecord, FactValue};
use crate::engine::State;
use crate::model::Money;
use crate::rules::ruleset::Scope;
use crate::rules::Ruleset;

/// Where a coupon stands on a date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CouponStatus {
    NotYetCredited,
    Usable,
    Spent,
    Expired,
}

impl CouponStatus {
    fn of(c: &CouponRecord, on: NaiveDate) -> Self {
        if c.used {
            CouponStatus::Spent
        } else if on < c.credit_by {
            CouponStatus::NotYetCredited
        } else if c.valid_until.is_some_and(|v| on > v) {
            CouponStatus::Expired
        } else {
            CouponStatus::Usable
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CouponView {
    #[serde(flatten)]
    pub coupon: IssuedCouponOut,
    pub status: CouponStatus,
}

/// A wallet's coupons, in the order they were granted.
#[derive(Debug, Serialize, ToSchema)]
pub struct CouponsView {
    pub wallet: String,
    /// The date the statuses are for.
    pub on: String,
    pub coupons: Vec<CouponView>,
}

/// A counter of a limit kept for a customer.
#[derive(Debug, Serialize, ToSchema)]
pub struct CounterView {
    pub counter: String,
    pub per: String,
    /// The day of a daily counter, `YYYY-MM-DD`.
    pub day: Option<String>,
    pub grants: u64,
    pub coupons: u64,
    pub value: String,
}

/// A customer's facts and counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct CustomerView {
    pub customer: String,
    /// Whether the state knows the customer.
    pub known: bool,
    /// The customer-scoped facts of the manifest, `null` when never set.
    #[schema(value_type = Object)]
    pub facts: BTreeMap<String, serde_json::Value>,
    pub counters: Vec<CounterView>,
}

pub fn coupons(
    ruleset: &Ruleset,
    state: &State,
    wallet: &str,
    on: NaiveDate,
) -> Result<CouponsView, ApiError> {
    let listed = state.wallet_coupons(wallet).ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "coupons_spilled",
            "some coupons are kept in temporary files and cannot be listed",
        )
    })?;
    let coupons = listed
        .into_iter()
        .map(|(id, c)| CouponView {
            coupon: IssuedCouponOut {
                coupon_id: id.to_string(),
                face_value: Money(c.face_value).to_string(),
                min_spend: Money(c.min_spend).to_string(),
                usable_for: ruleset
                    .channel_names(c.usable_for)
                    .into_iter()
                    .map(str::to_string)
                    .collect(),
                credit_by: c.credit_by.to_string(),
                valid_until: c.valid_until.map(|d| d.to_string()),
            },
            status: CouponStatus::of(c, on),
        })
        .collect();
    Ok(CouponsView {
        wallet: wallet.to_string(),
        on: on.to_string(),
        coupons,
    })
}

fn fact_json(v: FactValue) -> serde_json::Value {
    match v {
        FactValue::Absent => serde_json::Value::Null,
        FactValue::Int(i) => i.into(),
        FactValue::Date(d) => d.to_string().into(),
        FactValue::Bool(b) => b.into(),
        FactValue::Decimal(d) => d.to_string().into(),
    }
}

pub fn customer(ruleset: &Ruleset, state: &State, customer: &str) -> CustomerView {
    let id = state.id_of(Scope::Customer, customer);
    let facts = ruleset
        .facts_of(Scope::Customer)
        .map(|f| {
            let v = id.map_or(FactValue::Absent, |id| {
                state.table(Scope::Customer).get(id, f.slot)
            });
            (f.name.clone(), fact_json(v))
        })
        .collect();
    let mut counters: Vec<CounterView> = id
        .map(|id| state.counters_of(Scope::Customer, id))
        .unwrap_or_default()
        .into_iter()
        .map(|(k, t)| CounterView {
            counter: ruleset
                .counters
                .get(k.counter as usize)
                .cloned()
                .unwrap_or_default(),
            per: "customer".into(),
            day: (k.day != i32::MIN)
                .then(|| NaiveDate::from_num_days_from_ce_opt(k.day))
                .flatten()
                .map(|d| d.to_string()),
            grants: t.grants,
            coupons: t.coupons,
            value: Money(t.value).to_string(),
        })
        .collect();
    counters.sort_by(|a, b| (&a.counter, &a.day).cmp(&(&b.counter, &b.day)));
    CustomerView {
        customer: customer.to_string(),
        known: id.is_some(),
        facts,
        counters,
    }
}
