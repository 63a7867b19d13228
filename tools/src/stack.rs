//! The whole shop as REAL PROCESSES, for end-to-end tests and the `chaos` tool.
//!
//! [`Stack::start`] takes a Postgres admin URL and a Redis URL, creates five fresh databases with
//! unique names, picks free loopback ports, starts the six service binaries found next to the
//! current executable (tests run from `target/<profile>/deps/`, the binaries live in
//! `target/<profile>/`), each with its own Redis stream, dead-letter stream and consumer group so
//! that stacks running in parallel never see each other's orders, and waits for every
//! `/health/ready`.
//!
//! It can then `kill -9` any process ([`Stack::kill9`]), start it again on the same port with the
//! same environment ([`Stack::restart`]), pause and resume one ([`Stack::pause`]: SIGSTOP), and
//! add mediator replicas ([`Stack::start_extra_mediator`]). With [`StackConfig::fault_proxies`]
//! the mediators reach each participant through an in-process [`FaultProxy`] ([`Stack::proxy`]),
//! for network faults.
//!
//! No orphans, whatever happens to the caller: the processes are started by [`crate::procs`] (own
//! process group, parent-death signal), `kill_on_drop`, and [`Drop`] kills every group, so a
//! failing test (a panic) stops its stack. Children are spawned from runtime worker or test
//! threads, which live as long as the stack (the parent-death signal follows the spawning thread).
//!
//! Logs: one file per process (`<instance>.log`, appended across restarts) in a per-stack
//! directory under the system temp dir. They are removed by [`Stack::shutdown`] and by a quiet
//! drop, and kept (and their tails printed) when the stack is dropped during a panic, after
//! [`Stack::keep_logs`], or always with `SAGA_KEEP_LOGS=1`.
//!
//! Stacks are heavy (six processes, five databases): how many run at once is bounded by nextest's
//! test groups (`.config/nextest.toml`), and the timing-sensitive tests run alone there.

pub use crate::procs::{Database, Service, default_bin_dir};
use crate::{
    audit::Dbs,
    client::Endpoints,
    procs::{
        ProcSpec, check_binaries, kill_and_reap, kill_group, local_url, pick_ports, random_secret,
        spawn_process,
    },
    proxy::FaultProxy,
};
use anyhow::{Context, Result, anyhow, bail};
use futures::future::try_join_all;
use shop_common::domain::Money;
use sqlx::{
    Connection, PgConnection, PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::ExitStatus,
    str::FromStr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::process::Child;

/// What a stack is started with. [`StackConfig::from_test_env`] for tests.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// A Postgres URL whose user may `CREATE DATABASE`, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
    pub admin_url: String,
    pub redis_url: String,
    /// Where the six binaries are; default: next to the current executable (`SAGA_BIN_DIR` overrides).
    pub bin_dir: Option<PathBuf>,
    /// `ITEM_STOCK`: every catalog item starts with this many.
    pub item_stock: i64,
    /// `SLOT_CAPACITY`: every delivery slot starts with this many couriers.
    pub slot_capacity: i64,
    /// `INITIAL_WALLET`, in cents.
    pub initial_wallet_cents: i64,
    /// Mediator processes started with the stack: `mediator`, then `mediator-2`, `mediator-3`, ...
    pub mediators: usize,
    /// Extra environment for every service (after the stack's own, so it may override it).
    pub env: Vec<(String, String)>,
    /// Extra environment for one service's processes.
    pub service_env: Vec<(Service, String, String)>,
    /// `RUST_LOG` of the services (`SAGA_STACK_RUST_LOG` overrides the default).
    pub rust_log: String,
    /// `DB_MAX_CONNECTIONS` of each service: 16 (the services' default) with [`StackConfig::new`],
    /// 6 with [`StackConfig::from_test_env`] (parallel test stacks share one Postgres, and
    /// `make test`'s allows 300 connections).
    pub db_max_connections: u32,
    /// How long a process may take to answer `/health/ready` after it is spawned.
    pub ready_timeout: Duration,
    /// Put a [`FaultProxy`] between the mediators and each participant (their BILLING_URL,
    /// ITEMS_URL and SLOTS_URL point at it; the other services call the participants directly).
    pub fault_proxies: bool,
}

