//! The shop's public API as a client sees it — sign-up and token, wallet and deposits, catalog,
//! orders and waiting for an order's final state (long polls) — shared by `loadgen`, `chaos`, the
//! end-to-end tests (as `tools::client`) and the services' own integration tests. It talks to one
//! base URL per service ([`Endpoints`]): all the same behind the gateway, one per process in a test
//! stack, or only the one service a test started.
//!
//! Its bodies, sent and read, are `shop_common::api`'s: the types the services themselves
//! serialize and document, so a client reads an answer exactly as it was sent.

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use shop_common::{
    api::{
        Account, CreateOrder, Credentials, DepositRequest, Item, OrderView, Slot, Tokens, UserView,
    },
    domain::Money,
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use uuid::Uuid;

/// Where each service's public API is.
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub auth: String,
    pub billing: String,
    pub order: String,
    pub items: String,
    pub slots: String,
}

impl Endpoints {
    /// Everything behind one gateway, e.g. `http://127.0.0.1:8080`.
    pub fn gateway(base: &str) -> Self {
        let base = base.trim_end_matches('/').to_owned();
        Self {
            auth: base.clone(),
            billing: base.clone(),
            order: base.clone(),
            items: base.clone(),
            slots: base,
        }
    }
}

/// A failed call, classified so that callers can retry what is transient and count the rest.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No HTTP answer: connection refused or reset, timeout.
    #[error("{what}: {source}")]
    Transport {
        what: String,
        #[source]
        source: reqwest::Error,
    },
    /// An answer with an unexpected status.
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: String,
        status: StatusCode,
        body: String,
    },
    /// The expected status, with a body that does not parse.
    #[error("{what}: unexpected body: {detail}")]
    Decode { what: String, detail: String },
}

impl CallError {
    /// Worth retrying: no answer, or a 5xx (a service or the gateway's upstream is down).
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Transport { .. } => true,
            CallError::Status { status, .. } => status.is_server_error(),
            CallError::Decode { .. } => false,
        }
    }

    pub fn status(&self) -> Option<StatusCode> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The error with its causes, `: `-separated: reqwest's own text hides them ("error sending
    /// request" without the "Connection refused" underneath).
    pub fn with_causes(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text = format!("{text}: {cause_text}");
            }
            source = cause.source();
        }
        text
    }

    /// A short label for error tallies: `transport`, `http-503`, `decode`.
    pub fn kind(&self) -> String {
        match self {
            CallError::Transport { source, .. } if source.is_timeout() => "timeout".into(),
            CallError::Transport { .. } => "transport".into(),
            CallError::Status { status, .. } => format!("http-{}", status.as_u16()),
            CallError::Decode { .. } => "decode".into(),
        }
    }
}

pub type CallResult<T> = Result<T, CallError>;

#[derive(Debug, Clone)]
pub struct User {
    pub username: String,
    pub token: String,
}

/// The longest single long poll [`ShopClient::wait_final`] asks for (`?wait_ms=`); the order API
/// accepts up to 30 s. Short enough that a lost final-state signal (the server then answers at
/// the end of the wait) or a dropped connection costs little, long enough that a saga, which
/// takes milliseconds, is normally seen in one request.
pub const LONG_POLL: Duration = Duration::from_secs(5);

/// `path`, asking the order API to wait up to `wait` (whole milliseconds) for the order to be
/// final (`?wait_ms=`); a zero `wait` asks nothing.
fn waiting(path: &str, wait: Duration) -> String {
    match wait.as_millis() {
        0 => path.to_owned(),
        ms => format!("{path}?wait_ms={ms}"),
    }
}

/// The outcome of waiting for an order to be final.
#[derive(Debug, Clone)]
pub struct Waited {
    pub order: OrderView,
    /// GETs made: 1 when the order became final within the first long poll.
    pub requests: u32,
    /// GETs that failed transiently and were retried.
    pub transient_errors: u32,
}

#[derive(Clone)]
pub struct ShopClient {
    http: reqwest::Client,
    endpoints: Arc<Endpoints>,
    /// The per-request timeout: a long poll must end well within it.
    timeout: Duration,
}

