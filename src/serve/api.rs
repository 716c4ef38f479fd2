//! The routes: request bodies and parameters in, the decider or the state's views out.
//! Every schema of the OpenAPI document is derived from the types here.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State as Extract};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};
use utoipa::{IntoParams, OpenApi, ToSchema};

use super::body::{prepare, split_events};
use super::decider::{self, Answer, Job, Msg, SharedState};
use super::error::{ApiError, ErrorBody};
use super::live::{Live, Rejection};
use super::metrics::Metrics;
use super::reload::{Reload, ReloadOutcome};
use super::views::{self, CouponsView, CustomerView};
use crate::rules::ruleset::EventType;
use crate::rules::ruleset::Scope;
use crate::rules::Ruleset;
use crate::store::pg::PgStore;

/// What every handler shares.
pub struct App {
    pub live: ArcSwap<Live>,
    pub last_rejected: Mutex<Option<Rejection>>,
    /// Where the read routes find a customer's or a wallet's state.
    pub state: StateSource,
    pub jobs: mpsc::Sender<Msg>,
    pub reloads: mpsc::Sender<Reload>,
    pub metrics: Arc<Metrics>,
    pub ready: Arc<AtomicBool>,
    pub max_batch: usize,
    /// The default `on` date of coupon statuses; today in the ruleset's zone if unset.
    pub today: Option<NaiveDate>,
}

pub type Shared = Arc<App>;

/// The state the read routes read: this process's, or the shared one in PostgreSQL.
pub enum StateSource {
    Local(SharedState),
    Shared(Arc<PgStore>),
}

impl StateSource {
    /// `f` of a state holding (at least) the customer's or wallet's `name` rows.
    async fn read<T>(
        &self,
        ruleset: &crate::rules::Ruleset,
        (scope, name): (Scope, &str),
        f: impl FnOnce(&crate::engine::State) -> T,
    ) -> Result<T, ApiError> {
        match self {
            StateSource::Local(state) => Ok(f(&decider::lock(state))),
            StateSource::Shared(pg) => {
                let state = super::shared::owner_state(pg, ruleset, scope, name).await?;
                Ok(f(&state))
            }
        }
    }
}

/// An event of the contract (PRODUCT.md): the fields the seed's event types use; any other
/// field is kept and visible to scripts.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(
    dead_code,
    reason = "documents the shape; bodies are read by the engine's parser"
)]
pub struct EventIn {
    /// The event id, the idempotency key.
    #[schema(min_length = 1)]
    id: String,
    /// One of the live ruleset's event types (served `/openapi.json` lists them).
    #[serde(rename = "type")]
    #[schema(min_length = 1)]
    kind: String,
    /// RFC 3339 with offset, e.g. `2019-12-20T10:00:00+08:00`.
    #[schema(format = DateTime)]
    at: String,
    #[schema(min_length = 1)]
    customer: String,
    #[schema(min_length = 1)]
    wallet: String,
    card_product: Option<String>,
    card_role: Option<String>,
    merchant: Option<String>,
    /// A decimal string, e.g. `"12.30"`.
    #[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
    amount: Option<String>,
    channel: Option<String>,
    coupons: Option<Vec<String>>,
    /// Decimal strings, e.g. `["12.30", "4"]`.
    #[schema(inline, value_type = Option<Vec<Amount>>)]
    face_values: Option<Vec<String>>,
}

/// A decimal string, e.g. `"12.30"`.
#[derive(Debug, ToSchema)]
#[schema(pattern = r"^[0-9]+(\.[0-9]+)?$")]
#[allow(dead_code, reason = "documents the shape")]
struct Amount(String);

/// One event or an array of events.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code, reason = "documents the shape")]
pub enum EventsIn {
    One(Box<EventIn>),
    Many(Vec<EventIn>),
}

/// A coupon a decision issues.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuedCouponOut {
    pub coupon_id: String,
    pub face_value: String,
    pub min_spend: String,
    pub usable_for: Vec<String>,
    /// `YYYY-MM-DD`.
    pub credit_by: String,
    pub valid_until: Option<String>,
}

/// One decision, as `promo eval` writes it.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionOut {
    pub event_id: String,
    pub rule: String,
    /// `grant`, `approve`, `reject`, `accept_coupon` or `reject_coupon`.
    pub decision: String,
    pub customer: String,
    pub wallet: String,
    pub coupons: Option<Vec<IssuedCouponOut>>,
    pub coupon_id: Option<String>,
    pub reason: Option<String>,
    pub points: Option<String>,
}

