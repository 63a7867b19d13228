//! The local stack of `make run`, `make test`'s e2e step and `make bench`:
//! the supervisor behind the `shop` binary. One state directory per stack (default `.state/run`)
//! holds everything it started: the PostgreSQL and Redis of [`crate::stores`] (`pg/`, `redis/`),
//! the six services (their output in `logs/<service>.log`), the nginx gateway (`nginx/`, its config
//! rendered from the Ingress by [`crate::gateway`]), `secrets.env`, and, once everything is ready,
//! `env`: a machine-readable description of the running stack (`set -a; . <state>/env`).
//!
//! The services are children of the supervisor, started by [`crate::procs`] like a test stack's:
//! own process group, parent-death signal. The supervisor runs in the foreground until SIGINT or
//! SIGTERM, then stops everything it started (gateway, services, stores). It installs its own
//! handlers, so a SIGINT reaches it even when a non-interactive shell started it in the background
//! with SIGINT ignored. `--background` starts a detached supervisor and returns once its stack is
//! ready. [`stop`] (`make stop`) asks the supervisor recorded in the state directory to stop.
//!
//! One supervisor per state directory (a lock file it holds while it runs), and never on a busy
//! port: both refused with a clear message before anything starts.

use crate::{
    gateway::{Routes, Upstreams},
    procs::{self, ProcSpec, Service},
    stores::{self, make_state_dir},
};
use anyhow::{Context, Result, bail, ensure};
use sqlx::{Connection, PgConnection};
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::{
    process::Child,
    signal::unix::{SignalKind, signal},
};

/// The databases of the stack, in creation order (the order API and the mediator share `orders`).
const DATABASES: [procs::Database; 5] = procs::Database::ALL;

/// How long the services get to drain after SIGTERM before SIGKILL.
const SERVICE_GRACE: Duration = Duration::from_secs(15);

/// The repository this binary was built from: the manifest, the gateway template, `.state/`.
pub fn repo_root() -> PathBuf {
    std::env::var_os("SAGA_REPO_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
}

/// Every port of a local stack (`GATEWAY_PORT`, `PG_PORT`, ... in the environment).
#[derive(clap::Args, Debug, Clone)]
pub struct Ports {
    #[arg(long, env = "GATEWAY_PORT", default_value_t = 8080)]
    pub gateway_port: u16,
    #[arg(long, env = "PG_PORT", default_value_t = 55432)]
    pub pg_port: u16,
    #[arg(long, env = "REDIS_PORT", default_value_t = 56379)]
    pub redis_port: u16,
    #[arg(long, env = "AUTH_PORT", default_value_t = 8001)]
    pub auth_port: u16,
    #[arg(long, env = "BILLING_PORT", default_value_t = 8002)]
    pub billing_port: u16,
    #[arg(long, env = "ORDER_PORT", default_value_t = 8003)]
    pub order_port: u16,
    #[arg(long, env = "MEDIATOR_PORT", default_value_t = 8004)]
    pub mediator_port: u16,
    #[arg(long, env = "ITEMS_PORT", default_value_t = 8005)]
    pub items_port: u16,
    #[arg(long, env = "SLOTS_PORT", default_value_t = 8006)]
    pub slots_port: u16,
}

impl Ports {
    pub fn service(&self, service: Service) -> u16 {
        match service {
            Service::Auth => self.auth_port,
            Service::Billing => self.billing_port,
            Service::Order => self.order_port,
            Service::Mediator => self.mediator_port,
            Service::Items => self.items_port,
            Service::Slots => self.slots_port,
        }
    }

    /// Every port with the name of its variable, in the order of the `env` file.
    fn named(&mut self) -> [(&'static str, &mut u16); 9] {
        [
            ("GATEWAY_PORT", &mut self.gateway_port),
            ("PG_PORT", &mut self.pg_port),
            ("REDIS_PORT", &mut self.redis_port),
            ("AUTH_PORT", &mut self.auth_port),
            ("BILLING_PORT", &mut self.billing_port),
            ("ORDER_PORT", &mut self.order_port),
            ("MEDIATOR_PORT", &mut self.mediator_port),
            ("ITEMS_PORT", &mut self.items_port),
            ("SLOTS_PORT", &mut self.slots_port),
        ]
    }
}

/// `shop run`'s settings.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// Start a detached supervisor, return once its stack is ready (stop it with `shop stop`).
    #[arg(long, short = 'b')]
    pub background: bool,
    /// Only PostgreSQL and Redis: stores for running the tests by hand (`<state>/env` gives
    /// `PG_URL` and `REDIS_URL` for `TEST_DATABASE_URL=$PG_URL/postgres TEST_REDIS_URL=$REDIS_URL`).
    #[arg(long)]
    pub stores_only: bool,
    /// A busy port is replaced by a free one of the project range instead of refused.
    #[arg(long)]
    pub free_ports: bool,
    /// Where everything the stack starts keeps its state (default: <repo>/.state/run).
    #[arg(long, env = "SAGA_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Where the six service binaries are (default: next to this program).
    #[arg(long, env = "BIN_DIR")]
    pub bin_dir: Option<PathBuf>,
    /// More PostgreSQL server options (`-c name=value ...`), e.g. the benchmark's tuning; they
    /// win over the stack's own.
    #[arg(long, env = "PG_EXTRA_OPTS", allow_hyphen_values = true)]
    pub pg_extra_opts: Option<String>,
    /// `1`: the services reach PostgreSQL over its Unix socket, not loopback TCP.
    #[arg(long, env = "PG_UNIX_SOCKET", default_value = "0")]
    pub pg_unix_socket: String,
    #[command(flatten)]
    pub ports: Ports,
}

impl RunArgs {
    fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| repo_root().join(".state/run"))
    }
}

