//! billing's HTTP endpoints: the public account API and the internal account creation. The charge
//! ledger's endpoints come from `shop_common::ledger`.

use crate::{
    db::{self, Deposit},
    error::BillingError,
    startup::AppState,
};
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use serde::{Deserialize, Serialize};
use shop_common::{
    ApiError,
    auth::AuthUser,
    domain::{Money, Username},
    json::{ApiJson, ApiPath},
};

pub fn public() -> Router<AppState> {
    Router::new()
        .route("/api/accounts/{username}", get(show_account))
        .route("/api/accounts/{username}/deposits", post(deposit))
}

pub fn internal() -> Router<AppState> {
    Router::new().route("/internal/accounts", post(create_account))
}

#[derive(Serialize)]
struct AccountView {
    username: String,
    email: String,
    wallet: Money,
}

impl From<db::Account> for AccountView {
    fn from(a: db::Account) -> Self {
        Self {
            username: a.username,
            email: a.email,
            wallet: a.wallet,
        }
    }
}

fn ensure_own(user: &AuthUser, username: &str) -> Result<(), BillingError> {
    if user.username == username {
        Ok(())
    } else {
        Err(BillingError::NotYourAccount)
    }
}

async fn show_account(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(username): ApiPath<String>,
) -> Result<Json<AccountView>, ApiError> {
    ensure_own(&user, &username)?;
    let account = db::find_account(&state.pool, &username)
        .await?
        .ok_or(BillingError::UnknownAccount(username))?;
    Ok(Json(account.into()))
}

#[derive(Deserialize)]
struct DepositRequest {
    amount: Money,
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

async fn deposit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(username): ApiPath<String>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<DepositRequest>,
) -> Result<Json<AccountView>, ApiError> {
    ensure_own(&user, &username)?;
    let key = idempotency_key(&headers)?;
    match db::deposit(&state.pool, &username, req.amount, key).await? {
        Deposit::Applied(a) | Deposit::Replayed(a) => Ok(Json(a.into())),
        Deposit::KeyReused => Err(BillingError::IdempotencyKeyReused.into()),
        Deposit::UnknownAccount => Err(BillingError::UnknownAccount(username).into()),
    }
}

/// The optional `Idempotency-Key` header: 1 to 200 visible ASCII characters.
pub fn idempotency_key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    match raw.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 200 => Ok(Some(k)),
        _ => Err(ApiError::invalid_field(
            "Idempotency-Key",
            "must be 1 to 200 visible ASCII characters",
        )),
    }
}

#[derive(Deserialize)]
struct NewAccount {
    username: Username,
    email: String,
}

async fn create_account(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<NewAccount>,
) -> Result<(StatusCode, Json<AccountView>), ApiError> {
    let (account, created) =
        db::create_account(&state.pool, &req.username, &req.email, state.initial_wallet).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(account.into())))
}