/// What was decided for one event.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventResult {
    pub event_id: String,
    /// The version of the ruleset that made the decisions.
    pub ruleset_version: String,
    /// The event id was decided before: these are the decisions first given.
    pub replay: bool,
    pub dry_run: bool,
    pub decisions: Vec<DecisionOut>,
}

/// One result for one event, an array of results for an array.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum EventsOut {
    One(EventResult),
    Many(Vec<EventResult>),
}

/// Query parameters: without `parameter_in`, utoipa documents the fields as required path
/// parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Decide without changing anything.
    dry_run: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CouponsQuery {
    /// The date statuses are given for, `YYYY-MM-DD`; default today in the ruleset's zone.
    #[param(format = Date)]
    on: Option<String>,
}

/// The live ruleset.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesetOut {
    pub version: String,
    pub loaded_at: String,
    pub rules: Vec<String>,
    pub last_rejected: Option<Rejection>,
}

/// What a reload came to.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReloadOut {
    /// `swapped`, `unchanged` or `rejected`.
    pub outcome: ReloadOutcome,
    pub ruleset: RulesetOut,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub status: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "promo",
        description = "Live promotion decisions: the same events, decisions and state as `promo eval`."
    ),
    paths(
        post_events,
        wallet_coupons,
        customer,
        ruleset,
        reload,
        healthz,
        readyz,
        metrics
    ),
    components(schemas(
        EventIn,
        EventsIn,
        EventsOut,
        EventResult,
        DecisionOut,
        IssuedCouponOut,
        ErrorBody,
        RulesetOut,
        ReloadOut,
        Status,
        CouponsView,
        CustomerView
    ))
)]
pub struct ApiDoc;

/// The OpenAPI document the code generates, kept in `docs/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}

/// The OpenAPI document as served: the generated one, with what the live ruleset admits of
/// an event written into `EventIn`, so that clients and fuzzers see the events it decides
/// rather than any text: one variant per event type, each requiring the fields the type
/// requires, and amounts with at most its currency's decimals.
pub fn openapi_for(ruleset: &Ruleset) -> String {
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let event = &mut doc["components"]["schemas"]["EventIn"];
    let amount = amount_pattern(ruleset.amount_decimals);
    event["properties"]["amount"]["pattern"] = amount.clone().into();
    event["properties"]["face_values"]["items"]["pattern"] = amount.into();
    let variants: Vec<Value> = ruleset
        .event_types
        .iter()
        .map(|t| event_variant(event, t))
        .collect();
    *event = json!({"description": event["description"].take(), "oneOf": variants});
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// The event schema `base` for events of type `t`: its type named, the fields it requires
/// required and not null.
fn event_variant(base: &Value, t: &EventType) -> Value {
    let mut v = base.clone();
    v["title"] = t.name.clone().into();
    v["properties"]["type"] = json!({"type": "string", "const": t.name});
    for field in &t.requires {
        let name = field.name();
        if let Some(p) = v["properties"].get_mut(name) {
            p["type"] = not_null(p["type"].take());
        }
        if let Some(required) = v["required"].as_array_mut() {
            required.push(name.into());
        }
    }
    v
}

/// A schema's `type` without `null`: `["string", "null"]` is `"string"`.
fn not_null(types: Value) -> Value {
    match types {
        Value::Array(mut types) => {
            types.retain(|t| t != "null");
            match types.len() {
                1 => types.swap_remove(0),
                _ => Value::Array(types),
            }
        }
        one => one,
    }
}

/// A decimal string with at most `decimals` digits after the point.
fn amount_pattern(decimals: u32) -> String {
    match decimals {
        0 => "^[0-9]+$".to_string(),
        n => format!(r"^[0-9]+(\.[0-9]{{1,{n}}})?$"),
    }
}

/// Decide events.
#[utoipa::path(post, path = "/v1/events", params(EventsQuery),
    request_body(content = EventsIn, description = "One event, or an array of at most --max-batch events"),
    responses(
        (status = 200, description = "The decisions of each event, in order", body = EventsOut),
        (status = 400, description = "Unreadable body or event", body = ErrorBody),
        (status = 408, description = "The request took longer than --request-timeout-ms; its events may still be decided", body = ErrorBody),
        (status = 409, description = "An event id decided before with another body", body = ErrorBody),
        (status = 413, description = "Body too large, or too many events", body = ErrorBody),
        (status = 422, description = "An event the ruleset cannot decide", body = ErrorBody),
        (status = 503, description = "The state cannot be written", body = ErrorBody),
    ))]
