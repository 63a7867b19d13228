//! The public API's wire types: the request bodies clients send and the answers the services send
//! (the error body aside: `crate::error::ErrorBody`). The services serialize them and document them
//! (`ToSchema`: their schemas in `docs/openapi.json` are these types'), `shop-client` and the tests
//! parse them — one definition, so that a client cannot read an answer other than as it is sent.
//! Validated values are `crate::domain`'s newtypes; money stays integer minor units.
//!
//! A type's doc comment is its schema's description in the document: a type without one has none
//! there, and comments that are not the document's are plain `//`.

use crate::domain::{Balance, ItemId, Money, SlotTime, Username};
use serde::{Deserialize, Serialize};
use std::fmt;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

// ------------------------------------------------------------------ users and tokens (auth)

// `POST /api/token`'s body. The password is a plain string here: checking it is auth's job, and a
// wrong one must be refused as `invalid_credentials`, not as an invalid field.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"username": "alice", "password": "secret-pass-1"}))]
pub struct Credentials {
    pub username: String,
    #[schema(format = Password)]
    pub password: String,
}

// `POST /api/token/refresh`'s body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The `refresh` token of `POST /api/token`.
    pub refresh: String,
}

// A signed-up user (`POST /api/auth/users`' 201).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub username: String,
    pub email: String,
}

// `POST /api/token` and `POST /api/token/refresh`'s answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tokens {
    /// For `Authorization: Bearer <access>`.
    pub access: String,
    /// For `POST /api/token/refresh`; only `POST /api/token` issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds the access token is valid.
    pub expires_in: u64,
}

// ------------------------------------------------------------------ accounts (billing)

/// An account, as the database holds it and the account API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Account {
    // The document has always said "string" here (a username path parameter is one too).
    #[sqlx(try_from = "String")]
    #[schema(value_type = String)]
    pub username: Username,
    pub email: String,
    #[sqlx(try_from = "i64")]
    pub wallet: Balance,
}

// `POST /api/accounts/{username}/deposits`' body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DepositRequest {
    /// Added to the wallet.
    pub amount: Money,
}

// ------------------------------------------------------------------ the catalog (items, slots)

/// A catalog entry, as the database holds it and `GET /api/items` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Item {
    #[sqlx(try_from = "i64")]
    #[schema(value_type = i64)]
    pub id: ItemId,
    pub name: String,
    #[sqlx(try_from = "i64")]
    pub price: Money,
    /// What is still available to reserve.
    pub stock: i64,
}

/// A delivery slot, as the database holds it and `GET /api/slots` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
pub struct Slot {
    // The document has always said "string" here; what an order asks for is a `SlotTime`.
    #[sqlx(try_from = "String")]
    #[schema(value_type = String)]
    pub slot: SlotTime,
    pub free_couriers: i64,
}

// ------------------------------------------------------------------ orders (order)

// `POST /api/orders`' body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({"amount": 24.9, "details": {"item": 1, "slot": "09:00"}}))]
pub struct CreateOrder {
    /// What the wallet is charged.
    pub amount: Money,
    pub details: Details,
}

// What an order asks for besides its amount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Details {
    /// An item id of `GET /api/items`.
    #[schema(value_type = i64, minimum = 1)]
    pub item: ItemId,
    /// A slot of `GET /api/slots`.
    pub slot: SlotTime,
}

/// Where an order is in its saga. `Completed`, `Failed` and `Cancelled` are final; a completed
/// order may still be cancelled (`Completed -> Cancelling -> Cancelled`).
// Spelt lowercase in JSON, in the database and by `as_str` alike: the database's CHECK refuses
// any other spelling, and a test holds JSON and `as_str` together.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    sqlx::Type,
    ToSchema,
    strum::VariantArray,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Status {
    Pending,
    Compensating,
    Completed,
    Failed,
    /// The customer cancelled it: every step is being compensated.
    Cancelling,
    Cancelled,
}