/// The supervisor's own bookkeeping in the state directory.
fn supervisor_file(state: &Path) -> PathBuf {
    state.join("supervisor.pid")
}
fn lock_file(state: &Path) -> PathBuf {
    state.join(".supervisor.lock")
}

/// Field 22 of /proc/PID/stat (the start time): with the pid it names one process for good, so
/// that a pid reused since is never signalled.
fn start_time(pid: i32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(") ")?;
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// The live supervisor recorded in `state`, if any.
fn recorded_supervisor(state: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(supervisor_file(state)).ok()?;
    let mut parts = text.split_whitespace();
    let pid: i32 = parts.next()?.parse().ok()?;
    let started = parts.next()?;
    (procs::pid_alive(pid) && start_time(pid).as_deref() == Some(started)).then_some(pid)
}

/// `shop run`: start the stack and supervise it until SIGINT/SIGTERM (or, with `--background`,
/// hand it to a detached supervisor). Returns the exit code.
pub async fn run(mut args: RunArgs) -> Result<i32> {
    let state = args.state_dir();
    make_state_dir(&repo_root().join(".state"))?;
    make_state_dir(&state)?;
    let state = state.canonicalize()?;
    if args.background {
        return run_in_background(&state).await;
    }
    let ports = ports_to_use(&mut args)?;
    let lock = File::create(lock_file(&state)).context("creating the supervisor lock")?;
    if lock.try_lock().is_err() {
        let holder = recorded_supervisor(&state)
            .map(|pid| format!(" (pid {pid})"))
            .unwrap_or_default();
        bail!(
            "another supervisor{holder} is starting or running from {} — is `make run` already \
             running? stop it (Ctrl-C or `make stop`) first",
            state.display()
        );
    }
    let running = stores::running_components(&state);
    ensure!(
        running.is_empty(),
        "a stack started from {} is already running ({}) — is `make run` already running? stop it \
         (Ctrl-C or `make stop`) first",
        state.display(),
        running.join(", ")
    );
    let me = std::process::id() as i32;
    std::fs::write(
        supervisor_file(&state),
        format!("{me} {}\n", start_time(me).unwrap_or_default()),
    )
    .context("recording the supervisor")?;
    let _ = std::fs::remove_file(state.join("env"));

    let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
    let mut stack = LocalStack {
        state: state.clone(),
        ports,
        services: BTreeMap::new(),
    };
    let started = tokio::select! {
        started = stack.start(&args) => started,
        _ = interrupt.recv() => Err(anyhow::anyhow!("interrupted during start-up")),
        _ = terminate.recv() => Err(anyhow::anyhow!("terminated during start-up")),
    };
    let code = match started {
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
        Ok(()) => {
            if !args.stores_only {
                print_banner(&state, &stack.ports);
            }
            stack.watch(&mut interrupt, &mut terminate).await;
            eprintln!("==> stopping the saga shop ({})", state.display());
            0
        }
    };
    stack.stop().await;
    let _ = std::fs::remove_file(state.join("env"));
    let _ = std::fs::remove_file(supervisor_file(&state));
    drop(lock);
    Ok(code)
}

/// The ports to start on: each free one as configured; a busy one refused, or with
/// `--free-ports` replaced by a free one of the project range. Never the same port twice.
fn ports_to_use(args: &mut RunArgs) -> Result<Ports> {
    let stores_only = args.stores_only;
    let mut ports = args.ports.clone();
    let mut seen = BTreeMap::new();
    for (name, port) in ports.named() {
        let needed = !stores_only || name == "PG_PORT" || name == "REDIS_PORT";
        if !needed {
            continue;
        }
        if let Some(other) = seen.insert(*port, name) {
            bail!("the same port {port} is configured twice: {other} and {name}");
        }
    }
    for (name, port) in ports.named() {
        let needed = !stores_only || name == "PG_PORT" || name == "REDIS_PORT";
        if !needed || procs::port_free(*port) {
            continue;
        }
        ensure!(
            args.free_ports,
            "port {port} ({name}) is in use — is `make run` already running? stop it (Ctrl-C or \
             `make stop`) or set {name} to another port"
        );
        *port = procs::pick_ports(1)?[0];
    }
    Ok(ports)
}

/// Starts a detached supervisor (own session, output in `<state>/supervisor.log`) with the same
/// arguments minus `--background`, and waits until its stack is ready or it gives up.
async fn run_in_background(state: &Path) -> Result<i32> {
    let exe = std::env::current_exe().context("locating this program")?;
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--background" && a != "-b")
        .collect();
    let log_path = state.join("supervisor.log");
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(&args)
        .env("SAGA_STATE_DIR", state)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe and allocates nothing.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().context("starting the supervisor")?;
    let marker = format!("SUPERVISOR_PID={}", child.id());
    let env_file = state.join("env");
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if std::fs::read_to_string(&env_file).is_ok_and(|env| env.contains(&marker)) {
            eprintln!(
                "==> running in the background (env: {}; stop: make stop / shop stop --state-dir {})",
                env_file.display(),
                state.display()
            );
            return Ok(0);
        }
        if let Some(status) = child.try_wait()? {
            eprintln!(
                "error: the supervisor exited during start-up ({status}); end of {}:\n{}",
                log_path.display(),
                procs::log_tail(&log_path, 40).unwrap_or_default()
            );
            return Ok(1);
        }
        ensure!(
            Instant::now() < deadline,
            "the supervisor (pid {}) did not get its stack ready within 10 minutes; see {}",
            child.id(),
            log_path.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The ports of a stack started by [`start_in_background`]: `base` + 80 for the gateway, + 1..6
/// for the services, + 432 for PostgreSQL, + 379 for Redis (18xxx for `make test`'s e2e stack,
/// 28xxx for `make bench`); a busy one is replaced by a free one.
fn ports_from(base: u16) -> [(&'static str, u16); 9] {
    [
        ("GATEWAY_PORT", base + 80),
        ("AUTH_PORT", base + 1),
        ("BILLING_PORT", base + 2),
        ("ORDER_PORT", base + 3),
        ("MEDIATOR_PORT", base + 4),
        ("ITEMS_PORT", base + 5),
        ("SLOTS_PORT", base + 6),
        ("PG_PORT", base + 432),
        ("REDIS_PORT", base + 379),
    ]
}

/// `shop run --background` of the `shop` in `bin_dir` (so the stack runs that build's services),
/// after removing what an interrupted run left in `state`; `env` goes to the supervisor and the
/// services. Returns `<state>/env`, the description of the running stack (`BASE_URL`, ...).
pub async fn start_in_background(
    bin_dir: &Path,
    state: &Path,
    port_base: u16,
    env: &[(&str, String)],
) -> Result<BTreeMap<String, String>> {
    stop(state, true).await?;
    let status = tokio::process::Command::new(bin_dir.join("shop"))
        .args(["run", "--background", "--free-ports"])
        .env("SAGA_STATE_DIR", state)
        .envs(ports_from(port_base).map(|(name, port)| (name, port.to_string())))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .await
        .context("starting `shop run --background`")?;
    ensure!(
        status.success(),
        "`shop run --background` failed ({status})"
    );
    let path = state.join("env");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// What one supervisor started.
struct LocalStack {
    state: PathBuf,
    ports: Ports,
    services: BTreeMap<Service, (Child, PathBuf)>,
}

impl LocalStack {
    async fn start(&mut self, args: &RunArgs) -> Result<()> {
        let pg_bin = stores::find_pg_bin()?;
        let bin_dir = match &args.bin_dir {
            Some(dir) => dir.clone(),
            None => procs::default_bin_dir()?,
        };
        if !args.stores_only {
            procs::check_binaries(&bin_dir)?;
        }
        let (state, pg_port, redis_port) = (
            self.state.clone(),
            self.ports.pg_port,
            self.ports.redis_port,
        );
        let extra = args.pg_extra_opts.clone();
        let pg_dir = state.join("pg");
        let (postgres, redis) = tokio::task::spawn_blocking({
            let state = state.clone();
            move || -> Result<_> {
                let postgres =
                    stores::start_postgres(&state.join("pg"), pg_port, &pg_bin, extra.as_deref())?;
                let redis = stores::start_redis(&state.join("redis"), redis_port)?;
                Ok((postgres, redis))
            }
        })
        .await
        .context("the store start task")??;
        let admin = format!("postgres://postgres@127.0.0.1:{pg_port}/postgres");
        create_databases(&admin).await?;

        let mut env = vec![
            format!("PG_URL=postgres://postgres@127.0.0.1:{pg_port}"),
            format!("REDIS_URL={}", redis.url),
            format!("PG_DATA={}", postgres.data.display()),
            format!("PG_BIN={}", postgres.bin.display()),
            format!("REDIS_DIR={}", redis.dir.display()),
        ];
        if !args.stores_only {
            let socket_dir = (args.pg_unix_socket == "1").then(|| stores::pg_home(&pg_dir));
            self.start_services(&bin_dir, socket_dir.as_deref(), &redis.url)
                .await?;
            let upstreams: Upstreams = Service::ALL
                .into_iter()
                .map(|s| {
                    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.ports.service(s)));
                    (s.name().to_owned(), addr)
                })
                .collect();
            let gateway_dir = state.join("nginx");
            let gateway_port = self.ports.gateway_port;
            tokio::task::spawn_blocking(move || {
                start_gateway(&gateway_dir, gateway_port, &upstreams)
            })
            .await
            .context("the gateway start task")??;
            env.push(format!("BASE_URL=http://127.0.0.1:{gateway_port}"));
            env.push(format!(
                "SECRETS_FILE={}",
                state.join("secrets.env").display()
            ));
            env.push(format!("BIN_DIR={}", bin_dir.display()));
            for service in Service::ALL {
                env.push(format!(
                    "{}_URL={}",
                    service.name().to_uppercase(),
                    procs::local_url(self.ports.service(service))
                ));
            }
        }
        env.push(format!("STATE_DIR={}", state.display()));
        for (name, port) in self.ports.named() {
            env.push(format!("{name}={port}"));
        }
        env.push(format!("SUPERVISOR_PID={}", std::process::id()));
        let tmp = state.join("env.tmp");
        std::fs::write(&tmp, env.join("\n") + "\n").context("writing env")?;
        std::fs::rename(&tmp, state.join("env")).context("writing env")?;
        Ok(())
    }

    /// Starts the six services (environment as in production: ../deploy-services.yml) and waits
    /// for each `/health/ready`.
    async fn start_services(
        &mut self,
        bin_dir: &Path,
        pg_socket_dir: Option<&Path>,
        redis_url: &str,
    ) -> Result<()> {
        let (jwt, internal) = ensure_secrets(&self.state)?;
        let logs = self.state.join("logs");
        std::fs::create_dir_all(&logs).context("creating logs/")?;
        let pg_port = self.ports.pg_port;
        if let Some(dir) = pg_socket_dir {
            let socket = dir.join(format!(".s.PGSQL.{pg_port}"));
            ensure!(
                socket.exists(),
                "PG_UNIX_SOCKET=1 but there is no Postgres socket {}",
                socket.display()
            );
        }
        // The services get the caller's environment (ITEM_STOCK, TOKIO_WORKER_THREADS, ...) plus
        // the stack's own settings, which win.
        let inherited: Vec<(String, String)> = std::env::vars().collect();
        let has = |key: &str| inherited.iter().any(|(k, _)| k == key);
        let log_format =
            (!has("LOG_FORMAT")).then(|| ("LOG_FORMAT".to_owned(), "pretty".to_owned()));
        let rust_log = (!has("RUST_LOG")).then(|| ("RUST_LOG".to_owned(), "info".to_owned()));
        let url = |s: Service| procs::local_url(self.ports.service(s));
        for service in Service::ALL {
            let db = service.database().name();
            let database_url = match pg_socket_dir {
                Some(dir) => format!(
                    "postgres://postgres@localhost:{pg_port}/{db}?host={}",
                    dir.display()
                ),
                None => format!("postgres://postgres@127.0.0.1:{pg_port}/{db}"),
            };
            let port = self.ports.service(service);
            let mut env = inherited.clone();
            env.extend(log_format.clone());
            env.extend(rust_log.clone());
            env.extend([
                ("LISTEN_ADDR".to_owned(), format!("127.0.0.1:{port}")),
                ("DATABASE_URL".to_owned(), database_url),
                ("REDIS_URL".to_owned(), redis_url.to_owned()),
                ("JWT_SECRET".to_owned(), jwt.clone()),
                ("INTERNAL_TOKEN".to_owned(), internal.clone()),
                ("BILLING_URL".to_owned(), url(Service::Billing)),
                ("ITEMS_URL".to_owned(), url(Service::Items)),
                ("SLOTS_URL".to_owned(), url(Service::Slots)),
            ]);
            let spec = ProcSpec {
                service,
                program: bin_dir.join(service.name()),
                port,
                env,
                log: logs.join(format!("{service}.log")),
            };
            let child = procs::spawn_process(service.name(), &spec, 1, Duration::ZERO)?;
            self.services.insert(service, (child, spec.log));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the readiness HTTP client")?;
        for service in Service::ALL {
            let ready_url = format!("{}/health/ready", url(service));
            let (child, log) = self.services.get_mut(&service).expect("spawned above");
            let log = log.clone();
            procs::wait_ready(
                &http,
                service.name(),
                &ready_url,
                Duration::from_secs(60),
                || child.try_wait().context("checking on the service"),
                &log,
            )
            .await?;
            eprintln!(
                "==> {service} ready on 127.0.0.1:{}",
                self.ports.service(service)
            );
        }
        Ok(())
    }

    /// Until SIGINT or SIGTERM: reports services that exit on their own (without stopping the
    /// rest, so the others can still be looked at).
    async fn watch(
        &mut self,
        interrupt: &mut tokio::signal::unix::Signal,
        terminate: &mut tokio::signal::unix::Signal,
    ) {
        let mut reported = std::collections::BTreeSet::new();
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = interrupt.recv() => return,
                _ = terminate.recv() => return,
                _ = tick.tick() => {}
            }
            for (service, (child, log)) in &mut self.services {
                if let Ok(Some(status)) = child.try_wait()
                    && reported.insert(*service)
                {
                    eprintln!(
                        "warning: {service} has exited ({status}) — end of {}:\n{}",
                        log.display(),
                        procs::log_tail(log, 15).unwrap_or_default()
                    );
                }
            }
        }
    }

    /// Gateway first (it stops taking traffic), then the services, then the stores.
    async fn stop(&mut self) {
        let gateway = self.state.join("nginx");
        let _ = tokio::task::spawn_blocking(move || stores::stop_nginx(&gateway)).await;
        if !self.services.is_empty() {
            let names: Vec<&str> = self.services.keys().map(|s| s.name()).collect();
            eprintln!("==> stopping services: {}", names.join(" "));
        }
        let stops = std::mem::take(&mut self.services).into_iter().map(
            |(service, (child, _))| async move {
                if let Err(e) =
                    procs::terminate_and_reap(service.name(), child, SERVICE_GRACE).await
                {
                    eprintln!("warning: {e:#}");
                }
            },
        );
        futures::future::join_all(stops).await;
        let state = self.state.clone();
        match tokio::task::spawn_blocking(move || stores::stop_components(&state)).await {
            Ok(Err(e)) => eprintln!("warning: {e:#}"),
            Err(e) => eprintln!("warning: the store stop task: {e}"),
            Ok(Ok(())) => {}
        }
    }
}

/// Creates each database of the stack that does not exist yet.
async fn create_databases(admin: &str) -> Result<()> {
    let mut conn = PgConnection::connect(admin)
        .await
        .with_context(|| format!("connecting to {admin}"))?;
    for db in DATABASES {
        let name = db.name();
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(name)
                .fetch_one(&mut conn)
                .await
                .context("listing the databases")?;
        if !exists {
            // `name` is one of five constants, never input.
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
                .execute(&mut conn)
                .await
                .with_context(|| format!("CREATE DATABASE {name}"))?;
            eprintln!("==> created database {name}");
        }
    }
    Ok(())
}

/// `<state>/secrets.env` (mode 600), created once: `(JWT_SECRET, INTERNAL_TOKEN)`. The values
/// are never printed and travel to the services in their environment, never on a command line.
fn ensure_secrets(state: &Path) -> Result<(String, String)> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let path = state.join("secrets.env");
    let read = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    if let Ok(text) = std::fs::read_to_string(&path)
        && let (Some(jwt), Some(internal)) =
            (read(&text, "JWT_SECRET"), read(&text, "INTERNAL_TOKEN"))
    {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        return Ok((jwt, internal));
    }
    let hex = || -> String {
        use rand::Rng;
        (0..32)
            .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
            .collect()
    };
    let (jwt, internal) = (hex(), hex());
    let tmp = state.join("secrets.env.tmp");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    use std::io::Write;
    writeln!(file, "JWT_SECRET={jwt}\nINTERNAL_TOKEN={internal}").context("writing secrets.env")?;
    std::fs::rename(&tmp, &path).context("writing secrets.env")?;
    Ok((jwt, internal))
}

/// Renders the gateway's config into `dir/nginx.conf` — the routes are the Ingress rules of
/// deploy-services.yml, everything else comes from deploy/gateway.nginx.conf.template — and
/// starts nginx (daemonized, pid, logs and temp files in `dir`) on 127.0.0.1:`port`, in front of
/// `upstreams`; waits until it answers. Blocking.
pub fn start_gateway(dir: &Path, port: u16, upstreams: &Upstreams) -> Result<()> {
    ensure!(
        procs::port_free(port),
        "port {port} (GATEWAY_PORT) is in use — is another `make run` running? stop it or set \
         GATEWAY_PORT"
    );
    std::fs::create_dir_all(dir.join("logs")).context("creating the gateway's logs/")?;
    std::fs::create_dir_all(dir.join("tmp")).context("creating the gateway's tmp/")?;
    let dir = dir.canonicalize()?;
    std::fs::write(dir.join(".component"), "nginx\n").context("marking the gateway")?;
    let root = repo_root();
    let manifest = root.join("deploy-services.yml");
    let template_path = root.join("deploy/gateway.nginx.conf.template");
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading {}", template_path.display()))?;
    // Workers run as the invoking user: as root, `user root` (the state dir may not be reachable
    // by nobody); as anyone else the directive is ignored anyway.
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 {
        "user root;"
    } else {
        ""
    };
    let values: BTreeMap<String, String> = [
        ("STATE_DIR", dir.display().to_string()),
        ("LISTEN", format!("127.0.0.1:{port}")),
        ("USER_DIRECTIVE", user.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let config = Routes::from_manifest_file(&manifest)?
        .render(&template, upstreams, &values)
        .with_context(|| format!("rendering {}", template_path.display()))?;
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "# rendered by tools/src/local.rs from {} (routes) and {}: edit those, not this file\n{config}",
            manifest.display(),
            template_path.display()
        ),
    )
    .with_context(|| format!("writing {}", conf.display()))?;
    let nginx = ["/usr/sbin/nginx", "nginx"]
        .into_iter()
        .find(|p| !p.starts_with('/') || Path::new(p).is_file())
        .unwrap_or("nginx");
    let prefix = format!("{}/", dir.display());
    let error_log = dir.join("logs/error.log");
    let nginx_cmd = |test: bool| {
        let mut cmd = std::process::Command::new(nginx);
        if test {
            cmd.args(["-t", "-q"]);
        }
        cmd.arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .stdin(Stdio::null());
        cmd
    };
    let test = nginx_cmd(true).output().context("running nginx -t")?;
    ensure!(
        test.status.success(),
        "nginx config test failed ({}): {}",
        conf.display(),
        String::from_utf8_lossy(&test.stderr).trim()
    );
    eprintln!(
        "==> starting nginx gateway on 127.0.0.1:{port} ({})",
        dir.display()
    );
    let _ = std::fs::remove_file(dir.join("nginx.pid"));
    let started = nginx_cmd(false).output().context("running nginx")?;
    ensure!(
        started.status.success(),
        "nginx failed to start: {}; end of {}:\n{}",
        String::from_utf8_lossy(&started.stderr).trim(),
        error_log.display(),
        procs::log_tail(&error_log, 30).unwrap_or_default()
    );
    stores::wait_until(
        &format!("nginx answering on port {port}"),
        Duration::from_secs(15),
        &error_log,
        || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
    )
}

fn print_banner(state: &Path, ports: &Ports) {
    let base = format!("http://127.0.0.1:{}", ports.gateway_port);
    let root = repo_root().canonicalize().unwrap_or_else(|_| repo_root());
    let rel = state
        .strip_prefix(&root)
        .unwrap_or(state)
        .display()
        .to_string();
    println!(
        r#"
  Saga shop is running at {base}
  logs: {rel}/logs/<service>.log, gateway: {rel}/nginx/logs/   (Ctrl-C stops everything)

  Try it:
    BASE={base}
    curl -s -X POST $BASE/api/auth/users/ -H 'content-type: application/json' -d '{{"username":"alice","password":"secret-pass-1","email":"alice@example.com"}}'
    TOKEN=$(curl -s -X POST $BASE/api/token/ -H 'content-type: application/json' -d '{{"username":"alice","password":"secret-pass-1"}}' | python3 -c 'import sys,json;print(json.load(sys.stdin)["access"])')
    curl -s $BASE/api/accounts/alice -H "Authorization: Bearer $TOKEN"
"#
    );
}

/// `shop stop`: asks the supervisor of `state` to stop (SIGTERM; it stops what it started), then
/// stops whatever is left there. With `purge`, also removes the state directory.
pub async fn stop(state: &Path, purge: bool) -> Result<()> {
    if !state.is_dir() {
        return Ok(());
    }
    if let Some(pid) = recorded_supervisor(state) {
        eprintln!(
            "==> asking the supervisor (pid {pid}) of {} to stop",
            state.display()
        );
        // SAFETY: kill(2) takes no pointers; pid > 1 and names the recorded process.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        if procs::wait_pid_gone(pid, Duration::from_secs(60))
            .await
            .is_err()
        {
            eprintln!("warning: the supervisor (pid {pid}) still runs after 60 s");
        }
    }
    let dir = state.to_path_buf();
    tokio::task::spawn_blocking(move || {
        if purge {
            stores::purge(&dir)
        } else {
            stores::stop_components(&dir)
        }
    })
    .await
    .context("the stop task")??;
    if !purge {
        let _ = std::fs::remove_file(state.join("env"));
        let running = stores::running_components(state);
        ensure!(
            running.is_empty(),
            "still running under {}: {}",
            state.display(),
            running.join(", ")
        );
    }
    Ok(())
}

/// Every state directory under `<repo>/.state`.
pub fn all_state_dirs() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(repo_root().join(".state")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}
