//! The participant ledger: the one design billing (money), items (stock) and slots (couriers) share
//! for their saga steps. A participant owns a table of resources, each with an `available` amount,
//! and a `holds` table with one row per order, the order's outcome:
//!
//! | state       | meaning                                                        |
//! |-------------|----------------------------------------------------------------|
//! | `held`      | the action was granted: `quantity` of `resource` is taken      |
//! | `rejected`  | the action was refused (`error_code`); nothing is held          |
//! | `released`  | held, then compensated: the quantity was given back            |
//! | `cancelled` | compensated before any action arrived: a tombstone             |
//!
//! Every operation is one short transaction that locks the order's row first and the resource's
//! row second, so operations on the same order queue up behind each other instead of deadlocking,
//! and the row for an order is decided at most once by an action, whatever the interleaving:
//! - an action claims the order by inserting its row; a duplicate — concurrent or late — finds the
//!   row (waiting for an in-flight claim to finish) and returns the recorded outcome instead. Only
//!   the claimant then takes the quantity, with a conditional UPDATE (concurrent actions can never
//!   overdraw), and records `held` or the rejection in the same transaction;
//! - a duplicate with other terms than recorded (another resource or quantity for the same
//!   order) is not a replay: it is refused with 422 `hold_mismatch` and changes nothing;
//! - a compensation inserts a tombstone or flips `held` to `released` (waiting on the row, so it
//!   sees an in-flight action's result), and gives the quantity back in the same transaction. After
//!   it, any action for that order finds the row and is refused with `order_cancelled`.
//!
//! Why not one statement each: a statement's snapshot is taken before it waits on a row lock, so
//! (1) an action that checked "no row for this order" could take the resource, then wait on the
//! order's row held by a compensation that waits on the resource: a deadlock; and (2) Postgres
//! evaluates CHECK constraints on the new row computed from the snapshot's version, before noticing
//! that the row changed, so a give-back computed from a stale `available` could spuriously fail a
//! `CHECK (available <= capacity)`. The give-back therefore runs as its own statement, after the
//! row lock it waited for.
//!
//! Those statements run inside two PL/pgSQL functions, `ledger_hold` and `ledger_release`,
//! written once with the `holds` table in [`schema`]'s templates and rendered into each
//! participant's migrations with its own resource table and refusal codes
//! ([`LedgerSpec::migrator`]). A function's statements each take a fresh snapshot, exactly like
//! separate statements of a transaction, but the whole operation is one round trip and one
//! implicit transaction instead of four (BEGIN, claim, take, COMMIT): a hot resource row (ten
//! items, ten slots for every order) is no longer held locked across a network round trip to the
//! service while it waits for its COMMIT.
//!
//! The HTTP face of the ledger ([`router`]) is identical for every participant:
//! `PUT|DELETE|GET /internal/<route>/{order_id}`.

mod schema;

pub use schema::{KeyType, OwnTables, Resources};

use crate::{
    config::ParticipantConfig,
    error::ApiError,
    http::{self, Readiness},
    internal,
    json::ApiJson,
    json::ApiPath,
};
use anyhow::{Context, Result};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
    routing::put,
};
use serde::{Deserialize, Serialize};
use sqlx::{
    PgPool, Postgres, Row,
    postgres::{PgArguments, PgRow},
    query::Query,
};
use uuid::Uuid;

/// How one participant maps onto the shared design: its route, and the resource table and refusal
/// codes its `ledger_hold` / `ledger_release` functions are rendered with ([`Self::migrator`]).
#[derive(Debug)]
pub struct LedgerSpec {
    /// The route segment: `/internal/<route>/{order_id}`.
    pub route: &'static str,
    /// Rejection code when the resource does not exist (the functions use the same).
    pub unknown_code: &'static str,
    /// Keys that are malformed for the resource table's key type (which would make the database's
    /// cast fail) are rejected as unknown without touching the database.
    pub valid_key: fn(&str) -> bool,
    /// Where the resources are, for the functions.
    pub resources: Resources,
    /// The participant's own tables, which its first migration starts with.
    pub tables: OwnTables,
}

/// Rejection of an action whose order was already compensated.
pub const ORDER_CANCELLED: &str = "order_cancelled";

/// Refusal (422) of an action repeated with other terms than those recorded for its order: a
/// contract error, not a business outcome. The mediator counts it as an unknown outcome, so the
/// saga aborts and compensates every step, the recorded hold included.
pub const HOLD_MISMATCH: &str = "hold_mismatch";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum HoldState {
    Held,
    Rejected,
    Released,
    Cancelled,
}