pub async fn post_events(
    Extract(app): Extract<Shared>,
    query: Result<Query<EventsQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()).at("dry_run")
    })?;
    let body = body.map_err(body_error)?;
    let body = String::from_utf8(body.to_vec()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_json",
            format!("the body is not UTF-8: {e}"),
        )
    })?;
    let (events, many) = split_events(body, app.max_batch)?;
    let live = app.live.load_full();
    let prepared = prepare(&live.ruleset, &events, many)?;
    let (reply, answer) = oneshot::channel();
    let job = Job {
        live,
        events,
        prepared,
        many,
        dry_run: query.dry_run.unwrap_or(false),
        reply,
    };
    app.jobs
        .send(Msg::Decide(job))
        .await
        .map_err(|_| ApiError::unavailable("the deciding thread is gone"))?;
    let answers = answer
        .await
        .map_err(|_| ApiError::unavailable("the deciding thread is gone"))??;
    Ok(json_response(render_answers(&answers, many)))
}

fn body_error(e: BytesRejection) -> ApiError {
    let status = e.status();
    let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(status, code, e.body_text())
}

fn render_answers(answers: &[Answer], many: bool) -> String {
    use crate::io::output::json_str;
    let size: usize = answers.iter().map(|a| a.decisions.len() + 128).sum();
    let mut out = Vec::with_capacity(size);
    if many {
        out.push(b'[');
    }
    for (i, a) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"event_id\":");
        json_str(&mut out, &a.event_id);
        out.extend_from_slice(b",\"ruleset_version\":");
        json_str(&mut out, &a.version);
        let flag = |on: bool| if on { &b"true"[..] } else { &b"false"[..] };
        out.extend_from_slice(b",\"replay\":");
        out.extend_from_slice(flag(a.replay));
        out.extend_from_slice(b",\"dry_run\":");
        out.extend_from_slice(flag(a.dry_run));
        out.extend_from_slice(b",\"decisions\":");
        out.extend_from_slice(a.decisions.as_bytes());
        out.push(b'}');
        if !many {
            break;
        }
    }
    if many {
        out.push(b']');
    }
    // Every piece is UTF-8: strings escaped from strings, and ASCII.
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// A wallet's coupons with their status on a date.
#[utoipa::path(get, path = "/v1/wallets/{wallet}/coupons", params(("wallet" = String, Path, description = "The wallet id"), CouponsQuery),
    responses(
        (status = 200, description = "The wallet's coupons", body = CouponsView),
        (status = 400, description = "A bad date", body = ErrorBody),
        (status = 503, description = "Coupons are in temporary files", body = ErrorBody),
    ))]
pub async fn wallet_coupons(
    Extract(app): Extract<Shared>,
    Path(wallet): Path<String>,
    query: Result<Query<CouponsQuery>, QueryRejection>,
) -> Result<Json<CouponsView>, ApiError> {
    let Query(query) = query
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()).at("on"))?;
    let live = app.live.load_full();
    let on = match query.on {
        Some(text) => crate::model::digits::date(&text).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_date",
                format!("`{text}` is not a date YYYY-MM-DD"),
            )
            .at("on")
        })?,
        None => app.today.unwrap_or_else(|| {
            chrono::Utc::now()
                .with_timezone(&live.ruleset.timezone)
                .date_naive()
        }),
    };
    let ruleset = &live.ruleset;
    let owner = (Scope::Wallet, wallet.as_str());
    app.state
        .read(ruleset, owner, |state| {
            views::coupons(ruleset, state, &wallet, on)
        })
        .await?
        .map(Json)
}

/// A customer's facts and counters.
#[utoipa::path(get, path = "/v1/customers/{customer}", params(("customer" = String, Path, description = "The customer id")),
    responses(
        (status = 200, description = "The customer's facts and counters", body = CustomerView),
        (status = 503, description = "The shared state cannot be read", body = ErrorBody),
    ))]
pub async fn customer(
    Extract(app): Extract<Shared>,
    Path(customer): Path<String>,
) -> Result<Json<CustomerView>, ApiError> {
    let live = app.live.load_full();
    let ruleset = &live.ruleset;
    let owner = (Scope::Customer, customer.as_str());
    app.state
        .read(ruleset, owner, |state| {
            views::customer(ruleset, state, &customer)
        })
        .await
        .map(Json)
}

