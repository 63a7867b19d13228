//! The fault proxy on its own (`tools::proxy`, over noxious): each toxic the nemesis uses does what
//! it says, against a tiny axum echo server started here that counts the requests it saw. No
//! stores needed. Waits are bounded and one-sided (a request with a timeout shorter than the
//! latency must time out; the server must have seen a request within a deadline), never "took
//! about N ms".

use axum::{Router, extract::State, routing::post};
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tools::proxy::{self, Direction, FaultProxy};

/// An echo server: `POST /echo` answers its body; counts the requests it handled.
struct Echo {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Echo {
        let hits = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/echo",
                post(
                    |State(hits): State<Arc<AtomicUsize>>, body: String| async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        body
                    },
                ),
            )
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Echo { addr, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Waits (at most 5 s) until the server has handled `n` requests.
    async fn saw(&self, n: usize) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.hits() >= n {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }
}

async fn proxy_to(echo: &Echo) -> FaultProxy {
    // A free loopback port: bind, read it, release it for the proxy.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    FaultProxy::start("echo", SocketAddr::from(([127, 0, 0, 1], port)), echo.addr)
        .await
        .unwrap()
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder().timeout(timeout).build().unwrap()
}

async fn echo(client: &reqwest::Client, proxy: &FaultProxy, body: &str) -> reqwest::Result<String> {
    client
        .post(format!("{}/echo", proxy.url()))
        .body(body.to_owned())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await
}

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn without_toxics_everything_passes() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    assert_eq!(
        echo(&client(SHORT), &proxy, "hello").await.unwrap(),
        "hello"
    );
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn upstream_latency_delays_the_request() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    proxy
        .add(proxy::latency("slow", Direction::Upstream, 1500))
        .await
        .unwrap();
    let err = echo(&client(SHORT), &proxy, "a").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let t = Instant::now();
    assert_eq!(echo(&client(LONG), &proxy, "b").await.unwrap(), "b");
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t.elapsed()
    );

    proxy.remove("slow").await.unwrap();
    assert_eq!(echo(&client(SHORT), &proxy, "c").await.unwrap(), "c");
}

#[tokio::test]
async fn downstream_latency_delays_the_reply_not_the_request() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    proxy
        .add(proxy::latency("slow", Direction::Downstream, 1500))
        .await
        .unwrap();
    let err = echo(&client(SHORT), &proxy, "a").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        server.hits(),
        1,
        "the request must have been served at once"
    );
    proxy.clear().await.unwrap();
    assert_eq!(echo(&client(SHORT), &proxy, "b").await.unwrap(), "b");
}

#[tokio::test]
async fn lost_reply_the_server_acts_the_client_gets_an_error() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    let client = client(Duration::from_millis(800));
    // A pooled keep-alive connection exists before the toxic: it must not escape it.
    assert_eq!(echo(&client, &proxy, "before").await.unwrap(), "before");
    proxy.add(proxy::lost_reply("lost")).await.unwrap();
    let err = echo(&client, &proxy, "lost").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(server.saw(2).await, "the server never saw the request");
    // Removed: the same client is answered again.
    proxy.remove("lost").await.unwrap();
    assert_eq!(echo(&client, &proxy, "after").await.unwrap(), "after");
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn blackhole_the_request_never_arrives() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    proxy.add(proxy::blackhole("hole")).await.unwrap();
    let err = echo(&client(SHORT), &proxy, "x").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(server.hits(), 0, "a blackholed request reached the server");
    proxy.clear().await.unwrap();
    assert_eq!(echo(&client(SHORT), &proxy, "y").await.unwrap(), "y");
    assert_eq!(
        server.hits(),
        1,
        "the blackholed bytes must be dropped, not delivered late"
    );
}

#[tokio::test]
async fn close_after_cuts_the_connection_without_a_reply() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    proxy
        .add(proxy::close_after("cut", Direction::Downstream, 200))
        .await
        .unwrap();
    let t = Instant::now();
    let err = echo(&client(LONG), &proxy, "x").await.unwrap_err();
    // Not the client's own 10 s timeout: the proxy closed the connection.
    assert!(!err.is_timeout(), "{err:?}");
    assert!(t.elapsed() < LONG, "{:?}", t.elapsed());
    assert!(
        server.saw(1).await,
        "the request went upstream before the cut"
    );
}

#[tokio::test]
async fn limit_data_truncates_the_reply() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    proxy
        .add(proxy::limit_data("limit", Direction::Downstream, 10))
        .await
        .unwrap();
    let err = echo(&client(LONG), &proxy, "a reply longer than ten bytes")
        .await
        .unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert!(server.saw(1).await);
}

#[tokio::test]
async fn slicer_keeps_the_data_intact() {
    let server = Echo::start().await;
    let proxy = proxy_to(&server).await;
    proxy
        .add(proxy::slicer("up", Direction::Upstream, 7, 200))
        .await
        .unwrap();
    proxy
        .add(proxy::slicer("down", Direction::Downstream, 5, 200))
        .await
        .unwrap();
    let body = "sliced into many small packets, and put back together in order".repeat(20);
    assert_eq!(echo(&client(LONG), &proxy, &body).await.unwrap(), body);
}