/// An action's answer ([`HoldRecord::answer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer<'a> {
    Held,
    /// A business refusal, with its code (409 for the single action).
    Rejected(&'a str),
    /// A replay with other terms than recorded ([`HOLD_MISMATCH`], 422): a contract error.
    Mismatch,
}

impl Answer<'_> {
    /// Its label in `ledger_actions_total`.
    pub fn label(self) -> &'static str {
        match self {
            Answer::Held => "held",
            Answer::Rejected(_) => "rejected",
            Answer::Mismatch => "mismatch",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoldRecord {
    pub order_id: Uuid,
    pub state: HoldState,
    pub resource: Option<String>,
    pub quantity: i64,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error_code: Option<String>,
}

impl HoldRecord {
    fn from_row(order_id: Uuid, row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            order_id,
            state: row.try_get("state")?,
            resource: row.try_get("resource")?,
            quantity: row.try_get("quantity")?,
            error_code: row.try_get("error_code")?,
        })
    }

    /// What an action for this order with these terms is answered, from the record: the one
    /// reading of a record, for the single action's HTTP answer, a batch's metrics and the
    /// mediator reading a batch's records.
    pub fn answer(&self, resource: &str, quantity: i64) -> Answer<'_> {
        if self.conflicts_with(resource, quantity) {
            return Answer::Mismatch;
        }
        match self.rejection() {
            Some(code) => Answer::Rejected(code),
            None => Answer::Held,
        }
    }

    /// Whether an action for this order with these terms would be a replay of another action:
    /// only an action's outcome (held or rejected) has terms to compare; a compensated order
    /// refuses every action with `order_cancelled`, whatever its terms.
    pub fn conflicts_with(&self, resource: &str, quantity: i64) -> bool {
        matches!(self.state, HoldState::Held | HoldState::Rejected)
            && (self.resource.as_deref() != Some(resource) || self.quantity != quantity)
    }

    /// The business rejection an action answer carries, if any.
    pub fn rejection(&self) -> Option<&str> {
        match self.state {
            HoldState::Held => None,
            HoldState::Rejected => Some(self.error_code.as_deref().unwrap_or("rejected")),
            HoldState::Released | HoldState::Cancelled => Some(ORDER_CANCELLED),
        }
    }
}

#[derive(Clone)]
pub struct Ledger {
    pool: PgPool,
    spec: &'static LedgerSpec,
}

/// The functions' OUT columns, named as [`HoldRecord::from_row`] reads them.
const HOLD: &str = "SELECT r_state AS state, r_resource AS resource, r_quantity AS quantity, \
     r_error_code AS error_code FROM ledger_hold($1, $2, $3)";

const RELEASE: &str = "SELECT r_state AS state, r_resource AS resource, r_quantity AS quantity, \
     r_error_code AS error_code FROM ledger_release($1)";

impl Ledger {
    pub fn new(pool: PgPool, spec: &'static LedgerSpec) -> Self {
        Self { pool, spec }
    }