fn ruleset_out(app: &App) -> RulesetOut {
    let live = app.live.load();
    RulesetOut {
        version: live.version.to_string(),
        loaded_at: live.loaded_at.to_rfc3339(),
        rules: live.ruleset.rules.iter().map(|r| r.id.clone()).collect(),
        last_rejected: app
            .last_rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    }
}

/// The live ruleset and the last rejected reload.
#[utoipa::path(get, path = "/v1/ruleset", responses((status = 200, description = "The live ruleset", body = RulesetOut)))]
pub async fn ruleset(Extract(app): Extract<Shared>) -> Json<RulesetOut> {
    Json(ruleset_out(&app))
}

/// Try the rules directory now: load, check, golden tests, state, swap.
#[utoipa::path(post, path = "/v1/ruleset/reload", responses(
    (status = 200, description = "What the reload came to", body = ReloadOut),
    (status = 503, description = "The reloader is gone", body = ErrorBody)))]
pub async fn reload(Extract(app): Extract<Shared>) -> Result<Json<ReloadOut>, ApiError> {
    let (reply, outcome) = oneshot::channel();
    let gone = || ApiError::unavailable("the reloader is gone");
    app.reloads
        .send(Reload { reply: Some(reply) })
        .await
        .map_err(|_| gone())?;
    let outcome = outcome.await.map_err(|_| gone())?;
    Ok(Json(ReloadOut {
        outcome,
        ruleset: ruleset_out(&app),
    }))
}

/// Alive.
#[utoipa::path(get, path = "/healthz", responses((status = 200, description = "The process runs", body = Status)))]
pub async fn healthz() -> Json<Status> {
    Json(Status {
        status: "ok".into(),
    })
}

/// Ready to decide: the ruleset is loaded and the state open.
#[utoipa::path(get, path = "/readyz", responses(
    (status = 200, description = "Ready", body = Status),
    (status = 503, description = "Not deciding", body = Status)))]
pub async fn readyz(Extract(app): Extract<Shared>) -> (StatusCode, Json<Status>) {
    if app.ready.load(Ordering::Acquire) {
        (
            StatusCode::OK,
            Json(Status {
                status: "ready".into(),
            }),
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Status {
                status: "unavailable".into(),
            }),
        )
    }
}

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain")))]
pub async fn metrics(Extract(app): Extract<Shared>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
        .into_response()
}

pub async fn openapi(Extract(app): Extract<Shared>) -> Response {
    json_response(openapi_for(&app.live.load().ruleset))
}

pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such route; see /openapi.json",
    )
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /openapi.json",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `docs/openapi.json` is the document the code generates; `PROMO_BLESS=1 cargo test`
    /// rewrites it after a change to the API.
    #[test]
    fn the_kept_openapi_document_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/openapi.json");
        let generated = format!("{}\n", openapi_json());
        if std::env::var_os("PROMO_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap_or_else(|e| panic!("{e}"));
        }
        let kept = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            kept == generated,
            "docs/openapi.json differs from the generated document: run `PROMO_BLESS=1 cargo test --lib openapi` and commit it"
        );
    }

    /// Each parameter is documented where the route reads it: a path parameter is in the
    /// path's template (and required), the others are optional query parameters. A query
    /// parameter documented as a path one sends clients and fuzzers to the wrong place.
    #[test]
    fn every_parameter_is_documented_where_the_route_reads_it() {
        let doc: serde_json::Value = serde_json::from_str(&openapi_json()).unwrap_or_default();
        let mut seen = Vec::new();
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                for p in op["parameters"].as_array().into_iter().flatten() {
                    let name = p["name"].as_str().unwrap_or_default();
                    let in_template = path.contains(&format!("{{{name}}}"));
                    let want = if in_template {
                        ("path", true)
                    } else {
                        ("query", false)
                    };
                    let got = (p["in"].as_str().unwrap_or_default(), p["required"] == true);
                    assert_eq!(got, want, "{method} {path}: parameter {name}");
                    seen.push(format!("{method} {path} {name}"));
                }
            }
        }
        for expected in [
            "post /v1/events dry_run",
            "get /v1/wallets/{wallet}/coupons on",
            "get /v1/wallets/{wallet}/coupons wallet",
            "get /v1/customers/{customer} customer",
        ] {
            assert!(seen.iter().any(|s| s == expected), "{expected} in {seen:?}");
        }
    }
}
