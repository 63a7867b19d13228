//! Configuration from environment variables (12-factor), declared once as `clap` derive structs
//! with `env`: the parsing, the defaults, `--help` and the manifest check
//! (tools/tests/system/manifest.rs) all come from the same declarations. Secrets are [`SecretString`]s so that a `{:?}` of any
//! config struct can be logged without leaking them, and are checked for strength at start-up
//! ([`SecretParser`]).

use clap::{
    Arg, Args, Command, FromArgMatches, Parser,
    builder::TypedValueParser,
    error::{Error as ClapError, ErrorKind},
};
use std::{collections::BTreeSet, ffi::OsStr, fmt, net::SocketAddr, time::Duration};

/// Secrets are `secrecy` strings: `{:?}` prints `[REDACTED]`, and reading one takes an explicit
/// `expose_secret()`.
pub use secrecy::{ExposeSecret, SecretString};

/// Parses a service's configuration from the environment (and flags, for `--help`). Every value
/// is shown under its variable's name, so a "required argument not provided" names the variable
/// to set; clap's own errors exit with status 2, after printing usage.
pub fn parse<C: Parser>() -> C {
    C::from_arg_matches(&command::<C>().get_matches()).unwrap_or_else(|e| e.exit())
}

/// [`parse`], and `Part` — a group that `C` flattens somewhere, e.g. [`HttpConfig`] — read from
/// the same values: how code that only knows `C` as a parser finds the part it needs.
pub fn parse_with<C: Parser, Part: FromArgMatches>() -> (C, Part) {
    let matches = command::<C>().get_matches();
    let parsed = C::from_arg_matches(&matches)
        .and_then(|config| Ok((config, Part::from_arg_matches(&matches)?)));
    parsed.unwrap_or_else(|e| e.exit())
}

fn command<C: Parser>() -> Command {
    C::command().mut_args(|arg| match arg.get_env() {
        Some(env) => {
            let name = env.to_string_lossy().into_owned();
            arg.value_name(name)
        }
        None => arg,
    })
}

/// `<ms>` as a [`Duration`]: every `*_MS` variable.
pub fn millis(raw: &str) -> Result<Duration, std::num::ParseIntError> {
    raw.parse().map(Duration::from_millis)
}

/// `<s>` as a [`Duration`]: every `*_SECS` variable.
pub fn secs(raw: &str) -> Result<Duration, std::num::ParseIntError> {
    raw.parse().map(Duration::from_secs)
}

pub const JWT_SECRET_MIN_BYTES: usize = 32;
pub const INTERNAL_TOKEN_MIN_BYTES: usize = 16;
/// Below this many distinct bytes a value is a pattern ("aaaa…", "0101…"), not a random key: 32
/// random hex digits have 16 distinct bytes with near certainty, 8 is far below any random value.
pub const SECRET_MIN_DISTINCT_BYTES: usize = 8;
/// What marks the placeholders this project ever documented (the old manifest's Secret held
/// `change-me-…` values; the install now generates random ones).
pub const PLACEHOLDER_MARK: &str = "change-me";

/// Why a secret's value is refused; never carries the value itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeakSecret {
    TooShort { min_len: usize },
    Placeholder,
    TooFewDistinctBytes { distinct: usize },
}

impl fmt::Display for WeakSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort { min_len } => write!(f, "must be at least {min_len} bytes long"),
            Self::Placeholder => write!(
                f,
                "is a placeholder (contains {PLACEHOLDER_MARK:?}); set a random value, e.g. `openssl rand -hex 32`"
            ),
            Self::TooFewDistinctBytes { distinct } => write!(
                f,
                "has only {distinct} distinct bytes (at least {SECRET_MIN_DISTINCT_BYTES} needed); set a random value"
            ),
        }
    }
}

/// Refuses a value too short, a documented placeholder, or a pattern too regular to be random.
pub fn check_secret_strength(value: &str, min_len: usize) -> Result<(), WeakSecret> {
    if value.len() < min_len {
        return Err(WeakSecret::TooShort { min_len });
    }
    if value.to_ascii_lowercase().contains(PLACEHOLDER_MARK) {
        return Err(WeakSecret::Placeholder);
    }
    let distinct = value.bytes().collect::<BTreeSet<u8>>().len();
    if distinct < SECRET_MIN_DISTINCT_BYTES {
        return Err(WeakSecret::TooFewDistinctBytes { distinct });
    }
    Ok(())
}