    pub fn spec(&self) -> &'static LedgerSpec {
        self.spec
    }

    /// The action: take `quantity` of `resource` for `order_id`, or return what was recorded
    /// (which may be for other terms: see [`HoldRecord::conflicts_with`]).
    pub async fn hold(&self, order_id: Uuid, resource: &str, quantity: i64) -> Result<HoldRecord> {
        if !(self.spec.valid_key)(resource) {
            // Refused without a row, unless the order has one: then that is the answer.
            if let Some(recorded) = self.get(order_id).await? {
                return Ok(recorded);
            }
            return Ok(HoldRecord {
                order_id,
                state: HoldState::Rejected,
                resource: Some(resource.to_owned()),
                quantity,
                error_code: Some(self.spec.unknown_code.to_owned()),
            });
        }
        let row = sqlx::query(HOLD)
            .bind(order_id)
            .bind(resource)
            .bind(quantity)
            .fetch_one(&self.pool)
            .await
            .context("taking a hold")?;
        Ok(HoldRecord::from_row(order_id, &row)?)
    }

    /// [`Self::hold`] for every action of `batch`, in one transaction; the records in `batch`'s
    /// order.
    pub async fn hold_all(&self, batch: &[BatchedHold]) -> Result<Vec<HoldRecord>> {
        let (valid, malformed): (Vec<&BatchedHold>, Vec<&BatchedHold>) = batch
            .iter()
            .partition(|h| (self.spec.valid_key)(&h.resource));
        let rows = if valid.is_empty() {
            Vec::new()
        } else {
            sqlx::query(HOLD_ALL)
                .bind(valid.iter().map(|h| h.order_id).collect::<Vec<_>>())
                .bind(
                    valid
                        .iter()
                        .map(|h| h.resource.as_str())
                        .collect::<Vec<_>>(),
                )
                .bind(valid.iter().map(|h| h.quantity).collect::<Vec<_>>())
                .fetch_all(&self.pool)
                .await
                .context("taking a batch of holds")?
        };
        let mut records = std::collections::HashMap::with_capacity(batch.len());
        for row in &rows {
            let order_id: Uuid = row.try_get("order_id").context("a batch's order id")?;
            records.insert(order_id, HoldRecord::from_row(order_id, row)?);
        }
        // Rare: refused without the database, as one by one.
        for hold in malformed {
            let record = self
                .hold(hold.order_id, &hold.resource, hold.quantity)
                .await?;
            records.insert(hold.order_id, record);
        }
        batch
            .iter()
            .map(|h| {
                records
                    .get(&h.order_id)
                    .cloned()
                    .with_context(|| format!("no record for order {} in its batch", h.order_id))
            })
            .collect()
    }

    /// The compensation: give back whatever `order_id` holds, or leave a tombstone. Idempotent.
    pub async fn release(&self, order_id: Uuid) -> Result<HoldRecord> {
        let row = sqlx::query(RELEASE)
            .bind(order_id)
            .fetch_one(&self.pool)
            .await
            .context("releasing a hold")?;
        Ok(HoldRecord::from_row(order_id, &row)?)
    }

    pub async fn get(&self, order_id: Uuid) -> Result<Option<HoldRecord>> {
        let row = sqlx::query(
            "SELECT state, resource, quantity, error_code FROM holds WHERE order_id = $1",
        )
        .bind(order_id)
        .fetch_optional(&self.pool)
        .await
        .context("reading a hold")?;
        Ok(row
            .map(|r| HoldRecord::from_row(order_id, &r))
            .transpose()?)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldRequest {
    pub resource: String,
    pub quantity: i64,
}

/// One order's action in a batch (`PUT /internal/<route>`): the same as `PUT
/// /internal/<route>/{order_id}` with a [`HoldRequest`], applied with the others of its batch in
/// one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchedHold {
    pub order_id: Uuid,
    pub resource: String,
    pub quantity: i64,
}

/// Many orders' actions as ONE statement, so one transaction and one commit: each order's hold is
/// still its own `ledger_hold` call and `holds` row, recorded and idempotent on its own. The
/// resource rows are taken in key order (then the order ids), as every batch takes them, so that
/// two concurrent batches queue behind each other instead of deadlocking.
const HOLD_ALL: &str = "SELECT b.order_id, h.r_state AS state, h.r_resource AS resource, \
     h.r_quantity AS quantity, h.r_error_code AS error_code \
     FROM (SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS b(order_id, resource, quantity) \
           ORDER BY resource, order_id) b, \
          LATERAL ledger_hold(b.order_id, b.resource, b.quantity) h";

/// A saga participant's whole HTTP app: its own routes (`api`, state applied), the ledger of
/// `spec` under `/internal/`, and the shared layers and health endpoints (ready: its database
/// answers).
pub fn participant_app(
    service: &'static str,
    api: Router,
    pool: PgPool,
    spec: &'static LedgerSpec,
    config: &ParticipantConfig,
) -> Router {
    let token = internal::InternalToken(config.internal_token.secret.clone());
    let api = api.merge(router(Ledger::new(pool.clone(), spec), token));
    http::app(service, api, Readiness::database(pool), &config.http)
}

/// A participant's seeding: one statement inserting the resources that are missing, each with what
/// the configuration starts it with. Rows already there are left alone, so that a restart never
/// resets what the saga holds.
pub type Seed = Query<'static, Postgres, PgArguments>;

/// The whole app of a participant whose own routes only read its database (items, slots): its
/// database reached, migrated and seeded, then `api` on it and the ledger of `spec`.
pub async fn seeded_app(
    service: &'static str,
    spec: &'static LedgerSpec,
    api: Router<PgPool>,
    seed: Seed,
    config: &ParticipantConfig,
) -> Result<Router> {
    let pool = spec.connect(config).await?;
    seed.execute(&pool)
        .await
        .with_context(|| format!("seeding {}", spec.resources.table))?;
    let api = api.with_state(pool.clone());
    Ok(participant_app(service, api, pool, spec, config))
}

