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
//! The HTTP face of the ledger ([`router`]) is identical for every participant:
//! `PUT|DELETE|GET /internal/<route>/{order_id}`.

use crate::{error::ApiError, internal, json::ApiJson, json::ApiPath};
use anyhow::{Context, Result};
use axum::{
    Json, Router,
    extract::State,
    middleware,
    response::{IntoResponse, Response},
    routing::put,
};
use serde::{Deserialize, Serialize};
use sqlx::{AssertSqlSafe, PgPool, Row, postgres::PgRow};
use std::sync::Arc;
use uuid::Uuid;

/// How one participant maps onto the shared design.
#[derive(Debug)]
pub struct LedgerSpec {
    /// The route segment: `/internal/<route>/{order_id}`.
    pub route: &'static str,
    pub resource_table: &'static str,
    pub key_column: &'static str,
    /// SQL type of `key_column` (the key travels as text).
    pub key_type: &'static str,
    pub available_column: &'static str,
    /// Rejection code when the resource does not exist.
    pub unknown_code: &'static str,
    /// Rejection code when not enough is available.
    pub exhausted_code: &'static str,
    /// Keys that are malformed for `key_type` are rejected as unknown without touching the database.
    pub valid_key: fn(&str) -> bool,
}

/// Rejection of an action whose order was already compensated.
pub const ORDER_CANCELLED: &str = "order_cancelled";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum HoldState {
    Held,
    Rejected,
    Released,
    Cancelled,
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
    sql: Arc<Statements>,
}

/// Built once from the spec; the only interpolated values are the spec's static identifiers.
struct Statements {
    take: Arc<str>,
    give_back: Arc<str>,
}

const CLAIM: &str = "INSERT INTO holds (order_id, resource, quantity, state) \
     VALUES ($1, $2, $3, 'held') ON CONFLICT (order_id) DO NOTHING";

const FLIP: &str = "INSERT INTO holds AS h (order_id, state) VALUES ($1, 'cancelled') \
     ON CONFLICT (order_id) DO UPDATE SET state = 'released', updated_at = now() \
     WHERE h.state = 'held' \
     RETURNING h.state, h.resource, h.quantity, h.error_code";

impl Ledger {
    pub fn new(pool: PgPool, spec: &'static LedgerSpec) -> Self {
        let LedgerSpec {
            resource_table: t,
            key_column: k,
            key_type: ty,
            available_column: a,
            unknown_code,
            exhausted_code,
            ..
        } = spec;
        // Records the outcome on the row the same transaction just claimed.
        let take = format!(
            "WITH taken AS ( \
                UPDATE {t} SET {a} = {a} - $3 \
                WHERE {k} = $2::text::{ty} AND {a} >= $3 \
                RETURNING 1) \
             UPDATE holds SET \
                state = CASE WHEN EXISTS (SELECT 1 FROM taken) THEN 'held' ELSE 'rejected' END, \
                error_code = CASE WHEN EXISTS (SELECT 1 FROM taken) THEN NULL \
                     WHEN EXISTS (SELECT 1 FROM {t} WHERE {k} = $2::text::{ty}) THEN '{exhausted_code}' \
                     ELSE '{unknown_code}' END \
             WHERE order_id = $1 \
             RETURNING state, resource, quantity, error_code"
        );
        let give_back = format!("UPDATE {t} SET {a} = {a} + $2 WHERE {k} = $1::text::{ty}");
        Self {
            pool,
            spec,
            sql: Arc::new(Statements {
                take: take.into(),
                give_back: give_back.into(),
            }),
        }
    }

    pub fn spec(&self) -> &'static LedgerSpec {
        self.spec
    }

    /// The action: take `quantity` of `resource` for `order_id`, or return what was recorded.
    pub async fn hold(&self, order_id: Uuid, resource: &str, quantity: i64) -> Result<HoldRecord> {
        if !(self.spec.valid_key)(resource) {
            return Ok(HoldRecord {
                order_id,
                state: HoldState::Rejected,
                resource: Some(resource.to_owned()),
                quantity,
                error_code: Some(self.spec.unknown_code.to_owned()),
            });
        }
        let mut tx = self.pool.begin().await.context("starting a hold")?;
        let claimed = sqlx::query(CLAIM)
            .bind(order_id)
            .bind(resource)
            .bind(quantity)
            .execute(&mut *tx)
            .await
            .context("claiming an order")?
            .rows_affected()
            == 1;
        if !claimed {
            drop(tx);
            return self
                .get(order_id)
                .await?
                .context("hold row vanished after a duplicate action");
        }
        let row = sqlx::query(AssertSqlSafe(self.sql.take.clone()))
            .bind(order_id)
            .bind(resource)
            .bind(quantity)
            .fetch_one(&mut *tx)
            .await
            .context("taking a hold")?;
        let record = HoldRecord::from_row(order_id, &row)?;
        tx.commit().await.context("committing a hold")?;
        Ok(record)
    }

    /// The compensation: give back whatever `order_id` holds, or leave a tombstone. Idempotent.
    pub async fn release(&self, order_id: Uuid) -> Result<HoldRecord> {
        let mut tx = self.pool.begin().await.context("starting a release")?;
        let row = sqlx::query(FLIP)
            .bind(order_id)
            .fetch_optional(&mut *tx)
            .await
            .context("releasing a hold")?;
        let Some(row) = row else {
            // Already final (rejected, released or cancelled): nothing to give back.
            drop(tx);
            return self
                .get(order_id)
                .await?
                .context("hold row vanished during a release");
        };
        let record = HoldRecord::from_row(order_id, &row)?;
        if record.state == HoldState::Released {
            sqlx::query(AssertSqlSafe(self.sql.give_back.clone()))
                .bind(&record.resource)
                .bind(record.quantity)
                .execute(&mut *tx)
                .await
                .context("giving a hold back")?;
        }
        tx.commit().await.context("committing a release")?;
        Ok(record)
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

/// `PUT|DELETE|GET /internal/<route>/{order_id}`, behind the internal-token guard.
pub fn router(ledger: Ledger, token: internal::InternalToken) -> Router {
    let path = format!("/internal/{}/{{order_id}}", ledger.spec.route);
    Router::new()
        .route(&path, put(act).delete(compensate).get(read))
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
    let outcome = if record.rejection().is_some() {
        "rejected"
    } else {
        "held"
    };
    metrics::counter!("ledger_actions_total", "route" => ledger.spec.route, "outcome" => outcome)
        .increment(1);
    Ok(match record.rejection() {
        None => Json(record).into_response(),
        Some(code) => {
            let detail = format!("order {order_id}: {} refused ({code})", ledger.spec.route);
            let mut e = ApiError::conflict("rejected", detail);
            e.body.error = code.to_owned().into();
            e.into_response()
        }
    })
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