/// The clap value parser of every secret: a weak value stops start-up with a message naming the
/// variable (taken from the argument's own `env`), never the value — clap's own "invalid value"
/// error would print it.
#[derive(Clone, Copy, Debug)]
pub struct SecretParser {
    pub min_len: usize,
}

impl SecretParser {
    pub const fn min_len(min_len: usize) -> Self {
        Self { min_len }
    }
}

impl TypedValueParser for SecretParser {
    type Value = SecretString;

    fn parse_ref(
        &self,
        cmd: &Command,
        arg: Option<&Arg>,
        value: &OsStr,
    ) -> Result<SecretString, ClapError> {
        let name = arg
            .and_then(|a| a.get_env())
            .map(|env| env.to_string_lossy().into_owned())
            .or_else(|| arg.map(|a| a.get_id().to_string()))
            .unwrap_or_else(|| "a secret".to_owned());
        let refuse = |why: &dyn fmt::Display| {
            ClapError::raw(
                ErrorKind::ValueValidation,
                format!("environment variable {name} {why}\n"),
            )
            .with_cmd(cmd)
        };
        let value = value
            .to_str()
            .ok_or_else(|| refuse(&"is not valid UTF-8"))?;
        check_secret_strength(value, self.min_len).map_err(|weak| refuse(&weak))?;
        Ok(SecretString::from(value))
    }
}

/// What every HTTP server of the shop is configured with.
#[derive(Debug, Clone, Args)]
pub struct HttpConfig {
    /// Bind address.
    #[arg(long, env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen_addr: SocketAddr,
    /// Per-request timeout (ms); a long poll (`?wait_ms=N` on an order's GET or POST, N ≤ 30000)
    /// gets it on top of its longest wait.
    #[arg(long = "request-timeout-ms", env = "REQUEST_TIMEOUT_MS", default_value = "10000", value_parser = millis)]
    pub request_timeout: Duration,
    /// Request body limit (bytes).
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 64 * 1024)]
    pub body_limit_bytes: usize,
}

impl HttpConfig {
    /// Loopback on a random port: what tests use.
    pub fn for_tests() -> Self {
        Self {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            request_timeout: Duration::from_secs(10),
            body_limit_bytes: 64 * 1024,
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// The service's own database (the mediator uses the order service's).
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true)]
    pub url: SecretString,
    /// Connection pool size.
    #[arg(
        long = "db-max-connections",
        env = "DB_MAX_CONNECTIONS",
        default_value_t = 16
    )]
    pub max_connections: u32,
    /// How long start-up waits for the database to accept a connection (s), retrying with capped,
    /// jittered backoff and logging each attempt, before exiting with the last error. The default
    /// stays under the Kubernetes startup probe's budget (periodSeconds × failureThreshold), so
    /// the process reports why it gives up before the kubelet kills it.
    #[arg(
        long = "db-startup-wait-secs",
        env = "DB_STARTUP_WAIT_SECS",
        default_value = "45",
        value_parser = secs
    )]
    pub startup_wait: Duration,
    /// How long one statement may run before Postgres cancels it (ms). A statement stuck behind
    /// a lock or a stalled disk then fails — a 503 with Retry-After — instead of holding its
    /// request, and every request batched with it, until the request timeout. Migrations, run
    /// once at start-up, are not bound by it.
    #[arg(
        long = "db-statement-timeout-ms",
        env = "DB_STATEMENT_TIMEOUT_MS",
        default_value = "5000",
        value_parser = millis
    )]
    pub statement_timeout: Duration,
}

/// Where a service listens and its own database: what every service of the shop has (the saga
/// participants have it inside [`ParticipantConfig`]).
#[derive(Debug, Clone, Args)]
pub struct ServerConfig {
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
}

/// A saga participant (billing, items, slots): where it listens, its own database, and the token
/// every call of its `/internal/` ledger must carry.
#[derive(Debug, Clone, Args)]
pub struct ParticipantConfig {
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub internal_token: InternalTokenConfig,
}

