//! A store that goes down in the middle of a test: a TCP link between a service and the test
//! Postgres (or Redis) that the test cuts — new connections are refused, open ones are closed
//! under the pool's feet, as when the server is stopped — and restores, without touching the
//! real server every other test shares.

use crate::config::ExposeSecret;
use crate::config::{DatabaseConfig, SecretString};
use sqlx::postgres::PgConnectOptions;
use std::{net::SocketAddr, str::FromStr, sync::Mutex};
use tokio::{
    net::{TcpListener, TcpSocket, TcpStream},
    task::{JoinHandle, JoinSet},
};
use tokio_util::sync::CancellationToken;

pub struct Link {
    addr: SocketAddr,
    target: SocketAddr,
    running: Mutex<Option<(CancellationToken, JoinHandle<()>)>>,
}

impl Link {
    /// A link, up, from a fresh loopback port to `target`.
    pub async fn to(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding a link port");
        let addr = listener.local_addr().expect("local addr");
        let link = Self {
            addr,
            target,
            running: Mutex::new(None),
        };
        link.start(listener);
        link
    }

    /// `database`, reached through a new link to its server: `(link, the same database via it)`.
    pub async fn to_database(database: &DatabaseConfig) -> (Self, DatabaseConfig) {
        let url = database.url.expose_secret();
        let options = PgConnectOptions::from_str(url).expect("a Postgres URL");
        let server = format!("{}:{}", options.get_host(), options.get_port());
        let target = tokio::net::lookup_host(&server)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve the test Postgres at {server}"));
        let link = Self::to(target).await;
        assert!(
            url.contains(&format!("@{server}/")),
            "TEST_DATABASE_URL must name host and port: postgres://user@host:port/db"
        );
        let via = url.replacen(&format!("@{server}/"), &format!("@{}/", link.addr), 1);
        let config = DatabaseConfig {
            url: SecretString::from(via),
            ..database.clone()
        };
        (link, config)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The store is down: from now on connecting is refused, and every open connection is closed.
    pub async fn cut(&self) {
        let running = self.running.lock().expect("link state").take();
        if let Some((stop, task)) = running {
            stop.cancel();
            // Returns once the listener and every forwarded connection are dropped.
            let _ = task.await;
        }
    }

    /// The store is back, on the same port.
    pub async fn restore(&self) {
        if self.running.lock().expect("link state").is_some() {
            return;
        }
        let socket = TcpSocket::new_v4().expect("a socket");
        socket.set_reuseaddr(true).expect("SO_REUSEADDR");
        socket.bind(self.addr).expect("re-binding the link port");
        self.start(socket.listen(1024).expect("listening"));
    }

    fn start(&self, listener: TcpListener) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(forward(listener, self.target, stop.clone()));
        *self.running.lock().expect("link state") = Some((stop, task));
    }
}

async fn forward(listener: TcpListener, target: SocketAddr, stop: CancellationToken) {
    // Dropped on return: aborting every connection task closes both of its sockets.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => {
                while connections.try_join_next().is_some() {}
                let Ok((mut inbound, _)) = accepted else { continue };
                connections.spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        }
    }
}

/// Sends `request` and checks what a client must see while a store is down: 503 with a
/// `Retry-After` header and the JSON error `unavailable` — never a 500.
pub async fn expect_unavailable(request: reqwest::RequestBuilder) {
    expect_retry_later(request, "unavailable").await;
}

/// `request` is answered 503 with the error `code` and a Retry-After in seconds.
pub async fn expect_retry_later(request: reqwest::RequestBuilder, code: &str) {
    let r = request.send().await.expect("the service answered");
    let status = r.status().as_u16();
    let retry_after = r.headers().get("retry-after").cloned();
    let body: serde_json::Value = r.json().await.expect("a JSON body");
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some(code)),
        "{body}"
    );
    let secs = retry_after.and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    assert!(secs.is_some_and(|s| s > 0), "no Retry-After in seconds");
}