/// `PUT|DELETE|GET /internal/<route>/{order_id}` and `PUT /internal/<route>` (a batch of
/// actions), behind the internal-token guard.
pub fn router(ledger: Ledger, token: internal::InternalToken) -> Router {
    let path = format!("/internal/{}/{{order_id}}", ledger.spec.route);
    let batch = format!("/internal/{}", ledger.spec.route);
    Router::new()
        .route(&path, put(act).delete(compensate).get(read))
        .route(&batch, put(act_all))
        .with_state(ledger)
        .layer(middleware::from_fn_with_state(
            token,
            internal::require_token,
        ))
}

async fn act(
    State(ledger): State<Ledger>,
    ApiPath(order_id): ApiPath<Uuid>,
    ApiJson(req): ApiJson<HoldRequest>,
) -> Result<Response, ApiError> {
    if req.quantity <= 0 {
        return Err(ApiError::invalid_field(
            "quantity",
            "must be greater than 0",
        ));
    }
    let record = ledger.hold(order_id, &req.resource, req.quantity).await?;
    let answer = record.answer(&req.resource, req.quantity);
    metrics::counter!("ledger_actions_total", "route" => ledger.spec.route, "outcome" => answer.label())
        .increment(1);
    Ok(match answer {
        Answer::Held => Json(record).into_response(),
        Answer::Rejected(code) => {
            let detail = format!("order {order_id}: {} refused ({code})", ledger.spec.route);
            let mut e = ApiError::conflict("rejected", detail);
            e.body.error = code.to_owned().into();
            e.into_response()
        }
        Answer::Mismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            HOLD_MISMATCH,
            format!(
                "order {order_id}: {} already recorded for {:?} x {}, not {:?} x {}",
                ledger.spec.route,
                record.resource.as_deref().unwrap_or_default(),
                record.quantity,
                req.resource,
                req.quantity
            ),
        )
        .into_response(),
    })
}

/// A batch of actions: 200 with every order's record, in the request's order. Each is what the
/// single action would answer: the mediator reads it from the record ([`HoldRecord::answer`]).
async fn act_all(
    State(ledger): State<Ledger>,
    ApiJson(batch): ApiJson<Vec<BatchedHold>>,
) -> Result<Json<Vec<HoldRecord>>, ApiError> {
    if batch.iter().any(|h| h.quantity <= 0) {
        return Err(ApiError::invalid_field(
            "quantity",
            "must be greater than 0",
        ));
    }
    let records = ledger.hold_all(&batch).await?;
    for (hold, record) in batch.iter().zip(&records) {
        let outcome = record.answer(&hold.resource, hold.quantity).label();
        metrics::counter!("ledger_actions_total", "route" => ledger.spec.route, "outcome" => outcome)
            .increment(1);
    }
    Ok(Json(records))
}

async fn compensate(
    State(ledger): State<Ledger>,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<HoldRecord>, ApiError> {
    let record = ledger.release(order_id).await?;
    metrics::counter!("ledger_compensations_total", "route" => ledger.spec.route).increment(1);
    Ok(Json(record))
}

async fn read(
    State(ledger): State<Ledger>,
    ApiPath(order_id): ApiPath<Uuid>,
) -> Result<Json<HoldRecord>, ApiError> {
    match ledger.get(order_id).await? {
        Some(r) => Ok(Json(r)),
        None => Err(ApiError::not_found(
            "not_found",
            format!("no hold for order {order_id}"),
        )),
    }
}

/// The one public route of a participant whose own API only lists its resources (items, slots):
/// `pub fn public()`, routing `GET <path>` to a documented handler answering every row of the
/// database function given.
///
/// ```ignore
/// shop_common::public_listing!("/api/items", "listItems", db::Item, db::list_items,
///     "The catalog: every item with its price and the stock left.");
/// ```
#[macro_export]
macro_rules! public_listing {
    ($path:literal, $operation_id:literal, $row:ty, $list:path, $summary:literal) => {
        pub fn public() -> $crate::__utoipa_axum::router::OpenApiRouter<::sqlx::PgPool> {
            $crate::__utoipa_axum::router::OpenApiRouter::new()
                .routes($crate::__utoipa_axum::routes!(list))
        }

        #[doc = $summary]
        #[utoipa::path(
                            get, path = $path, operation_id = $operation_id, tag = "catalog",
                            responses(
                                (status = 200, description = "OK", body = Vec<$row>),
                                $crate::openapi::Unavailable,
                            ),
                        )]
        async fn list(
            ::axum::extract::State(pool): ::axum::extract::State<::sqlx::PgPool>,
        ) -> ::std::result::Result<::axum::Json<Vec<$row>>, $crate::ApiError> {
            Ok(::axum::Json($list(&pool).await?))
        }
    };
}