/// The HS256 key of the access and refresh tokens: in every service that issues or verifies them.
#[derive(Debug, Clone, Args)]
pub struct JwtSecretConfig {
    /// HS256 key of the access and refresh tokens, which every service with a public API verifies
    /// locally. Random: at least 32 bytes, 8 distinct bytes, no `change-me`.
    #[arg(id = "jwt_secret", long = "jwt-secret", env = "JWT_SECRET", hide_env_values = true, value_parser = SecretParser::min_len(JWT_SECRET_MIN_BYTES))]
    pub secret: SecretString,
}

/// The shared secret of `/internal/` calls (header `X-Internal-Token`): in their callers and
/// their participants.
#[derive(Debug, Clone, Args)]
pub struct InternalTokenConfig {
    /// Shared secret of `/internal/` calls (header `X-Internal-Token`). Random: at least 16 bytes,
    /// 8 distinct bytes, no `change-me`.
    #[arg(id = "internal_token", long = "internal-token", env = "INTERNAL_TOKEN", hide_env_values = true, value_parser = SecretParser::min_len(INTERNAL_TOKEN_MIN_BYTES))]
    pub secret: SecretString,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config = JwtSecretConfig {
            secret: SecretString::from("hunter2-hunter2-hunter2"),
        };
        let shown = format!("{config:?}");
        assert!(shown.contains("REDACTED"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(config.secret.expose_secret(), "hunter2-hunter2-hunter2");
    }

    #[test]
    fn a_random_hex_secret_is_accepted() {
        assert_eq!(
            check_secret_strength("3f9a0c1e7b2d4f6a8c0e1b3d5f7a9c2e", 32),
            Ok(())
        );
    }

    #[test]
    fn a_short_secret_is_refused() {
        assert_eq!(
            check_secret_strength("3f9a0c1e7b2d4f6a", 32),
            Err(WeakSecret::TooShort { min_len: 32 })
        );
    }

    #[test]
    fn a_placeholder_is_refused_whatever_its_case() {
        for placeholder in [
            "change-me-jwt-secret-this-placeholder-is-64-bytes-long-0123456789",
            "change-me-internal-token-placeholder-0123456789",
            "CHANGE-ME-please-0123456789abcdefghijklmnop",
            "x7Q-Change-Me-0123456789abcdefghijklmnop",
        ] {
            assert_eq!(
                check_secret_strength(placeholder, 16),
                Err(WeakSecret::Placeholder),
                "{placeholder}"
            );
        }
    }

    #[test]
    fn a_pattern_with_few_distinct_bytes_is_refused() {
        assert_eq!(
            check_secret_strength(&"a".repeat(64), 32),
            Err(WeakSecret::TooFewDistinctBytes { distinct: 1 })
        );
        assert_eq!(
            check_secret_strength(&"01".repeat(32), 32),
            Err(WeakSecret::TooFewDistinctBytes { distinct: 2 })
        );
        assert_eq!(
            check_secret_strength(&"abcdefg".repeat(8), 32),
            Err(WeakSecret::TooFewDistinctBytes { distinct: 7 })
        );
        assert_eq!(check_secret_strength(&"abcdefgh".repeat(8), 32), Ok(()));
    }

    #[derive(Debug, Parser)]
    struct WithSecrets {
        #[command(flatten)]
        jwt: JwtSecretConfig,
        #[command(flatten)]
        internal: InternalTokenConfig,
    }

    /// The parser's refusal names the variable and keeps the value out of the message; the
    /// variable's name comes from the argument itself, so it cannot drift from the declaration.
    #[test]
    fn the_refusal_names_the_variable_and_not_the_value() {
        let placeholder = "change-me-jwt-secret-this-placeholder-is-64-bytes-long-0123456789";
        let refused = WithSecrets::try_parse_from([
            "svc",
            "--jwt-secret",
            placeholder,
            "--internal-token",
            "3f9a0c1e7b2d4f6a8c0e1b3d5f7a9c2e",
        ])
        .unwrap_err();
        let said = refused.to_string();
        assert_eq!(refused.kind(), ErrorKind::ValueValidation);
        assert!(
            said.contains("environment variable JWT_SECRET is a placeholder"),
            "{said}"
        );
        assert!(!said.contains(placeholder), "{said}");
    }
}
