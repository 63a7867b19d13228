//! JWTs: issuing (auth only) and verifying (every service, locally, with the shared secret).
//! [`AuthUser`] is the extractor a handler takes to require a valid access token, [`AdminUser`]
//! one with the `admin` role (an operator).

use crate::config::ExposeSecret;
use crate::{config::JwtSecretConfig, error::ApiError};
use anyhow::{Context, Result};
use axum::{
    extract::{FromRef, FromRequestParts},
    http::{header, request::Parts},
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};
use std::{sync::Arc, time::Duration};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    Access,
    Refresh,
}

/// What a token allows beyond its holder's own data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An operator: every order, the dead letters (auth's `ADMIN_USERS`).
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub typ: TokenKind,
    /// Absent for a customer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

#[derive(Clone)]
pub struct JwtKeys(Arc<Keys>);

struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl JwtKeys {
    pub fn new(config: &JwtSecretConfig) -> Self {
        let secret = &config.secret;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        validation.leeway = 5;
        Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(secret.expose_secret().as_bytes()),
            decoding: DecodingKey::from_secret(secret.expose_secret().as_bytes()),
            validation,
        }))
    }

    pub fn issue(&self, subject: &str, kind: TokenKind, ttl: Duration) -> Result<String> {
        self.issue_with_role(subject, None, kind, ttl)
    }

    pub fn issue_with_role(
        &self,
        subject: &str,
        role: Option<Role>,
        kind: TokenKind,
        ttl: Duration,
    ) -> Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: subject.to_owned(),
            iat: now,
            exp: now + ttl.as_secs(),
            typ: kind,
            role,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.0.encoding).context("signing a JWT")
    }

    /// The claims of a valid, unexpired token of `kind`; any other token is a 401.
    pub fn verify(&self, token: &str, kind: TokenKind) -> Result<Claims, ApiError> {
        let claims = decode::<Claims>(token, &self.0.decoding, &self.0.validation)
            .map_err(|e| ApiError::unauthorized("invalid_token", format!("token rejected: {e}")))?
            .claims;
        if claims.typ != kind {
            return Err(ApiError::unauthorized(
                "invalid_token",
                "token rejected: wrong token type",
            ));
        }
        Ok(claims)
    }
}

/// The caller, proven by a valid `Authorization: Bearer <access token>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub username: String,
    pub role: Option<Role>,
}

impl<S> FromRequestParts<S> for AuthUser
where
    JwtKeys: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .ok_or_else(|| {
                ApiError::unauthorized("missing_token", "send Authorization: Bearer <token>")
            })?;
        let claims = JwtKeys::from_ref(state).verify(token.trim(), TokenKind::Access)?;
        Ok(AuthUser {
            username: claims.sub,
            role: claims.role,
        })
    }
}

/// An operator, proven by a valid access token with the `admin` role; any other valid token is a
/// 403 `admin_only`, no token a 401.
#[derive(Debug, Clone)]
pub struct AdminUser {
    pub username: String,
}

// Bound on `AuthUser`, not on what it needs from the state: an operator is an `AuthUser` with
// the `admin` role, wherever an `AuthUser` can be extracted.
impl<S: Send + Sync> FromRequestParts<S> for AdminUser
where
    AuthUser: FromRequestParts<S, Rejection = ApiError>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let user = AuthUser::from_request_parts(parts, state).await?;
        if user.role != Some(Role::Admin) {
            return Err(ApiError::forbidden(
                "admin_only",
                "this is for operators (auth's ADMIN_USERS)",
            ));
        }
        Ok(AdminUser {
            username: user.username,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretString;

    fn keys(secret: &str) -> JwtKeys {
        JwtKeys::new(&JwtSecretConfig {
            secret: SecretString::from(secret),
        })
    }

    #[test]
    fn a_token_verifies_only_with_its_secret_and_kind() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let t = k
            .issue("alice", TokenKind::Access, Duration::from_secs(60))
            .unwrap();
        assert_eq!(k.verify(&t, TokenKind::Access).unwrap().sub, "alice");
        assert!(k.verify(&t, TokenKind::Refresh).is_err());
        let other = keys("ffffffffffffffffffffffffffffffff");
        assert!(other.verify(&t, TokenKind::Access).is_err());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let k = keys("0123456789abcdef0123456789abcdef");
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            sub: "alice".into(),
            iat: now - 120,
            exp: now - 60,
            typ: TokenKind::Access,
            role: None,
        };
        let t = encode(&Header::new(Algorithm::HS256), &claims, &k.0.encoding).unwrap();
        assert!(k.verify(&t, TokenKind::Access).is_err());
    }
}
