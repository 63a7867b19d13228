//! All of billing's own SQL: its tables and the charge ledger's mapping onto them ([`CHARGES`]; the
//! ledger's SQL itself is the shared one in `shop_common::ledger`), the accounts and their deposits.

use anyhow::{Context, Result};
use shop_common::{
    api::Account,
    domain::{Money, Username},
    ledger::{KeyType, LedgerSpec, OwnTables, Resources},
};
use sqlx::PgPool;

/// The money step of the saga: charge = hold `amount` cents of the user's wallet.
pub static CHARGES: LedgerSpec = LedgerSpec {
    route: "charges",
    unknown_code: "account_not_found",
    valid_key: |key| !key.is_empty(),
    resources: Resources {
        table: "accounts",
        key: "username",
        key_type: KeyType::Text,
        available: "wallet",
        exhausted_code: "insufficient_funds",
        summary: "accounts.wallet by username, cents",
        holds_meaning: "resource = username,\n-- quantity = amount charged in cents.",
    },
    tables: OwnTables::new("accounts", include_str!("tables.sql")),
};

/// Creates the account unless it exists; `true` if this call created it.
pub async fn create_account(
    pool: &PgPool,
    username: &Username,
    email: &str,
    wallet: Money,
) -> Result<(Account, bool)> {
    let created = sqlx::query_as::<_, Account>(
        "INSERT INTO accounts (username, email, wallet) VALUES ($1, $2, $3) \
         ON CONFLICT (username) DO NOTHING RETURNING username, email, wallet",
    )
    .bind(username.as_str())
    .bind(email)
    .bind(wallet.minor())
    .fetch_optional(pool)
    .await
    .context("inserting an account")?;
    match created {
        Some(account) => Ok((account, true)),
        None => {
            let existing = find_account(pool, username.as_str())
                .await?
                .context("account vanished after a conflicting insert")?;
            Ok((existing, false))
        }
    }
}

pub async fn find_account(pool: &PgPool, username: &str) -> Result<Option<Account>> {
    sqlx::query_as::<_, Account>("SELECT username, email, wallet FROM accounts WHERE username = $1")
        .bind(username)
        .fetch_optional(pool)
        .await
        .context("reading an account")
}

pub enum Deposit {
    Applied(Account),
    /// The Idempotency-Key was used before, for this amount: nothing applied again.
    Replayed(Account),
    /// The Idempotency-Key was used before, for another amount.
    KeyReused,
    UnknownAccount,
}

/// Adds `amount` to the wallet in one transaction with its deposit record.
pub async fn deposit(
    pool: &PgPool,
    username: &str,
    amount: Money,
    idempotency_key: Option<&str>,
) -> Result<Deposit> {
    let mut tx = pool.begin().await.context("starting a deposit")?;
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO deposits (username, idempotency_key, amount) \
         SELECT $1, $2, $3 WHERE EXISTS (SELECT 1 FROM accounts WHERE username = $1) \
         ON CONFLICT (username, idempotency_key) DO NOTHING RETURNING amount",
    )
    .bind(username)
    .bind(idempotency_key)
    .bind(amount.minor())
    .fetch_optional(&mut *tx)
    .await
    .context("recording a deposit")?;
    let outcome = if inserted.is_some() {
        let account = sqlx::query_as::<_, Account>(
            "UPDATE accounts SET wallet = wallet + $2 WHERE username = $1 \
             RETURNING username, email, wallet",
        )
        .bind(username)
        .bind(amount.minor())
        .fetch_one(&mut *tx)
        .await
        .context("crediting the wallet")?;
        Deposit::Applied(account)
    } else {
        // A separate statement, so that it sees a racing retry's deposit that the INSERT above
        // waited for (its snapshot predates that commit).
        let earlier: Option<i64> = sqlx::query_scalar(
            "SELECT amount FROM deposits WHERE username = $1 AND idempotency_key = $2",
        )
        .bind(username)
        .bind(idempotency_key)
        .fetch_optional(&mut *tx)
        .await
        .context("reading an earlier deposit")?;
        match earlier {
            None => Deposit::UnknownAccount,
            Some(earlier) if earlier != amount.minor() => Deposit::KeyReused,
            Some(_) => match find_account_in(&mut tx, username).await? {
                Some(a) => Deposit::Replayed(a),
                None => Deposit::UnknownAccount,
            },
        }
    };
    tx.commit().await.context("committing a deposit")?;
    Ok(outcome)
}

async fn find_account_in(tx: &mut sqlx::PgConnection, username: &str) -> Result<Option<Account>> {
    sqlx::query_as::<_, Account>("SELECT username, email, wallet FROM accounts WHERE username = $1")
        .bind(username)
        .fetch_optional(tx)
        .await
        .context("reading an account")
}