impl StackConfig {
    pub fn new(admin_url: impl Into<String>, redis_url: impl Into<String>) -> Self {
        Self {
            admin_url: admin_url.into(),
            redis_url: redis_url.into(),
            bin_dir: None,
            item_stock: 1000,
            slot_capacity: 1000,
            initial_wallet_cents: 10_000,
            mediators: 1,
            env: Vec::new(),
            service_env: Vec::new(),
            rust_log: std::env::var("SAGA_STACK_RUST_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn".to_owned()),
            db_max_connections: 16,
            ready_timeout: Duration::from_secs(60),
            fault_proxies: false,
        }
    }

    /// The test Postgres and Redis from `TEST_DATABASE_URL` / `TEST_REDIS_URL` (`make test` provides
    /// them). Panics with instructions when they are missing: an end-to-end test must fail, never
    /// skip, without its stores.
    pub fn from_test_env() -> Self {
        let db = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
            panic!(
                "TEST_DATABASE_URL is not set: the end-to-end tests start the real services against a \
                 real Postgres. Run `make test` (it starts a private one), or export \
                 TEST_DATABASE_URL=postgres://postgres@127.0.0.1:<port>/postgres"
            )
        });
        let redis = std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| {
            panic!(
                "TEST_REDIS_URL is not set: the end-to-end tests need a real Redis. Run `make test` \
                 (it starts a private one), or export TEST_REDIS_URL=redis://127.0.0.1:<port>"
            )
        });
        let mut config = Self::new(db, redis);
        config.db_max_connections = 6;
        config
    }

    pub fn env(mut self, key: &str, value: impl ToString) -> Self {
        self.env.push((key.to_owned(), value.to_string()));
        self
    }

    pub fn service_env(mut self, service: Service, key: &str, value: impl ToString) -> Self {
        self.service_env
            .push((service, key.to_owned(), value.to_string()));
        self
    }

    pub fn mediators(mut self, n: usize) -> Self {
        self.mediators = n.max(1);
        self
    }

    pub fn fault_proxies(mut self) -> Self {
        self.fault_proxies = true;
        self
    }
}

/// Per consumer, the entry counts of an `XPENDING <stream> <group>` summary reply:
/// `[count, first id, last id, [[consumer, count], ...]]` (no consumers when nothing is pending).
pub fn pending_counts(summary: &redis::Value) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    if let redis::Value::Array(parts) = summary
        && let Some(redis::Value::Array(consumers)) = parts.get(3)
    {
        for c in consumers {
            if let redis::Value::Array(pair) = c
                && let [name, count] = pair.as_slice()
            {
                let name: String = redis::from_redis_value_ref(name)?;
                let count: u64 = redis::from_redis_value_ref(count)?;
                out.insert(name, count);
            }
        }
    }
    Ok(out)
}

/// The Redis names a stack's order API and mediators use (unique per stack).
#[derive(Debug, Clone)]
pub struct Streams {
    pub orders: String,
    pub dead_letters: String,
    pub group: String,
}

#[derive(Debug)]
enum ProcState {
    Running(Child),
    /// Killed by the harness (kill9) or never restarted.
    Stopped,
    /// Exited on its own: noticed by [`Stack::crashed`] or a readiness wait.
    Exited(ExitStatus),
}

#[derive(Debug)]
struct Proc {
    spec: ProcSpec,
    state: ProcState,
    starts: u32,
}

/// A running stack. Dropping it kills every process; call [`Stack::shutdown`] for a clean end
/// (it also drops the databases and the Redis streams).
pub struct Stack {
    id: String,
    config: StackConfig,
    bin_dir: PathBuf,
    log_dir: PathBuf,
    databases: BTreeMap<Database, (String, String)>,
    streams: Streams,
    secrets: (String, String),
    procs: Mutex<BTreeMap<String, Proc>>,
    /// The mediators' fault proxies, by participant (`billing`, `items`, `slots`).
    proxies: Mutex<BTreeMap<String, Arc<FaultProxy>>>,
    http: reqwest::Client,
    started: Instant,
    keep_logs: AtomicBool,
    stopped: AtomicBool,
}

