//! Argon2id password hashing and verification, bounded. Each hash fills [`PARAMS`]' 19 MiB of
//! memory and takes tens of milliseconds of CPU, so it runs off the async runtime, at most
//! `permits` at a time (from the cores and the memory budget), each in a working buffer kept for
//! reuse: a burst of logins costs at most `permits` buffers, allocated once, instead of one fresh
//! 19 MiB allocation per request that the allocator keeps after the burst. Buffers idle for
//! [`KEEP_IDLE_BUFFERS`] are freed, so the memory goes back once a burst is over. A request that
//! finds every permit taken waits a bounded time, in a bounded queue, then is refused as
//! overloaded (a 503 with `Retry-After`).

use anyhow::{Context, anyhow};
use argon2::{
    Algorithm, Argon2, Block, Params, PasswordHash, Version,
    password_hash::{Output, ParamsString, SaltString, rand_core::OsRng},
};
use std::{
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The parameters of new hashes: Argon2id, m = 19 MiB, t = 2, p = 1 (OWASP's first choice, and
/// argon2's defaults, so every hash stored so far has exactly these). Stored hashes carry their
/// own parameters, and are verified with those.
pub const PARAMS: (u32, u32, u32) = (19 * 1024, 2, 1);
const OUTPUT_LEN: usize = 32;

/// How long working buffers outlive the last hash: across a burst they are reused, after it freed.
const KEEP_IDLE_BUFFERS: Duration = Duration::from_secs(5);

/// Memory one hash with [`PARAMS`] needs, in MiB (rounded up).
pub const HASH_MIB: usize = (PARAMS.0 as usize).div_ceil(1024);

/// A well-formed hash with [`PARAMS`] that no password matches: an unknown username is verified
/// against it, so it costs the same time as a wrong password.
const DUMMY: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FnYS1zaG9wLWR1bW15IQ$\
                     dW5rbm93bi11c2VyLW5ldmVyLW1hdGNoZXMteHh4eHg";

const DEFAULT_MEMORY_BUDGET_MIB: usize = 64;
const DEFAULT_MAX_WAITING: usize = 32;
const DEFAULT_MAX_WAIT_MS: &str = "1000";

/// How much hashing may run and wait; `PASSWORD_HASH_*` in the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct PasswordConfig {
    /// Memory all concurrent Argon2id hashes together may use (MiB): each takes 19 MiB, so at most
    /// min(cores, budget / 19) run at a time.
    #[arg(long = "password-hash-memory-mib", env = "PASSWORD_HASH_MEMORY_MIB", default_value_t = DEFAULT_MEMORY_BUDGET_MIB)]
    pub memory_budget_mib: usize,
    /// Sign-ups and logins that may wait for a hashing permit; beyond, the next is refused at once
    /// (503 `overloaded` with `Retry-After`).
    #[arg(long = "password-hash-max-waiting", env = "PASSWORD_HASH_MAX_WAITING", default_value_t = DEFAULT_MAX_WAITING)]
    pub max_waiting: usize,
    /// How long a sign-up or login waits for a hashing permit before it is refused (ms): 503
    /// `overloaded` with `Retry-After`.
    #[arg(long = "password-hash-max-wait-ms", env = "PASSWORD_HASH_MAX_WAIT_MS", default_value = DEFAULT_MAX_WAIT_MS, value_parser = shop_common::config::millis)]
    pub max_wait: Duration,
}

impl Default for PasswordConfig {
    /// The declared defaults, without reading the environment (what tests use).
    fn default() -> Self {
        Self {
            memory_budget_mib: DEFAULT_MEMORY_BUDGET_MIB,
            max_waiting: DEFAULT_MAX_WAITING,
            max_wait: shop_common::config::millis(DEFAULT_MAX_WAIT_MS).expect("a number of ms"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("too many password checks in progress, retry shortly")]
    Overloaded,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// The bounded hasher; clones share the bound.
#[derive(Clone)]
pub struct Passwords {
    inner: Arc<Inner>,
}

struct Inner {
    permits: Arc<Semaphore>,
    size: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    max_wait: Duration,
    /// Working buffers of finished hashes (never more than `size`, one per permit), and when the
    /// last one was put back.
    buffers: Mutex<(Vec<Vec<Block>>, Instant)>,
}

impl Passwords {
    pub fn new(config: &PasswordConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        // More permits than cores would only queue on the CPU while holding their memory.
        let size = (config.memory_budget_mib / HASH_MIB).clamp(1, cores);
        tracing::info!(
            permits = size,
            cores,
            memory_budget_mib = config.memory_budget_mib,
            "password hashing bounded"
        );
        let passwords = Self {
            inner: Arc::new(Inner {
                permits: Arc::new(Semaphore::new(size)),
                size,
                waiting: AtomicUsize::new(0),
                max_waiting: config.max_waiting,
                max_wait: config.max_wait,
                buffers: Mutex::new((Vec::with_capacity(size), Instant::now())),
            }),
        };
        tokio::spawn(free_idle_buffers(Arc::downgrade(&passwords.inner)));
        passwords
    }

    /// How many hashes may run at once.
    pub fn permits(&self) -> usize {
        self.inner.size
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`) of `password`.
    pub async fn hash(&self, password: String) -> Result<String, PasswordError> {
        self.run(move |memory| hash_into(memory, password.as_bytes()))
            .await
    }

    /// Whether `password` matches `stored`; with no stored hash it verifies against [`DUMMY`],
    /// so that an unknown username costs the same time as a wrong password.
    pub async fn verify(
        &self,
        password: String,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        self.run(move |memory| {
            let known = stored.is_some();
            let matches = verify_into(
                memory,
                password.as_bytes(),
                stored.as_deref().unwrap_or(DUMMY),
            )?;
            Ok(known && matches)
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Vec<Block>) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, PasswordError> {
        let permit = self.admit().await?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut memory = inner.take_buffer();
            let result = work(&mut memory);
            inner.put_buffer(memory);
            // Released only once the hash is done, even if the request was abandoned meanwhile.
            drop(permit);
            result
        })
        .await
        .context("password hashing task")?
        .map_err(PasswordError::Failed)
    }

    async fn admit(&self) -> Result<OwnedSemaphorePermit, PasswordError> {
        let permits = &self.inner.permits;
        if let Ok(permit) = permits.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let _waiting = Waiting::enter(&self.inner.waiting);
        if _waiting.ahead >= self.inner.max_waiting {
            metrics::counter!("auth_password_overloaded_total", "why" => "queue_full").increment(1);
            return Err(PasswordError::Overloaded);
        }
        match tokio::time::timeout(self.inner.max_wait, permits.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => {
                metrics::counter!("auth_password_overloaded_total", "why" => "wait").increment(1);
                Err(PasswordError::Overloaded)
            }
        }
    }
}

/// Frees the working buffers once no hash has needed one for [`KEEP_IDLE_BUFFERS`]; ends with
/// the hasher.
async fn free_idle_buffers(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(KEEP_IDLE_BUFFERS / 2);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let idle = {
            let mut buffers = inner.buffers();
            if buffers.1.elapsed() >= KEEP_IDLE_BUFFERS {
                std::mem::take(&mut buffers.0)
            } else {
                Vec::new()
            }
        };
        // Freed outside the lock.
        drop(idle);
    }
}

impl Inner {
    fn buffers(&self) -> std::sync::MutexGuard<'_, (Vec<Vec<Block>>, Instant)> {
        self.buffers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_buffer(&self) -> Vec<Block> {
        self.buffers().0.pop().unwrap_or_default()
    }

    fn put_buffer(&self, buffer: Vec<Block>) {
        // A stored hash with a larger `m` grew it: not worth keeping beyond the budget.
        if buffer.len() > PARAMS.0 as usize {
            return;
        }
        let mut buffers = self.buffers();
        buffers.1 = Instant::now();
        if buffers.0.len() < self.size {
            buffers.0.push(buffer);
        }
    }
}

/// Counts a waiting request for as long as it waits.
struct Waiting<'a> {
    count: &'a AtomicUsize,
    /// Requests already waiting when this one arrived.
    ahead: usize,
}

impl<'a> Waiting<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        let ahead = count.fetch_add(1, Ordering::AcqRel);
        Self { count, ahead }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::AcqRel);
    }
}

fn params() -> anyhow::Result<Params> {
    let (m, t, p) = PARAMS;
    Params::new(m, t, p, Some(OUTPUT_LEN)).map_err(|e| anyhow!("Argon2 parameters: {e}"))
}

/// `memory`, grown to `blocks` if needed, as Argon2's working area.
fn working_area(memory: &mut Vec<Block>, blocks: usize) -> &mut [Block] {
    if memory.len() < blocks {
        memory.resize(blocks, Block::new());
    }
    &mut memory[..blocks]
}

fn hash_into(memory: &mut Vec<Block>, password: &[u8]) -> anyhow::Result<String> {
    let params = params()?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let salt = SaltString::generate(&mut OsRng);
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .as_salt()
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow!("decoding a fresh salt: {e}"))?;
    let area = working_area(memory, params.block_count());
    let output = Output::init_with(OUTPUT_LEN, |out| {
        argon
            .hash_password_into_with_memory(password, raw_salt, out, &mut *area)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| anyhow!("hashing a password: {e}"))?;
    let hash = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| anyhow!("encoding parameters: {e}"))?,
        salt: Some(salt.as_salt()),
        hash: Some(output),
    };
    Ok(hash.to_string())
}

/// Recomputes `stored`'s hash of `password` with `stored`'s own algorithm, version and
/// parameters, in `memory`, and compares in constant time (`Output`'s equality).
fn verify_into(memory: &mut Vec<Block>, password: &[u8], stored: &str) -> anyhow::Result<bool> {
    let parsed =
        PasswordHash::new(stored).map_err(|e| anyhow!("stored password hash is malformed: {e}"))?;
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        anyhow::bail!("stored password hash has no salt or no hash");
    };
    let algorithm =
        Algorithm::try_from(parsed.algorithm).map_err(|e| anyhow!("stored hash algorithm: {e}"))?;
    let version = parsed
        .version
        .map(Version::try_from)
        .transpose()
        .map_err(|e| anyhow!("stored hash version: {e}"))?
        .unwrap_or_default();
    let params = Params::try_from(&parsed).map_err(|e| anyhow!("stored hash parameters: {e}"))?;
    let mut salt_bytes = [0u8; 64];
    let raw_salt = salt
        .decode_b64(&mut salt_bytes)
        .map_err(|e| anyhow!("stored hash salt: {e}"))?;
    let argon = Argon2::new(algorithm, version, params.clone());
    let area = working_area(memory, params.block_count());
    let computed = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password, raw_salt, out, &mut *area)
            .map_err(|_| argon2::password_hash::Error::Crypto)
    })
    .map_err(|e| anyhow!("verifying a password: {e}"))?;
    Ok(computed == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::{PasswordHasher, PasswordVerifier};

    fn quick() -> Passwords {
        Passwords::new(&PasswordConfig::default())
    }

    #[tokio::test]
    async fn hashes_stored_before_verify_and_new_hashes_are_standard() {
        let passwords = quick();
        // What sign-up stored before this module reused memory: argon2's own default hasher.
        let salt = SaltString::generate(&mut OsRng);
        let old = Argon2::default()
            .hash_password(b"secret-pass-1", &salt)
            .unwrap()
            .to_string();
        assert!(
            passwords
                .verify("secret-pass-1".into(), Some(old.clone()))
                .await
                .unwrap()
        );
        assert!(
            !passwords
                .verify("secret-pass-2".into(), Some(old))
                .await
                .unwrap()
        );

        let new = passwords.hash("secret-pass-1".into()).await.unwrap();
        assert!(new.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{new}");
        let parsed = PasswordHash::new(&new).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"secret-pass-1", &parsed)
                .is_ok()
        );
        assert_verifies_only("secret-pass-1", &passwords, new).await;
    }

    #[tokio::test]
    async fn an_unknown_user_costs_a_full_hash_and_never_matches() {
        let dummy = PasswordHash::new(DUMMY).unwrap();
        assert_eq!(Params::try_from(&dummy).unwrap(), params().unwrap());
        assert!(!quick().verify("anything-1".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn other_parameters_are_verified_with_their_own() {
        let cheap = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(1024, 1, 1, None).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let stored = cheap
            .hash_password(b"secret-pass-1", &salt)
            .unwrap()
            .to_string();
        assert_verifies_only("secret-pass-1", &quick(), stored).await;
    }

    /// `stored` accepts `password` and refuses a different one.
    async fn assert_verifies_only(password: &str, passwords: &Passwords, stored: String) {
        let verify = |attempt: &str| passwords.verify(attempt.into(), Some(stored.clone()));
        assert!(verify(password).await.unwrap(), "{password} refused");
        assert!(
            !verify("another-pass-9").await.unwrap(),
            "a wrong password accepted"
        );
    }

    #[tokio::test]
    async fn permits_follow_the_memory_budget_and_never_exceed_the_cores() {
        let with = |mib| {
            Passwords::new(&PasswordConfig {
                memory_budget_mib: mib,
                ..PasswordConfig::default()
            })
            .permits()
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(with(0), 1, "one hash at a time whatever the budget");
        assert_eq!(with(HASH_MIB), 1);
        assert_eq!(with(1024), cores);
    }
}
