//! billing's HTTP endpoints: the public account API and the internal account creation. The charge
//! ledger's endpoints come from `shop_common::ledger`.

use crate::{
    db::{self, Deposit},
    error::BillingError,
    startup::AppState,
};
use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use serde::Deserialize;
use shop_common::{
    ApiError,
    api::{Account, DepositRequest},
    auth::AuthUser,
    domain::Username,
    idempotency::IdempotencyKey,
    json::{ApiJson, ApiPath},
    openapi::{CustomerRefusals, CustomerWrite, refusal},
};
use utoipa_axum::{router::OpenApiRouter, routes};

shop_common::answer_sets! {
    /// What an endpoint on an account answers for one that is not the caller's.
    NotYourAccount = [[
        refusal(403, "Someone else's account", false),
        refusal(404, "No such account", false),
    ]];
}

pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(show_account))
        .routes(routes!(deposit))
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

/// The caller's own account: the wallet.
#[utoipa::path(
    get, path = "/api/accounts/{username}", operation_id = "getAccount", tag = "accounts",
    security(("bearer" = [])),
    params(("username" = String, Path, description = "The caller's own username")),
    responses((status = 200, description = "OK", body = Account), NotYourAccount, CustomerRefusals),
)]
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

/// Tops up the caller's wallet; with an `Idempotency-Key`, a retry applies once.
#[utoipa::path(
    post, path = "/api/accounts/{username}/deposits", operation_id = "deposit", tag = "accounts",
    security(("bearer" = [])),
    params(("username" = String, Path, description = "The caller's own username"), IdempotencyKey),
    request_body = DepositRequest,
    responses(
        (status = 200, description = "The account after the deposit", body = Account),
        NotYourAccount, CustomerWrite,
    ),
)]
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
