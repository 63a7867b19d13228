//! auth's endpoints: sign-up, token, token refresh.

use crate::{db, domain::NewUser, error::AuthError, startup::AppState};
use anyhow::Context;
use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode},
    routing::post,
};
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use shop_common::config::ExposeSecret;
use shop_common::{ApiError, auth::TokenKind, client::REQUEST_ID_HEADER, json::ApiJson};

pub fn public() -> Router<AppState> {
    Router::new()
        .route("/api/auth/users", post(sign_up))
        .route("/api/token", post(token))
        .route("/api/token/refresh", post(refresh))
}

/// Creates the user and, before answering, their billing account — in that order inside one
/// database transaction: if billing fails the user row is rolled back, so no user is ever left
/// without an account. (Billing's account creation is idempotent by username, so a retried
/// sign-up after a lost commit finds the account already there.)
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

#[derive(Serialize)]
struct UserView {
    username: String,
    email: String,
}

#[derive(Deserialize)]
struct Credentials {
    username: String,
    password: String,
}

#[derive(Serialize)]
struct Tokens {
    access: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh: Option<String>,
    token_type: &'static str,
    expires_in: u64,
}

impl Tokens {
    /// A new access token for `username`, with the role the configuration gives them now (so
    /// removing an operator takes effect at their next refresh), and `refresh` if one is issued.
    fn new(state: &AppState, username: &str, refresh: Option<String>) -> Result<Self, ApiError> {
        let role = state.config.role_of(username);
        let access =
            state
                .jwt
                .issue_with_role(username, role, TokenKind::Access, state.access_ttl)?;
        Ok(Self {
            access,
            refresh,
            token_type: "Bearer",
            expires_in: state.access_ttl.as_secs(),
        })
    }
}

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
    Ok(Json(Tokens::new(&state, &c.username, Some(refresh))?))
}

#[derive(Deserialize)]
struct RefreshRequest {
    refresh: String,
}

async fn refresh(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<RefreshRequest>,
) -> Result<Json<Tokens>, ApiError> {
    let claims = state.jwt.verify(&req.refresh, TokenKind::Refresh)?;
    if !db::user_exists(&state.pool, &claims.sub).await? {
        return Err(AuthError::InvalidCredentials.into());
    }
    Ok(Json(Tokens::new(&state, &claims.sub, None)?))
}
