//! order's HTTP endpoints: create an order, list the caller's orders, show one with its saga log,
//! cancel one.
//!
//! A retried POST with the same `Idempotency-Key` returns the order the first one created: 201 the
//! first time, 200 on a replay (same id, same `Location`), 422 if the key comes back with a
//! different body. A replay never publishes: an order its first POST could not publish is the
//! sweep's.
//!
//! `?wait_ms=N` (the POST and the GET of one order) answers once the order is final, or after N
//! ms with its state then: a client that wants the outcome asks for it in the request that places
//! the order, instead of placing it and then asking.

use crate::{error::OrderError, signals::Parked, startup::AppState};
use anyhow::Context;
use axum::{
    Json,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use order_store::db::{self, Cancel, Inserted, NewOrder, Order, OrderWithLog, SagaStep, Wanted};
use serde::Deserialize;
use shop_common::{
    ApiError,
    api::{CreateOrder, DetailsView, OrderView},
    auth::AuthUser,
    error::ErrorBody,
    idempotency::IdempotencyKey,
    json::{ApiJson, ApiPath, ApiQuery},
    openapi::{CustomerRefusals, CustomerWrite, refusal},
};
use std::time::Duration;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(cancel))
}

/// The routes that may wait up to [`MAX_WAIT`] before answering (`?wait_ms=N`).
pub fn long_polls() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show))
}

shop_common::answer_sets! {
    /// What an endpoint on one order may answer about its id (or query).
    UnknownOrder = [[
        refusal(400, "A malformed id or query parameter", false),
        refusal(404, "No such order (someone else's is not disclosed)", false),
    ]];
}

/// An order's saga log, when the view shows it.
pub(crate) type SagaView = Option<Vec<SagaStep>>;

/// The order view of a stored order (`saga` when the answer shows its log).
pub(crate) fn order_view(o: Order, saga: SagaView) -> OrderView {
    OrderView {
        id: o.id,
        amount: o.amount,
        details: DetailsView {
            item: o.item,
            slot: o.slot,
        },
        success: o.status.success(),
        status: o.status,
        reason: o.reason,
        created_at: o.created_at,
        updated_at: o.updated_at,
        saga,
    }
}

/// Places an order: stored, then its saga runs (`status` pending until it is final);
/// `?wait_ms=N` answers once it is final (with its saga log), or after N ms as it is then.
#[utoipa::path(
    post, path = "/api/orders", operation_id = "createOrder", tag = "orders",
    security(("bearer" = [])),
    params(IdempotencyKey, WaitQuery),
    request_body = CreateOrder,
    responses(
        (
            status = 201, description = "Created; its saga runs", body = OrderView,
            headers(("Location" = String, description = "/api/orders/{id}")),
            links(
                ("GetOrder" = (operation_id = "getOrder", parameters(("id" = "$response.body#/id")))),
                ("CancelOrder" = (operation_id = "cancelOrder", parameters(("id" = "$response.body#/id")))),
            ),
        ),
        (status = 200, description = "A replay of the same Idempotency-Key: the order it created", body = OrderView),
        CustomerWrite,
    ),
)]
async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    key: IdempotencyKey,
    ApiQuery(query): ApiQuery<WaitQuery>,
    ApiJson(req): ApiJson<CreateOrder>,
) -> Result<Response, ApiError> {
    let wait = query.wait();
    let new = NewOrder {
        username: user.username.clone(),
        amount: req.amount,
        item: req.details.item.get(),
        slot: req.details.slot.as_str().to_owned(),
        idempotency_key: key.as_deref().map(str::to_owned),
    };
    let stored = state
        .inserts
        .submit(new.clone())
        .await
        .context("storing the order")?;
    let parked;
    let (order, status) = match db::inserted(&state.pool, &new, stored).await? {
        Inserted::Created(order) => {
            // Parked before the order goes on the stream: its final signal cannot come sooner.
            parked = (!wait.is_zero()).then(|| state.signals.park(order.id));
            if let Err(e) = state.outbox.publish_new(&order).await {
                // The order is stored: the sweep publishes it once Redis is back.
                tracing::warn!(order_id = %order.id, "order left for the sweep: {e:#}");
            }
            (order, StatusCode::CREATED)
        }
        Inserted::Existing(order) => {
            let same =
                order.amount == new.amount && order.item == new.item && order.slot == new.slot;
            if !same {
                return Err(OrderError::IdempotencyKeyReused.into());
            }
            parked = (!wait.is_zero()).then(|| state.signals.park(order.id));
            let order = match parked {
                // Read again once parked: a final state reached meanwhile is not waited for.
                Some(_) => db::find_order(&state.pool, order.id)
                    .await?
                    .ok_or(OrderError::NotFound)?,
                None => order,
            };
            (order, StatusCode::OK)
        }
    };
    let location = HeaderValue::try_from(format!("/api/orders/{}", order.id))
        .context("the order's Location header")?;
    let view = match parked {
        Some(parked) => {
            let (order, saga) = wait_until_final(&state, &user, order, parked, wait).await?;
            order_view(order, Some(saga))
        }
        None => order_view(order, None),
    };
    Ok((status, [(header::LOCATION, location)], Json(view)).into_response())
}