impl ShopClient {
    /// A client with a generous connection pool (load tests keep hundreds of requests in flight)
    /// and a per-request timeout.
    pub fn new(endpoints: Endpoints, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(2))
            .timeout(timeout)
            .build()?;
        Ok(Self {
            http,
            endpoints: Arc::new(endpoints),
            timeout,
        })
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    fn request(&self, method: Method, base: &str, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{base}{path}"))
    }

    /// A request of `user` to the order API at `path`.
    fn order_request(&self, method: Method, user: &User, path: &str) -> RequestBuilder {
        self.request(method, &self.endpoints.order, path)
            .bearer_auth(&user.token)
    }

    async fn call<T: DeserializeOwned>(
        &self,
        what: impl Into<String>,
        req: RequestBuilder,
        ok: &[StatusCode],
    ) -> CallResult<(StatusCode, T)> {
        let what = what.into();
        let resp = match req.send().await {
            Ok(r) => r,
            Err(source) => return Err(CallError::Transport { what, source }),
        };
        let status = resp.status();
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(source) => return Err(CallError::Transport { what, source }),
        };
        if !ok.contains(&status) {
            return Err(CallError::Status {
                what,
                status,
                body: String::from_utf8_lossy(&body).chars().take(500).collect(),
            });
        }
        match serde_json::from_slice(&body) {
            Ok(v) => Ok((status, v)),
            Err(e) => Err(CallError::Decode {
                what,
                detail: format!("{e}: {}", String::from_utf8_lossy(&body)),
            }),
        }
    }

    /// POST /api/auth/users/ (201).
    pub async fn sign_up(&self, username: &str, password: &str, email: &str) -> CallResult<()> {
        // The body is auth's `NewUser`, which only deserializes (its password is a secret that
        // never leaves auth); its JSON is these three strings.
        let req = self
            .request(Method::POST, &self.endpoints.auth, "/api/auth/users/")
            .json(&json!({"username": username, "password": password, "email": email}));
        self.call::<UserView>(format!("sign-up {username}"), req, &[StatusCode::CREATED])
            .await?;
        Ok(())
    }

    /// POST /api/token/: the access token.
    pub async fn token(&self, username: &str, password: &str) -> CallResult<String> {
        let credentials = Credentials {
            username: username.to_owned(),
            password: password.to_owned(),
        };
        let req = self
            .request(Method::POST, &self.endpoints.auth, "/api/token/")
            .json(&credentials);
        let (_, t) = self
            .call::<Tokens>(format!("token {username}"), req, &[StatusCode::OK])
            .await?;
        Ok(t.access)
    }

    /// Sign-up, then a token. Retries transient failures for up to 60 s (a sign-up is Argon2-heavy:
    /// under load auth may time out); a sign-up whose answer was lost and that is retried gets
    /// 409 (taken) — then the token decides.
    pub async fn register(&self, username: &str, password: &str) -> CallResult<User> {
        let email = format!("{username}@example.com");
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.sign_up(username, password, &email).await {
                Ok(()) => break,
                Err(e) if attempt > 1 && e.status() == Some(StatusCode::CONFLICT) => break,
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
        loop {
            match self.token(username, password).await {
                Ok(token) => {
                    return Ok(User {
                        username: username.to_owned(),
                        token,
                    });
                }
                Err(e) if e.is_transient() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// GET /api/accounts/{username}.
    pub async fn account(&self, user: &User) -> CallResult<Account> {
        let path = format!("/api/accounts/{}", user.username);
        let req = self
            .request(Method::GET, &self.endpoints.billing, &path)
            .bearer_auth(&user.token);
        Ok(self
            .call(format!("account {}", user.username), req, &[StatusCode::OK])
            .await?
            .1)
    }

    /// POST /api/accounts/{username}/deposits, with an optional Idempotency-Key.
    pub async fn deposit(
        &self,
        user: &User,
        amount_cents: i64,
        idempotency_key: Option<&str>,
    ) -> CallResult<Account> {
        let path = format!("/api/accounts/{}/deposits", user.username);
        let mut req = self
            .request(Method::POST, &self.endpoints.billing, &path)
            .bearer_auth(&user.token)
            .json(&DepositRequest {
                amount: Money::from_minor(amount_cents),
            });
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        Ok(self
            .call(format!("deposit {}", user.username), req, &[StatusCode::OK])
            .await?
            .1)
    }

    /// GET /api/items/.
    pub async fn items(&self) -> CallResult<Vec<Item>> {
        let req = self.request(Method::GET, &self.endpoints.items, "/api/items/");
        Ok(self.call("items", req, &[StatusCode::OK]).await?.1)
    }

    /// GET /api/slots/.
    pub async fn slots(&self) -> CallResult<Vec<Slot>> {
        let req = self.request(Method::GET, &self.endpoints.slots, "/api/slots/");
        Ok(self.call("slots", req, &[StatusCode::OK]).await?.1)
    }

    /// POST /api/orders/ (201; 200 is accepted too, for an idempotent replay). Returns the status.
    pub async fn create_order(
        &self,
        user: &User,
        order: &CreateOrder,
        idempotency_key: Option<&str>,
    ) -> CallResult<(StatusCode, OrderView)> {
        self.create_order_waiting(user, order, idempotency_key, Duration::ZERO)
            .await
    }

    /// POST /api/orders/?wait_ms=N: places the order and answers once it is final (with its saga
    /// log), or after `wait` (whole milliseconds) as it is then. A zero `wait` does not wait.
    pub async fn create_order_waiting(
        &self,
        user: &User,
        order: &CreateOrder,
        idempotency_key: Option<&str>,
        wait: Duration,
    ) -> CallResult<(StatusCode, OrderView)> {
        let path = waiting("/api/orders/", wait);
        let mut req = self.order_request(Method::POST, user, &path).json(order);
        if let Some(key) = idempotency_key {
            req = req.header("Idempotency-Key", key);
        }
        self.call(
            format!("create order for {}", user.username),
            req,
            &[StatusCode::CREATED, StatusCode::OK],
        )
        .await
    }

    /// POST /api/orders/{id}/cancel: 202 with the order (`cancelling`, or `cancelled` already).
    pub async fn cancel_order(&self, user: &User, id: Uuid) -> CallResult<OrderView> {
        let req = self.order_request(Method::POST, user, &format!("/api/orders/{id}/cancel"));
        Ok(self
            .call(format!("cancel order {id}"), req, &[StatusCode::ACCEPTED])
            .await?
            .1)
    }

    /// GET /api/orders/{id} (with its saga steps).
    pub async fn order(&self, user: &User, id: Uuid) -> CallResult<OrderView> {
        self.order_waiting(user, id, Duration::ZERO).await
    }

    /// GET /api/orders/{id}?wait_ms=N: the order as soon as it is final, or after `wait` (whole
    /// milliseconds) as it is then. A zero `wait` is a plain read.
    pub async fn order_waiting(
        &self,
        user: &User,
        id: Uuid,
        wait: Duration,
    ) -> CallResult<OrderView> {
        let path = waiting(&format!("/api/orders/{id}"), wait);
        let req = self.order_request(Method::GET, user, &path);
        Ok(self
            .call(format!("order {id}"), req, &[StatusCode::OK])
            .await?
            .1)
    }

    /// GET /api/orders/{id} whatever the status: (status, body). For negative tests.
    pub async fn order_raw(&self, user: &User, id: Uuid) -> CallResult<(StatusCode, Value)> {
        let req = self.order_request(Method::GET, user, &format!("/api/orders/{id}"));
        let what = format!("order {id}");
        let resp = req.send().await.map_err(|source| CallError::Transport {
            what: what.clone(),
            source,
        })?;
        let status = resp.status();
        let body = resp
            .json()
            .await
            .map_err(|source| CallError::Transport { what, source })?;
        Ok((status, body))
    }

    /// GET /api/orders/: the user's orders, oldest first.
    pub async fn orders(&self, user: &User) -> CallResult<Vec<OrderView>> {
        let req = self.order_request(Method::GET, user, "/api/orders/");
        Ok(self
            .call(
                format!("orders of {}", user.username),
                req,
                &[StatusCode::OK],
            )
            .await?
            .1)
    }

    /// The longest wait one request asks for: [`LONG_POLL`], and half the request timeout.
    pub fn longest_poll(&self) -> Duration {
        LONG_POLL.min(self.timeout / 2)
    }

    /// Waits for the order to be final with long polls (GET /api/orders/{id}?wait_ms=N, N at
    /// most [`LONG_POLL`], the time left and half the request timeout), re-issued until the order
    /// is final or `timeout` passes (then the last error, or a `Decode` error saying it is still
    /// not final). Transient failures (the order API restarting) are retried after a short,
    /// growing pause, and counted.
    pub async fn wait_final(&self, user: &User, id: Uuid, timeout: Duration) -> CallResult<Waited> {
        // A server that ignores `wait_ms` answers at once: then pause this long between requests,
        // so that it is polled, not hammered.
        const EARLY_ANSWER_PAUSE: Duration = Duration::from_millis(10);
        const BACKOFF_MIN: Duration = Duration::from_millis(20);
        const BACKOFF_MAX: Duration = Duration::from_millis(500);
        let deadline = Instant::now() + timeout;
        let longest = self.longest_poll();
        let mut backoff = BACKOFF_MIN;
        let mut requests = 0;
        let mut transient_errors = 0;
        loop {
            let asked = Instant::now();
            let wait = deadline.saturating_duration_since(asked).min(longest);
            requests += 1;
            match self.order_waiting(user, id, wait).await {
                Ok(order) if order.status.is_final() => {
                    return Ok(Waited {
                        order,
                        requests,
                        transient_errors,
                    });
                }
                Ok(order) if Instant::now() >= deadline => {
                    return Err(CallError::Decode {
                        what: format!("order {id}"),
                        detail: format!("still {} after {timeout:?}", order.status),
                    });
                }
                Ok(_) => {
                    backoff = BACKOFF_MIN;
                    if asked.elapsed() < wait / 2 {
                        tokio::time::sleep(EARLY_ANSWER_PAUSE).await;
                    }
                }
                Err(e) if e.is_transient() && Instant::now() + backoff < deadline => {
                    transient_errors += 1;
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// An accepted order POST.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub order: OrderView,
    /// POSTs made; more than one when the order API was down or answered 5xx.
    pub attempts: u32,
    /// Why the last attempt before the accepted one failed.
    pub last_failure: Option<String>,
}

impl ShopClient {
    /// POST /api/orders/ with an Idempotency-Key, retried on transient failures until `timeout`:
    /// the key makes a retry of a POST whose answer was lost return the same order instead of a
    /// second one. Any other failure is returned at once.
    pub async fn create_order_retrying(
        &self,
        user: &User,
        order: &CreateOrder,
        idempotency_key: &str,
        timeout: Duration,
    ) -> CallResult<Accepted> {
        let deadline = Instant::now() + timeout;
        let mut attempts = 0;
        let mut last_failure = None;
        let mut delay = Duration::from_millis(50);
        loop {
            attempts += 1;
            match self.create_order(user, order, Some(idempotency_key)).await {
                Ok((_, order)) => {
                    return Ok(Accepted {
                        order,
                        attempts,
                        last_failure,
                    });
                }
                Err(e) if e.is_transient() && Instant::now() + delay < deadline => {
                    last_failure = Some(e.with_causes());
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_millis(500));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A refused connection says so: reqwest's text alone is "error sending request".
    #[tokio::test]
    async fn a_transport_error_names_its_cause() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoints = Endpoints::gateway(&format!("http://127.0.0.1:{port}"));
        let client = ShopClient::new(endpoints, Duration::from_secs(2)).unwrap();
        let error = client.items().await.expect_err("nothing listens there");
        let text = error.with_causes();
        assert!(text.to_lowercase().contains("refused"), "{text}");
    }
}
