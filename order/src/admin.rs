//! The operators' API, `/api/admin/...`, for tokens with the `admin` role only (auth's
//! `ADMIN_USERS`; anyone else gets 403 `admin_only`): every user's orders, filtered by status,
//! one order with its saga log, the figures of the last minute, and the newest dead letters. The
//! operations console reads it; customers' routes stay in `crate::routes`.

use crate::{
    error::OrderError,
    routes::{SagaView, UnknownOrder, order_view},
    startup::AppState,
};
use anyhow::Context;
use axum::{Json, extract::State};
use order_store::{db, stream::dead_letter};
use redis::AsyncCommands;
use redis::streams::{StreamId, StreamRangeReply};
use serde::{Deserialize, Serialize};
use shop_common::{
    ApiError,
    api::{OrderView, Status},
    auth::AdminUser,
    error::ErrorBody,
    json::{ApiPath, ApiQuery},
    openapi::OperatorRefusals,
};
use std::{collections::BTreeMap, time::Duration};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

/// The window of [`stats`]' throughput and latency.
const RECENT: Duration = Duration::from_secs(60);
/// Orders a listing returns unless asked for fewer.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(orders))
        .routes(routes!(order))
        .routes(routes!(stats))
        .routes(routes!(dead_letters))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct OrdersQuery {
    /// Only orders of this status.
    status: Option<Status>,
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LimitQuery {
    /// At most this many (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
}

/// `?limit=`: 1 to [`MAX_LIMIT`], [`DEFAULT_LIMIT`] when absent.
fn checked_limit(limit: Option<i64>) -> Result<i64, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid_field(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    Ok(limit)
}

/// An order as an operator sees it: whose it is, then what its customer sees.
#[derive(Serialize, ToSchema)]
struct AdminOrderView {
    username: String,
    #[serde(flatten)]
    order: OrderView,
}

impl AdminOrderView {
    fn new(order: db::Order, saga: SagaView) -> Self {
        Self {
            username: order.username.clone(),
            order: order_view(order, saga),
        }
    }
}

/// Every user's orders, newest first.
#[utoipa::path(
    get, path = "/api/admin/orders", operation_id = "adminListOrders", tag = "operators",
    security(("bearer" = [])), params(OrdersQuery),
    responses(
        (status = 200, description = "OK", body = Vec<AdminOrderView>),
        (status = 400, description = "A bad `status` or `limit`", body = ErrorBody),
        OperatorRefusals,
    ),
)]
async fn orders(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<OrdersQuery>,
) -> Result<Json<Vec<AdminOrderView>>, ApiError> {
    let limit = checked_limit(query.limit)?;
    let orders = db::list_orders(&state.pool, query.status, limit).await?;
    Ok(Json(
        orders
            .into_iter()
            .map(|o| AdminOrderView::new(o, None))
            .collect(),
    ))
}

/// Any user's order, with its saga log (the timeline).
#[utoipa::path(
    get, path = "/api/admin/orders/{id}", operation_id = "adminGetOrder", tag = "operators",
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 200, description = "OK", body = AdminOrderView),
        UnknownOrder, OperatorRefusals,
    ),
)]
async fn order(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<AdminOrderView>, ApiError> {
    let (order, saga) = db::find_any_order_with_log(&state.pool, id)
        .await?
        .ok_or(OrderError::NotFound)?;
    Ok(Json(AdminOrderView::new(order, Some(saga))))
}

#[derive(Serialize, ToSchema)]
struct Stats {
    /// Orders per status, every status listed.
    by_status: BTreeMap<&'static str, i64>,
    last_minute: LastMinute,
}

#[derive(Serialize, ToSchema)]
struct LastMinute {
    /// Orders that reached a final state in the last 60 s.
    finished: i64,
    sagas_per_s: f64,
    /// POST -> final state of those orders, ms (null when there was none).
    latency_ms: BTreeMap<&'static str, Option<f64>>,
}

/// Orders per status, and the last minute's throughput and latency.
#[utoipa::path(
    get, path = "/api/admin/stats", operation_id = "adminStats", tag = "operators",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = Stats), OperatorRefusals,
    ),
)]
async fn stats(_: AdminUser, State(state): State<AppState>) -> Result<Json<Stats>, ApiError> {
    let mut by_status: BTreeMap<&'static str, i64> = Status::ALL
        .iter()
        .map(|status| (status.as_str(), 0))
        .collect();
    for (status, n) in db::count_by_status(&state.pool).await? {
        by_status.insert(status.as_str(), n);
    }
    let recent = db::recent_finals(&state.pool, RECENT).await?;
    Ok(Json(Stats {
        by_status,
        last_minute: LastMinute {
            finished: recent.count,
            sagas_per_s: recent.count as f64 / RECENT.as_secs_f64(),
            latency_ms: BTreeMap::from([
                ("p50", recent.p50_ms),
                ("p90", recent.p90_ms),
                ("p99", recent.p99_ms),
            ]),
        },
    }))
}

/// A dead-letter entry: an orders-stream entry the mediator gave up on (see
/// `order_store::stream::dead_letter`).
#[derive(Serialize, ToSchema)]
struct DeadLetter {
    /// The dead-letter stream's entry id.
    entry: String,
    /// When it was dead-lettered (the entry id's milliseconds), RFC 3339.
    at: Option<String>,
    /// Null when the entry carried no valid order id.
    order_id: Option<String>,
    /// The orders-stream entry it came from.
    stream_id: Option<String>,
    reason: Option<String>,
    /// That entry's fields, as JSON text.
    payload: Option<String>,
}

impl From<StreamId> for DeadLetter {
    fn from(entry: StreamId) -> Self {
        let field = |name: &str| entry.get::<String>(name).filter(|value| !value.is_empty());
        let at = entry
            .id
            .split_once('-')
            .and_then(|(ms, _)| ms.parse::<i128>().ok())
            .and_then(|ms| time::OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        Self {
            at,
            order_id: field(dead_letter::ORDER_ID),
            stream_id: field(dead_letter::STREAM_ID),
            reason: field(dead_letter::REASON),
            payload: field(dead_letter::PAYLOAD),
            entry: entry.id,
        }
    }
}

/// The newest dead letters first. Read from Redis, so a Redis outage is a 503 here (and only here).
#[utoipa::path(
    get, path = "/api/admin/dead-letters", operation_id = "adminDeadLetters", tag = "operators",
    security(("bearer" = [])), params(LimitQuery),
    responses(
        (status = 200, description = "OK", body = Vec<DeadLetter>),
        (status = 400, description = "A bad `limit`", body = ErrorBody), OperatorRefusals,
    ),
)]
async fn dead_letters(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(LimitQuery { limit }): ApiQuery<LimitQuery>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let limit = checked_limit(limit)?;
    let redis = state.outbox.redis();
    let mut conn = redis.connection();
    let stream = state.dead_letter_stream.as_ref();
    let newest: StreamRangeReply = conn
        .xrevrange_count(stream, "+", "-", limit)
        .await
        .context("reading the dead-letter stream")?;
    Ok(Json(newest.ids.into_iter().map(DeadLetter::from).collect()))
}