impl Status {
    /// Every status, in the order they are declared.
    pub const ALL: &[Status] = <Status as strum::VariantArray>::VARIANTS;

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }

    /// The final statuses as stored, for SQL (`status = ANY($1)`).
    pub fn finals() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|s| s.is_final())
            .map(|s| s.as_str())
            .collect()
    }

    /// An order view's `success`: whether the saga succeeded, `None` while it runs.
    pub fn success(self) -> Option<bool> {
        match self {
            Status::Completed => Some(true),
            Status::Failed | Status::Cancelled => Some(false),
            Status::Pending | Status::Compensating | Status::Cancelling => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The order as the client sees it: field names and reason texts are its API.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub amount: Money,
    pub details: DetailsView,
    pub status: Status,
    /// `null` while the saga runs.
    pub success: Option<bool>,
    pub reason: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// The saga log, oldest step first: in `GET /api/orders/{id}` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saga: Option<Vec<SagaStep>>,
}

// An order's details as stored: the order's request validated them, and an answer shows them as
// they are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DetailsView {
    pub item: i64,
    pub slot: String,
}

/// One step of the saga log: an action, a compensation, or the customer's cancel.
#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, ToSchema)]
// Its name in the document since before the log's rows and its view were one type.
#[schema(as = SagaStepView)]
pub struct SagaStep {
    pub seq: i32,
    /// `items`, `slots`, `billing`, or `customer` for a cancel.
    pub participant: String,
    // The document has always described these two as strings, listing their values.
    /// `action`, `compensation` or `cancel`.
    #[schema(value_type = String)]
    pub kind: StepKind,
    /// `ok`, `rejected`, or `unknown` (no answer until the deadline).
    #[schema(value_type = String)]
    pub outcome: StepOutcome,
    /// The participant's refusal code.
    pub error_code: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
}

/// What a saga step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum StepKind {
    Action,
    Compensation,
    /// The customer's cancel request (participant `customer`).
    Cancel,
}

impl StepKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Action => "action",
            StepKind::Compensation => "compensation",
            StepKind::Cancel => "cancel",
        }
    }
}

/// How a saga step's participant call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, sqlx::Type)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum StepOutcome {
    Ok,
    Rejected,
    /// Transient failures until the deadline: the participant may or may not have acted.
    Unknown,
}

impl StepOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Ok => "ok",
            StepOutcome::Rejected => "rejected",
            StepOutcome::Unknown => "unknown",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for StepOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What a service sends, a client reads back unchanged (the wallet as integer cents too).
    #[test]
    fn an_order_view_round_trips() {
        let sent = json!({
            "id": "0190f5d4-7a1e-7c3b-9d2a-1f2e3d4c5b6a",
            "amount": 24.9,
            "details": {"item": 1, "slot": "09:00"},
            "status": "completed",
            "success": true,
            "reason": null,
            "created_at": "2025-01-02T03:04:05Z",
            "updated_at": "2025-01-02T03:04:06Z",
            "saga": [{
                "seq": 1, "participant": "items", "kind": "action", "outcome": "ok",
                "error_code": null,
                "started_at": "2025-01-02T03:04:05Z", "finished_at": "2025-01-02T03:04:05Z",
            }],
        });
        let view: OrderView = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(view.amount.minor(), 2490);
        assert_eq!(view.status, Status::Completed);
        assert_eq!(view.saga.as_ref().unwrap()[0].kind, StepKind::Action);
        assert_eq!(serde_json::to_value(&view).unwrap(), sent);
    }

    #[test]
    fn an_empty_wallet_is_an_account() {
        let sent = json!({"username": "alice", "email": "a@example.com", "wallet": 0.0});
        let account: Account = serde_json::from_value(sent.clone()).unwrap();
        assert_eq!(account.wallet.minor(), 0);
        assert_eq!(serde_json::to_value(&account).unwrap(), sent);
    }

    #[test]
    fn success_follows_the_status() {
        let finished: Vec<_> = Status::ALL
            .iter()
            .filter(|s| s.success().is_some())
            .collect();
        let finals: Vec<_> = Status::ALL.iter().filter(|s| s.is_final()).collect();
        assert_eq!(finished, finals);
    }

    /// JSON and `as_str` (what SQL binds and metrics label) spell every status the same way.
    #[test]
    fn a_status_is_spelt_the_same_everywhere() {
        for &status in Status::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                json!(status.as_str())
            );
            let back: Status = serde_json::from_value(json!(status.as_str())).unwrap();
            assert_eq!(back, status);
        }
    }
}
