//! The fault proxy: a loopback TCP proxy whose traffic can be made toxic at run time, for the
//! network faults of the `chaos` nemesis (the mediators reach each participant through one).
//!
//! The proxying and the toxics are the `noxious` crate's (the core of a Rust port of Toxiproxy);
//! this module starts proxies in-process and sets their toxics. A toxic acts on one direction:
//! `Upstream` is client -> server (the mediator's request), `Downstream` is server -> client (the
//! participant's reply).
//!
//! Changing the toxics RESTARTS the noxious proxy on the same port with the new set, which cuts
//! every open connection: noxious can re-link open connections to new toxics, but a re-linked
//! connection drops out of its bookkeeping (the old link's watcher removes it), so the next change
//! would miss it and a keep-alive connection could stay toxic, or clean, forever. A reset at each
//! change is a fault of its own (in-flight requests fail), bounded to the fault's start and end.
//!
//! What each fault of the nemesis uses (each is tested on its own in `tests/fault_proxy.rs`):
//! - [`lost_reply`]: downstream `timeout 0`: every reply byte is dropped, the connection stays
//!   open; the request did reach the server, the client sees its own timeout;
//! - [`latency`]: every chunk in one direction is held back that long (and dropped if the client
//!   hangs up first);
//! - [`blackhole`]: upstream `timeout 0`: requests never arrive.

use anyhow::{Context, Result, anyhow, ensure};
use noxious::{
    proxy::{ProxyConfig, ProxyRunner, Runner, Toxics},
    signal::{Close, Stop, Stopper},
    socket::TcpListener,
    toxic::{StreamDirection, Toxic, ToxicEvent, ToxicEventResult, ToxicKind},
};
use std::{net::SocketAddr, time::Duration};
use tokio::task::JoinHandle;

pub use noxious::toxic::StreamDirection as Direction;

/// One noxious proxy run, with a fixed set of toxics.
struct Running {
    stopper: Stopper,
    task: JoinHandle<()>,
    // Toxic events are never sent (a change restarts the run), but noxious' event listener ends
    // the whole proxy when this sender is dropped.
    _events: bmrng::RequestSender<ToxicEvent, ToxicEventResult>,
}

struct Inner {
    toxics: Vec<Toxic>,
    running: Option<Running>,
}

/// One proxy; dropping it stops it (connections in flight are cut).
pub struct FaultProxy {
    name: String,
    listen: SocketAddr,
    upstream: SocketAddr,
    inner: tokio::sync::Mutex<Inner>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .field("upstream", &self.upstream)
            .finish()
    }
}

impl FaultProxy {
    /// Listens on `listen` (a loopback address) and forwards every connection to `upstream`.
    /// Returns once the listener is bound.
    pub async fn start(name: &str, listen: SocketAddr, upstream: SocketAddr) -> Result<Self> {
        ensure!(
            listen.ip().is_loopback() && upstream.ip().is_loopback(),
            "fault proxies stay on loopback ({listen} -> {upstream})"
        );
        let proxy = Self {
            name: name.to_owned(),
            listen,
            upstream,
            inner: tokio::sync::Mutex::new(Inner {
                toxics: Vec::new(),
                running: None,
            }),
        };
        {
            let mut inner = proxy.inner.lock().await;
            inner.running = Some(proxy.run(&[]).await?);
        }
        Ok(proxy)
    }