/// `order` once it is final, or after `wait` as it is then, with its saga log: read again, since
/// what is stored is the answer. `order` must be as read when no final signal for it could be
/// missed: after `parked` was parked, or before the order was published.
async fn wait_until_final(
    state: &AppState,
    user: &AuthUser,
    order: Order,
    mut parked: Parked<'_>,
    wait: Duration,
) -> Result<(Order, Vec<SagaStep>), ApiError> {
    if !order.status.is_final() {
        // Woken or not (a signal can be lost), what is stored is the answer.
        parked.wait(wait).await;
    }
    Ok(read_with_log(state, user, order.id)
        .await?
        .ok_or(OrderError::NotFound)?)
}

/// The caller's order `id` with its saga log, read with the other requests' reads of the moment.
async fn read_with_log(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
) -> anyhow::Result<Option<OrderWithLog>> {
    let wanted = Wanted {
        id,
        owner: Some(user.username.clone()),
    };
    Ok(state.reads.submit(wanted).await?)
}

/// The caller's orders, oldest first (without their saga logs).
#[utoipa::path(
    get, path = "/api/orders", operation_id = "listOrders", tag = "orders",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "OK", body = Vec<OrderView>), CustomerRefusals,
    ),
)]
async fn list(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Vec<OrderView>>, ApiError> {
    let orders = db::list_user_orders(&state.pool, &user.username).await?;
    Ok(Json(
        orders.into_iter().map(|o| order_view(o, None)).collect(),
    ))
}

/// `?wait_ms=N` (at most [`MAX_WAIT`]): if the order is not final yet, answer when it is, or
/// after N ms with its state then — one request instead of a polling loop.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct WaitQuery {
    /// Wait up to this long (ms, at most 30000) for the order to be final.
    #[serde(default)]
    #[param(minimum = 0)]
    wait_ms: u64,
}

impl WaitQuery {
    fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms).min(MAX_WAIT)
    }
}

/// The longest `wait_ms` honoured; a larger one waits this long. The route's timeout is the
/// request timeout plus this (see `shop_common::http::LongPolls`), so a full wait answers 200.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

/// One of the caller's orders with its saga log; `?wait_ms=N` answers as soon as it is final.
#[utoipa::path(
    get, path = "/api/orders/{id}", operation_id = "getOrder", tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The order's id"), WaitQuery),
    responses(
        (
            status = 200, description = "OK", body = OrderView,
            links(("CancelOrder" = (operation_id = "cancelOrder", parameters(("id" = "$response.body#/id"))))),
        ),
        UnknownOrder, CustomerRefusals,
    ),
)]
async fn show(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<WaitQuery>,
) -> Result<Json<OrderView>, ApiError> {
    let wait = query.wait();
    // Park BEFORE the first read: a signal sent while it runs is not lost, and an order that is
    // not final yet costs one more read, when it is (or at the deadline) — not two.
    let parked = (!wait.is_zero()).then(|| state.signals.park(id));
    let (order, saga) = read_with_log(&state, &user, id)
        .await?
        .ok_or(OrderError::NotFound)?;
    let (order, saga) = match parked {
        Some(parked) if !order.status.is_final() => {
            wait_until_final(&state, &user, order, parked, wait).await?
        }
        _ => (order, saga),
    };
    Ok(Json(order_view(order, Some(saga))))
}

/// `POST /api/orders/{id}/cancel`: 202 with the order (`cancelling`, or already `cancelled`) —
/// repeating it changes nothing; 409 `order_final` for a failed order; 404 for an unknown one or
/// someone else's. The mediator does the undoing: every step compensated, in reverse order.
#[utoipa::path(
    post, path = "/api/orders/{id}/cancel", operation_id = "cancelOrder", tag = "orders",
    security(("bearer" = [])), params(("id" = Uuid, Path, description = "The order's id")),
    responses(
        (status = 202, description = "`cancelling`, or already `cancelled`", body = OrderView),
        UnknownOrder,
        (status = 409, description = "`order_final`: the order failed, nothing to cancel", body = ErrorBody),
        CustomerRefusals,
    ),
)]
async fn cancel(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<(StatusCode, Json<OrderView>), ApiError> {
    let order = match db::request_cancel(&state.pool, &user.username, id).await? {
        Cancel::Requested(order) => {
            if let Err(e) = state.outbox.publish(order.id).await {
                // The cancel is stored: the sweep publishes it once Redis is back.
                tracing::warn!(order_id = %order.id, "cancel left for the sweep: {e:#}");
            }
            order
        }
        Cancel::Already(order) => order,
        Cancel::Final(_) => return Err(OrderError::AlreadyFailed.into()),
        Cancel::NotFound => return Err(OrderError::NotFound.into()),
    };
    Ok((StatusCode::ACCEPTED, Json(order_view(order, None))))
}
