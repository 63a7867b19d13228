//! billing's HTTP endpoints: the public account API and the internal account creation. The charge
//! ledger's endpoints come from `shop_common::ledger`.

use crate::{
    db::{self, Account, Deposit},
    error::BillingError,
    startup::AppState,
};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use serde::Deserialize;
use shop_common::{
    ApiError,
    auth::AuthUser,
    domain::{Money, Username},
    idempotency::IdempotencyKey,
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
) -> Result<Json<Account>, ApiError> {
    ensure_own(&user, &username)?;
    let account = db::find_account(&state.pool, &username)
        .await?
        .ok_or(BillingError::UnknownAccount(username))?;
    Ok(Json(account))
}

#[derive(Deserialize)]
struct DepositRequest {
    amount: Money,
}

async fn deposit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(username): ApiPath<String>,
    key: IdempotencyKey,
    ApiJson(req): ApiJson<DepositRequest>,
) -> Result<Json<Account>, ApiError> {
    ensure_own(&user, &username)?;
    match db::deposit(&state.pool, &username, req.amount, key.as_deref()).await? {
        Deposit::Applied(a) | Deposit::Replayed(a) => Ok(Json(a)),
        Deposit::KeyReused => Err(BillingError::IdempotencyKeyReused.into()),
        Deposit::UnknownAccount => Err(BillingError::UnknownAccount(username).into()),
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
) -> Result<(StatusCode, Json<Account>), ApiError> {
    let (account, created) =
        db::create_account(&state.pool, &req.username, &req.email, state.initial_wallet).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(account)))
}
