//! All of auth's SQL.

use anyhow::{Context, Result};
use shop_common::domain::Username;
use sqlx::{PgPool, Postgres, Transaction};

/// Inserts the user inside `tx`; `false` if the username is taken (a concurrent sign-up of the same
/// name waits on the primary key until this transaction ends).
pub async fn insert_user(
    tx: &mut Transaction<'_, Postgres>,
    username: &Username,
    email: &str,
    password_hash: &str,
) -> Result<bool> {
    let done = sqlx::query(
        "INSERT INTO users (username, email, password_hash) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(username.as_str())
    .bind(email)
    .bind(password_hash)
    .execute(&mut **tx)
    .await
    .context("inserting a user")?;
    Ok(done.rows_affected() == 1)
}

pub async fn password_hash(pool: &PgPool, username: &str) -> Result<Option<String>> {
    sqlx::query_scalar("SELECT password_hash FROM users WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await
        .context("reading a password hash")
}

pub async fn user_exists(pool: &PgPool, username: &str) -> Result<bool> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE username = $1)")
        .bind(username)
        .fetch_one(pool)
        .await
        .context("looking up a user")
}