    async fn run(&self, toxics: &[Toxic]) -> Result<Running> {
        let config = ProxyConfig {
            name: self.name.clone(),
            listen: self.listen.to_string(),
            upstream: self.upstream.to_string(),
            enabled: true,
            rand_seed: None,
        };
        let mut set = Toxics::empty();
        for t in toxics {
            match t.direction {
                StreamDirection::Upstream => set.upstream.push(t.clone()),
                StreamDirection::Downstream => set.downstream.push(t.clone()),
            }
        }
        // The previous run's listener is closed, but give the kernel a moment if it disagrees.
        let mut tries = 0;
        let (listener, info) = loop {
            match ProxyRunner::initialize_proxy::<TcpListener>(config.clone(), set.clone()).await {
                Ok(bound) => break bound,
                Err(e) if tries < 50 && e.kind() == std::io::ErrorKind::AddrInUse => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(anyhow!(e))
                        .with_context(|| format!("binding the {} fault proxy", self.name));
                }
            }
        };
        let (events, receiver) = bmrng::channel(1);
        let (stop, stopper) = Stop::new();
        // The closer only tells a proxy registry that the proxy is gone: we keep none.
        let (_close, closer) = Close::new();
        let name = self.name.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = ProxyRunner::run_proxy(listener, info, receiver, stop, closer).await {
                eprintln!("fault proxy {name}: {e}");
            }
        });
        Ok(Running {
            stopper,
            task,
            _events: events,
        })
    }

    /// Restarts the proxy with `change` applied to its toxics.
    async fn change(&self, change: impl FnOnce(&mut Vec<Toxic>) -> Result<()>) -> Result<()> {
        let mut inner = self.inner.lock().await;
        change(&mut inner.toxics)?;
        if let Some(old) = inner.running.take() {
            old.stopper.stop();
            old.task
                .await
                .with_context(|| format!("stopping the {} fault proxy", self.name))?;
        }
        let toxics = inner.toxics.clone();
        inner.running = Some(self.run(&toxics).await?);
        Ok(())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.listen
    }

    /// `http://<listen>`: what a client configured with a base URL points at.
    pub fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Adds a toxic (its name must be unique on this proxy); open connections are cut, new ones
    /// get it.
    pub async fn add(&self, toxic: Toxic) -> Result<()> {
        self.change(|toxics| {
            ensure!(
                toxics.iter().all(|t| t.name != toxic.name),
                "{}: a toxic named {:?} is already there",
                self.name,
                toxic.name
            );
            toxics.push(toxic);
            Ok(())
        })
        .await
    }

    pub async fn remove(&self, name: &str) -> Result<()> {
        self.change(|toxics| {
            let before = toxics.len();
            toxics.retain(|t| t.name != name);
            ensure!(
                toxics.len() < before,
                "{}: no toxic named {name:?}",
                self.name
            );
            Ok(())
        })
        .await
    }

    /// Removes every toxic: the proxy passes everything through again.
    pub async fn clear(&self) -> Result<()> {
        self.change(|toxics| {
            toxics.clear();
            Ok(())
        })
        .await
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(running) = self.inner.get_mut().running.take() {
            running.stopper.stop();
        }
    }
}

fn toxic(name: &str, direction: StreamDirection, kind: ToxicKind) -> Toxic {
    Toxic {
        kind,
        name: name.to_owned(),
        toxicity: 1.0,
        direction,
    }
}

/// Every chunk in `direction` is delayed by `ms`.
pub fn latency(name: &str, direction: StreamDirection, ms: u64) -> Toxic {
    toxic(
        name,
        direction,
        ToxicKind::Latency {
            latency: ms,
            jitter: 0,
        },
    )
}

/// The server's replies never reach the client; the connection stays open (the client times
/// out). Requests still go through, so the server acts on them.
pub fn lost_reply(name: &str) -> Toxic {
    toxic(
        name,
        StreamDirection::Downstream,
        ToxicKind::Timeout { timeout: 0 },
    )
}

/// Requests never reach the server; the connection stays open.
pub fn blackhole(name: &str) -> Toxic {
    toxic(
        name,
        StreamDirection::Upstream,
        ToxicKind::Timeout { timeout: 0 },
    )
}

/// Data in `direction` is dropped and the connection is closed `ms` after the toxic applies to it.
pub fn close_after(name: &str, direction: StreamDirection, ms: u64) -> Toxic {
    toxic(name, direction, ToxicKind::Timeout { timeout: ms })
}

/// At most `bytes` go through in `direction` on each connection, then it is closed.
pub fn limit_data(name: &str, direction: StreamDirection, bytes: u64) -> Toxic {
    toxic(name, direction, ToxicKind::LimitData { bytes })
}

/// Data in `direction` is cut into chunks of about `average_size` bytes, `delay_us` apart.
pub fn slicer(name: &str, direction: StreamDirection, average_size: u64, delay_us: u64) -> Toxic {
    toxic(
        name,
        direction,
        ToxicKind::Slicer {
            average_size,
            size_variation: 0,
            delay: delay_us,
        },
    )
}
