//! auth's endpoints: sign-up, token, token refresh.

use crate::{db, domain::NewUser, error::AuthError, startup::AppState};
use anyhow::Context;
use axum::{
    Json,
    extract::State,
    http::{HeaderMap, StatusCode},
};
use reqwest::Method;
use serde_json::json;
use shop_common::config::ExposeSecret;
use shop_common::{
    ApiError,
    api::{Credentials, RefreshRequest, Tokens, UserView},
    auth::TokenKind,
    client::REQUEST_ID_HEADER,
    error::ErrorBody,
    json::ApiJson,
    openapi::{BodyRefusals, RateLimited, Unavailable},
};
use utoipa_axum::{router::OpenApiRouter, routes};

pub fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(token))
        .routes(routes!(refresh))
}

/// Signs up: the user, and their billing account with the starting wallet.
// The user and, before answering, the billing account — in that order inside one database
// transaction: if billing fails the user row is rolled back, so no user is ever left without an
// account. (Billing's account creation is idempotent by username, so a retried sign-up after a
// lost commit finds the account already there.)
#[utoipa::path(
    post, path = "/api/auth/users", operation_id = "signUp", tag = "users", request_body = NewUser,
    responses(
        (status = 201, description = "Signed up; the wallet starts with INITIAL_WALLET", body = UserView, links(("LogIn" = (operation_id = "logIn", request_body = json!({"username": "$request.body#/username", "password": "$request.body#/password"}))))),
        (status = 409, description = "`username_taken`", body = ErrorBody), BodyRefusals,
        RateLimited, Unavailable,
    ),
)]
async fn sign_up(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(user): ApiJson<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let hash = state
        .passwords
        .hash(user.password.expose_secret().to_owned())
        .await?;
    let mut tx = state.pool.begin().await.context("starting the sign-up")?;
    if !db::insert_user(&mut tx, &user.username, user.email.as_str(), &hash).await? {
        return Err(AuthError::UsernameTaken(user.username.to_string()).into());
    }
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    state
        .billing
        .request(Method::POST, "/internal/accounts", request_id)
        .json(&json!({"username": user.username, "email": user.email.as_str()}))
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .context("POST billing /internal/accounts")
        .map_err(AuthError::BillingUnavailable)?;
    tx.commit().await.context("committing the sign-up")?;
    Ok((
        StatusCode::CREATED,
        Json(UserView {
            username: user.username.to_string(),
            email: user.email.as_str().to_owned(),
        }),
    ))
}

/// A new access token for `username`, with the role the configuration gives them now (so removing
/// an operator takes effect at their next refresh), and `refresh` if one is issued.
fn tokens(state: &AppState, username: &str, refresh: Option<String>) -> Result<Tokens, ApiError> {
    let role = state.config.role_of(username);
    let access = state
        .jwt
        .issue_with_role(username, role, TokenKind::Access, state.access_ttl)?;
    Ok(Tokens {
        access,
        refresh,
        token_type: "Bearer".into(),
        expires_in: state.access_ttl.as_secs(),
    })
}

/// Logs in: an access token and a refresh token.
#[utoipa::path(
    post, path = "/api/token", operation_id = "logIn", tag = "users", request_body = Credentials,
    responses(
        (status = 200, description = "OK", body = Tokens),
        (status = 401, description = "`invalid_credentials`", body = ErrorBody), BodyRefusals,
        RateLimited, Unavailable,
    ),
)]
async fn token(
    State(state): State<AppState>,
    ApiJson(c): ApiJson<Credentials>,
) -> Result<Json<Tokens>, ApiError> {
    let stored = db::password_hash(&state.pool, &c.username).await?;
    let valid = state.passwords.verify(c.password, stored).await?;
    if !valid {
        return Err(AuthError::InvalidCredentials.into());
    }
    let refresh = state
        .jwt
        .issue(&c.username, TokenKind::Refresh, state.refresh_ttl)?;
    Ok(Json(tokens(&state, &c.username, Some(refresh))?))
}

/// A new access token for a refresh token.
#[utoipa::path(
    post, path = "/api/token/refresh", operation_id = "refreshToken", tag = "users",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "OK", body = Tokens),
        (status = 401, description = "An invalid or expired refresh token, or its user is gone", body = ErrorBody),
        BodyRefusals, RateLimited, Unavailable,
    ),
)]
async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<Tokens>, ApiError> {
    let claims = state.jwt.verify(&req.refresh, TokenKind::Refresh)?;
    if !db::user_exists(&state.pool, &claims.sub).await? {
        return Err(AuthError::InvalidCredentials.into());
    }
    Ok(Json(tokens(&state, &claims.sub, None)?))
}