impl Stack {
    /// Creates the databases and starts the six services (plus `config.mediators - 1` mediator
    /// replicas); returns once every process answers `/health/ready`.
    pub async fn start(config: StackConfig) -> Result<Stack> {
        let bin_dir = match &config.bin_dir {
            Some(dir) => dir.clone(),
            None => default_bin_dir()?,
        };
        check_binaries(&bin_dir)?;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let log_dir = std::env::temp_dir()
            .join("saga-stacks")
            .join(format!("stack-{id}"));
        std::fs::create_dir_all(&log_dir)
            .with_context(|| format!("creating the log directory {}", log_dir.display()))?;

        ping_redis(&config.redis_url).await?;
        let databases = create_databases(&config.admin_url, &id).await?;
        let streams = Streams {
            orders: format!("orders-{id}"),
            dead_letters: format!("orders.dead-{id}"),
            group: format!("mediator-{id}"),
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the readiness HTTP client")?;
        let stack = Stack {
            secrets: (random_secret(), random_secret()),
            id,
            config,
            bin_dir,
            log_dir,
            databases,
            streams,
            procs: Mutex::new(BTreeMap::new()),
            proxies: Mutex::new(BTreeMap::new()),
            http,
            started: Instant::now(),
            keep_logs: AtomicBool::new(false),
            stopped: AtomicBool::new(false),
        };
        stack.boot().await.inspect_err(|_| {
            stack.keep_logs.store(true, Ordering::Relaxed);
        })?;
        Ok(stack)
    }

    /// Spawns every process and waits until all are ready. A port taken in the meantime by someone
    /// else (we pick ports, then the services bind them) makes the whole boot retry on new ports.
    async fn boot(&self) -> Result<()> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let ports = pick_ports(5 + self.config.mediators)?;
            let (fixed, mediator_ports) = ports.split_at(5);
            let port_of = |svc: Service| match svc {
                Service::Auth => fixed[0],
                Service::Billing => fixed[1],
                Service::Order => fixed[2],
                Service::Items => fixed[3],
                Service::Slots => fixed[4],
                Service::Mediator => mediator_ports[0],
            };
            let urls = ServiceUrls {
                billing: local_url(port_of(Service::Billing)),
                items: local_url(port_of(Service::Items)),
                slots: local_url(port_of(Service::Slots)),
            };
            let mediator_urls = if self.config.fault_proxies {
                let mut proxies = BTreeMap::new();
                let listen = pick_ports(3)?;
                let participants = [Service::Billing, Service::Items, Service::Slots];
                for (svc, port) in participants.into_iter().zip(listen) {
                    let proxy = FaultProxy::start(
                        svc.name(),
                        SocketAddr::from(([127, 0, 0, 1], port)),
                        SocketAddr::from(([127, 0, 0, 1], port_of(svc))),
                    )
                    .await?;
                    proxies.insert(svc.name().to_owned(), Arc::new(proxy));
                }
                let urls = ServiceUrls {
                    billing: proxies["billing"].url(),
                    items: proxies["items"].url(),
                    slots: proxies["slots"].url(),
                };
                *self.proxies.lock().unwrap_or_else(|e| e.into_inner()) = proxies;
                urls
            } else {
                urls.clone()
            };
            let mut specs = Vec::new();
            for svc in Service::ALL {
                let urls = if svc == Service::Mediator {
                    &mediator_urls
                } else {
                    &urls
                };
                // A mediator's consumer name is its instance name (the first is `mediator`), so
                // that what XPENDING says a consumer holds can be read per instance.
                let consumer = (svc == Service::Mediator).then_some(svc.name());
                specs.push((
                    svc.name().to_owned(),
                    self.spec(svc, port_of(svc), urls, consumer),
                ));
            }
            for (i, port) in mediator_ports.iter().enumerate().skip(1) {
                let name = format!("mediator-{}", i + 1);
                let spec = self.spec(Service::Mediator, *port, &mediator_urls, Some(&name));
                specs.push((name, spec));
            }
            {
                let mut procs = self.lock();
                procs.clear();
                for (name, spec) in specs {
                    procs.insert(
                        name,
                        Proc {
                            spec,
                            state: ProcState::Stopped,
                            starts: 0,
                        },
                    );
                }
            }
            let names = self.instances();
            for name in &names {
                self.spawn(name)?;
            }
            match try_join_all(names.iter().map(|n| self.wait_ready(n))).await {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let port_clash = names.iter().any(|n| {
                        self.log_tail(n, 20)
                            .is_some_and(|t| t.contains("Address already in use"))
                    });
                    self.kill_all().await;
                    if port_clash && attempt < 3 {
                        eprintln!(
                            "stack {}: a port was taken meanwhile; retrying on new ports",
                            self.id
                        );
                        continue;
                    }
                    return Err(e.context(format!(
                        "starting stack {} (logs in {})",
                        self.id,
                        self.log_dir.display()
                    )));
                }
            }
        }
    }

    /// The environment of one process.
    fn spec(
        &self,
        service: Service,
        port: u16,
        urls: &ServiceUrls,
        consumer: Option<&str>,
    ) -> ProcSpec {
        let c = &self.config;
        let db_url = &self.databases[&service.database()].1;
        let mut env: Vec<(String, String)> = vec![
            ("LISTEN_ADDR".into(), format!("127.0.0.1:{port}")),
            ("DATABASE_URL".into(), db_url.clone()),
            ("REDIS_URL".into(), c.redis_url.clone()),
            ("JWT_SECRET".into(), self.secrets.0.clone()),
            ("INTERNAL_TOKEN".into(), self.secrets.1.clone()),
            ("BILLING_URL".into(), urls.billing.clone()),
            ("ITEMS_URL".into(), urls.items.clone()),
            ("SLOTS_URL".into(), urls.slots.clone()),
            ("ORDERS_STREAM".into(), self.streams.orders.clone()),
            (
                "DEAD_LETTER_STREAM".into(),
                self.streams.dead_letters.clone(),
            ),
            ("CONSUMER_GROUP".into(), self.streams.group.clone()),
            ("ITEM_STOCK".into(), c.item_stock.to_string()),
            ("SLOT_CAPACITY".into(), c.slot_capacity.to_string()),
            (
                "INITIAL_WALLET".into(),
                Money::from_minor(c.initial_wallet_cents).to_string(),
            ),
            (
                "DB_MAX_CONNECTIONS".into(),
                c.db_max_connections.to_string(),
            ),
            ("LOG_FORMAT".into(), "pretty".into()),
            ("RUST_LOG".into(), c.rust_log.clone()),
        ];
        if let Some(name) = consumer {
            env.push(("CONSUMER_NAME".into(), name.to_owned()));
        }
        env.extend(c.env.iter().cloned());
        env.extend(
            c.service_env
                .iter()
                .filter(|(s, _, _)| *s == service)
                .map(|(_, k, v)| (k.clone(), v.clone())),
        );
        let instance = consumer.unwrap_or(service.name());
        ProcSpec {
            service,
            program: self.bin_dir.join(service.name()),
            port,
            env,
            log: self.log_dir.join(format!("{instance}.log")),
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Proc>> {
        // A panic while holding the lock cannot leave the map half-updated (each update is one
        // assignment), so a poisoned lock is still usable — and Drop must always get it.
        self.procs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Spawns `instance` (which must not be running); does not wait for readiness.
    fn spawn(&self, instance: &str) -> Result<()> {
        let mut procs = self.lock();
        let proc = procs
            .get_mut(instance)
            .with_context(|| format!("no process named {instance:?} in this stack"))?;
        if matches!(proc.state, ProcState::Running(_)) {
            bail!("{instance} is already running");
        }
        proc.starts += 1;
        let child = spawn_process(instance, &proc.spec, proc.starts, self.started.elapsed())?;
        proc.state = ProcState::Running(child);
        Ok(())
    }

    /// Waits for `instance`'s `/health/ready`; fails (with its log's tail) if it exits meanwhile or
    /// does not get ready within the configured timeout.
    pub async fn wait_ready(&self, instance: &str) -> Result<()> {
        let url = format!("{}/health/ready", self.instance_url(instance)?);
        let log = self.log_dir.join(format!("{instance}.log"));
        crate::procs::wait_ready(
            &self.http,
            instance,
            &url,
            self.config.ready_timeout,
            || self.reap(instance),
            &log,
        )
        .await
    }

    /// If `instance` was running and has exited on its own, records and returns its exit status.
    /// Errors if it is not running (stopped by the harness).
    fn reap(&self, instance: &str) -> Result<Option<ExitStatus>> {
        let mut procs = self.lock();
        let proc = procs
            .get_mut(instance)
            .with_context(|| format!("no process named {instance:?}"))?;
        match &mut proc.state {
            ProcState::Running(child) => match child.try_wait() {
                Ok(Some(status)) => {
                    proc.state = ProcState::Exited(status);
                    Ok(Some(status))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(anyhow!(e).context(format!("checking on {instance}"))),
            },
            ProcState::Exited(status) => Ok(Some(*status)),
            ProcState::Stopped => bail!("{instance} is not running"),
        }
    }

    /// Processes that exited without being killed by the harness since the last call (each
    /// reported once; they stay down until restarted). A service dying on its own is a bug.
    pub fn crashed(&self) -> Vec<(String, ExitStatus)> {
        let mut out = Vec::new();
        let mut procs = self.lock();
        for (name, proc) in procs.iter_mut() {
            if let ProcState::Running(child) = &mut proc.state
                && let Ok(Some(status)) = child.try_wait()
            {
                proc.state = ProcState::Exited(status);
                out.push((name.clone(), status));
            }
        }
        out
    }

    /// `kill -9` of the process (and its process group); returns once it is gone. A process that
    /// already exited on its own is an error (a crash the caller should know about).
    pub async fn kill9(&self, instance: &str) -> Result<()> {
        let child = {
            let mut procs = self.lock();
            let proc = procs
                .get_mut(instance)
                .with_context(|| format!("no process named {instance:?}"))?;
            match std::mem::replace(&mut proc.state, ProcState::Stopped) {
                ProcState::Running(child) => child,
                ProcState::Stopped => bail!("{instance} is not running"),
                ProcState::Exited(status) => {
                    proc.state = ProcState::Exited(status);
                    bail!("{instance} had already exited on its own ({status})")
                }
            }
        };
        kill_and_reap(instance, child).await
    }

    /// Starts a stopped (killed or crashed) process again, on its port, with its environment, and
    /// waits until it is ready.
    pub async fn start_instance(&self, instance: &str) -> Result<()> {
        self.spawn(instance)?;
        self.wait_ready(instance).await
    }

    /// `kill -9` (if running), then start again and wait until ready.
    pub async fn restart(&self, instance: &str) -> Result<()> {
        if self.is_running(instance) {
            self.kill9(instance).await?;
        }
        self.start_instance(instance).await
    }

    /// One more mediator process (its `CONSUMER_NAME` is `name`, also its instance name).
    pub async fn start_extra_mediator(&self, name: &str) -> Result<()> {
        let urls = {
            let procs = self.lock();
            if procs.contains_key(name) {
                bail!("a process named {name:?} already exists");
            }
            let template = procs.get("mediator").context("the stack has no mediator")?;
            ServiceUrls::from_env(&template.spec.env)
        };
        let spec = self.spec(Service::Mediator, pick_ports(1)?[0], &urls, Some(name));
        self.lock().insert(
            name.to_owned(),
            Proc {
                spec,
                state: ProcState::Stopped,
                starts: 0,
            },
        );
        self.start_instance(name).await
    }

    /// `SIGSTOP` to the process (its whole group): it stays alive, holds its connections and
    /// its stream entries, and does nothing until [`Stack::resume`].
    pub fn pause(&self, instance: &str) -> Result<()> {
        self.signal_group(instance, libc::SIGSTOP)
    }

    /// `SIGCONT` after [`Stack::pause`].
    pub fn resume(&self, instance: &str) -> Result<()> {
        self.signal_group(instance, libc::SIGCONT)
    }

    fn signal_group(&self, instance: &str, sig: libc::c_int) -> Result<()> {
        let pid = self
            .pid(instance)
            .with_context(|| format!("{instance} is not running"))?;
        crate::procs::signal_group(pid, sig).with_context(|| format!("signalling {instance}"))
    }

    /// The fault proxy in front of `participant` (`billing`, `items` or `slots`), when the stack
    /// was started with [`StackConfig::fault_proxies`].
    pub fn proxy(&self, participant: &str) -> Option<Arc<FaultProxy>> {
        self.proxies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(participant)
            .cloned()
    }

    pub fn is_running(&self, instance: &str) -> bool {
        matches!(
            self.lock().get(instance).map(|p| &p.state),
            Some(ProcState::Running(_))
        )
    }

    /// Every process name: `auth`, `billing`, `items`, `mediator`, `mediator-2`, ..., `order`, `slots`.
    pub fn instances(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    /// The mediator processes' names.
    pub fn mediators(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, p)| p.spec.service == Service::Mediator)
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The pid of a running process.
    pub fn pid(&self, instance: &str) -> Option<u32> {
        match &self.lock().get(instance)?.state {
            ProcState::Running(child) => child.id(),
            _ => None,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn config(&self) -> &StackConfig {
        &self.config
    }

    pub fn streams(&self) -> &Streams {
        &self.streams
    }

    pub fn log_dir(&self) -> &Path {
        &self.log_dir
    }

    /// Base URL of a service's first process, e.g. `http://127.0.0.1:23456`.
    pub fn url(&self, service: Service) -> String {
        self.instance_url(service.name())
            .unwrap_or_else(|_| unreachable!("every stack has all six services"))
    }

    pub fn instance_url(&self, instance: &str) -> Result<String> {
        let procs = self.lock();
        let proc = procs
            .get(instance)
            .with_context(|| format!("no process named {instance:?}"))?;
        Ok(local_url(proc.spec.port))
    }

    /// The public API, straight to each service (no gateway in a test stack).
    pub fn endpoints(&self) -> Endpoints {
        Endpoints {
            auth: self.url(Service::Auth),
            billing: self.url(Service::Billing),
            order: self.url(Service::Order),
            items: self.url(Service::Items),
            slots: self.url(Service::Slots),
        }
    }

    /// The URL of one of the stack's databases (for direct SQL checks).
    pub fn database_url(&self, db: Database) -> &str {
        &self.databases[&db].1
    }

    pub async fn connect(&self, db: Database) -> Result<PgPool> {
        let options = PgConnectOptions::from_str(self.database_url(db))
            .context("parsing a stack database URL")?;
        PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .with_context(|| format!("connecting to the stack's {} database", db.name()))
    }

    /// Entries delivered but not yet acknowledged, per mediator consumer (`XPENDING` summary).
    pub async fn pending_per_consumer(&self) -> Result<BTreeMap<String, u64>> {
        let client = redis::Client::open(self.config.redis_url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(&self.streams.orders)
            .arg(&self.streams.group)
            .query_async(&mut conn)
            .await
            .context("XPENDING")?;
        pending_counts(&summary)
    }

    /// The sagas a mediator process is running now (its `mediator_sagas_in_flight` gauge; 0
    /// before its first saga).
    pub async fn sagas_in_flight(&self, mediator: &str) -> Result<u64> {
        let url = format!("{}/metrics", self.instance_url(mediator)?);
        let metrics = self
            .http
            .get(&url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("GET {url}"))?
            .text()
            .await
            .with_context(|| format!("reading {url}"))?;
        let gauge = metrics
            .lines()
            .find_map(|line| line.strip_prefix("mediator_sagas_in_flight "))
            .map_or(Ok(0.0), |value| value.trim().parse::<f64>())
            .with_context(|| format!("mediator_sagas_in_flight of {mediator}"))?;
        Ok(gauge as u64)
    }

    /// Pools on the databases the audit reads.
    pub async fn dbs(&self) -> Result<Dbs> {
        Ok(Dbs {
            billing: self.connect(Database::Billing).await?,
            orders: self.connect(Database::Orders).await?,
            items: self.connect(Database::Items).await?,
            slots: self.connect(Database::Slots).await?,
        })
    }

    /// The last `lines` lines of a process's log.
    pub fn log_tail(&self, instance: &str, lines: usize) -> Option<String> {
        crate::procs::log_tail(&self.log_dir.join(format!("{instance}.log")), lines)
    }

    /// Keep the log directory when the stack goes away (e.g. after a failed check).
    pub fn keep_logs(&self) {
        self.keep_logs.store(true, Ordering::Relaxed);
    }

    async fn kill_all(&self) {
        let children: Vec<(String, Child)> = {
            let mut procs = self.lock();
            procs
                .iter_mut()
                .filter_map(
                    |(name, p)| match std::mem::replace(&mut p.state, ProcState::Stopped) {
                        ProcState::Running(child) => Some((name.clone(), child)),
                        other => {
                            p.state = other;
                            None
                        }
                    },
                )
                .collect()
        };
        for (name, child) in children {
            if let Err(e) = kill_and_reap(&name, child).await {
                eprintln!("stack {}: {e:#}", self.id);
            }
        }
    }

    /// Stops every process (SIGKILL to each process group, the fault proxies stay), keeping the
    /// databases and the streams: an audit after it reads books nothing can change any more.
    /// [`Stack::shutdown`] still cleans up afterwards.
    pub async fn stop_services(&self) {
        self.kill_all().await;
    }

    /// Stops every process, then drops the databases and the Redis streams, and removes the logs
    /// (unless [`Stack::keep_logs`] was called). Best effort: failures are printed, not returned.
    pub async fn shutdown(&self) {
        self.kill_all().await;
        self.stopped.store(true, Ordering::Relaxed);
        if let Err(e) = drop_databases(&self.config.admin_url, &self.databases).await {
            eprintln!("stack {}: dropping its databases: {e:#}", self.id);
        }
        let keys = [&self.streams.orders, &self.streams.dead_letters];
        if let Err(e) = delete_redis_keys(&self.config.redis_url, &keys).await {
            eprintln!("stack {}: deleting its Redis streams: {e:#}", self.id);
        }
        if self.keep_logs.load(Ordering::Relaxed) || std::env::var_os("SAGA_KEEP_LOGS").is_some() {
            eprintln!("stack {}: logs kept in {}", self.id, self.log_dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let mut procs = self.lock();
        for proc in procs.values_mut() {
            if let ProcState::Running(child) = &mut proc.state {
                if let Some(pid) = child.id() {
                    kill_group(pid);
                }
                // kill_on_drop also sends SIGKILL; tokio reaps the dropped child in the background.
                let _ = child.start_kill();
            }
            proc.state = ProcState::Stopped;
        }
        drop(procs);
        if self.stopped.load(Ordering::Relaxed) {
            return;
        }
        if std::thread::panicking() || self.keep_logs.load(Ordering::Relaxed) {
            if std::thread::panicking() {
                for name in self.instances() {
                    if let Some(tail) = self.log_tail(&name, 25) {
                        eprintln!("----- stack {}: end of {name}.log -----\n{tail}", self.id);
                    }
                }
            }
            eprintln!(
                "stack {}: logs kept in {}; databases stack_{}_* left for inspection",
                self.id,
                self.log_dir.display(),
                self.id
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.log_dir);
        }
    }
}

/// One service binary on its own, outside a [`Stack`], for tests of a single process (start-up
/// against stores that are not there yet): spawned like a stack's processes (own process group,
/// parent-death signal, killed on drop), on a free loopback port, with exactly the environment
/// given plus `LISTEN_ADDR`, its output in `log`.
pub struct LoneService {
    child: Child,
    pub port: u16,
    pub log: PathBuf,
}

impl LoneService {
    pub fn start(service: Service, env: Vec<(String, String)>, log: PathBuf) -> Result<Self> {
        let bin_dir = default_bin_dir()?;
        check_binaries(&bin_dir)?;
        let port = pick_ports(1)?[0];
        let mut env = env;
        env.push(("LISTEN_ADDR".into(), format!("127.0.0.1:{port}")));
        let spec = ProcSpec {
            service,
            program: bin_dir.join(service.name()),
            port,
            env,
            log,
        };
        let child = spawn_process(service.name(), &spec, 1, Duration::ZERO)?;
        Ok(Self {
            child,
            port,
            log: spec.log,
        })
    }

    pub fn url(&self) -> String {
        local_url(self.port)
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Result<Option<ExitStatus>> {
        self.child.try_wait().context("checking on the service")
    }

    /// Everything it has printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits at most `limit` for it to exit on its own.
    pub async fn wait_exit(&mut self, limit: Duration) -> Result<ExitStatus> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .with_context(|| format!("still running after {limit:?}"))?
            .context("waiting for the service to exit")
    }
}

impl Drop for LoneService {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            kill_group(pid);
        }
        let _ = self.child.start_kill();
    }
}

#[derive(Clone)]
struct ServiceUrls {
    billing: String,
    items: String,
    slots: String,
}

impl ServiceUrls {
    fn from_env(env: &[(String, String)]) -> Self {
        let get = |key: &str| {
            env.iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        Self {
            billing: get("BILLING_URL"),
            items: get("ITEMS_URL"),
            slots: get("SLOTS_URL"),
        }
    }
}

async fn ping_redis(url: &str) -> Result<()> {
    let client =
        redis::Client::open(url).with_context(|| format!("parsing the Redis URL {url}"))?;
    let mut conn = tokio::time::timeout(
        Duration::from_secs(5),
        client.get_multiplexed_async_connection(),
    )
    .await
    .map_err(|_| anyhow!("connecting to Redis at {url} timed out"))?
    .with_context(|| format!("cannot connect to Redis at {url}; is it running?"))?;
    let _: String = redis::cmd("PING")
        .query_async(&mut conn)
        .await
        .context("Redis PING")?;
    Ok(())
}

async fn delete_redis_keys(url: &str, keys: &[&String]) -> Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let _: i64 = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    Ok(())
}

/// `admin` with its database name replaced.
fn with_database(admin: &str, name: &str) -> Result<String> {
    let mut url = reqwest::Url::parse(admin).context("the Postgres admin URL is not a URL")?;
    url.set_path(&format!("/{name}"));
    Ok(url.to_string())
}

async fn admin_connection(admin: &str) -> Result<PgConnection> {
    tokio::time::timeout(Duration::from_secs(10), PgConnection::connect(admin))
        .await
        .map_err(|_| anyhow!("connecting to Postgres ({admin}) timed out"))?
        .with_context(|| format!("cannot connect to Postgres at {admin}; is it running?"))
}

/// Creates the five databases of a stack `id` (`stack_<id>_<name>`, empty: each service migrates
/// its own at startup); returns name and URL by database. Also for tests that build the databases
/// without the services (the audit's tests).
pub async fn create_databases(
    admin: &str,
    id: &str,
) -> Result<BTreeMap<Database, (String, String)>> {
    let mut conn = admin_connection(admin).await?;
    let mut out = BTreeMap::new();
    for db in Database::ALL {
        let name = format!("stack_{id}_{}", db.name());
        // `name` is built here from a UUID and a constant, never from input.
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let url = with_database(admin, &name)?;
        out.insert(db, (name, url));
    }
    Ok(out)
}

/// Drops databases made by [`create_databases`].
pub async fn drop_databases(admin: &str, dbs: &BTreeMap<Database, (String, String)>) -> Result<()> {
    let mut conn = admin_connection(admin).await?;
    for (name, _) in dbs.values() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .with_context(|| format!("DROP DATABASE {name}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_everything_but_the_name() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x").unwrap(),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h:1/postgres?sslmode=disable", "x").unwrap(),
            "postgres://u:p@h:1/x?sslmode=disable"
        );
    }
}
