//! The real mediator binary: recovery after kill -9 mid-saga, a prompt exit on SIGTERM, and a
//! secret refused at start-up and never logged.

use crate::{
    WAIT, World, eventually,
    fake_participant::{Answer, Hold},
};
use order_store::db::Status;
use shop_common::config::ExposeSecret;
use shop_common::testing;
use std::{
    process::{Child, Command, ExitStatus, Stdio},
    time::Duration,
};

/// The mediator binary, configured for `world` as consumer `consumer`, quiet (RUST_LOG=warn).
fn mediator_command(world: &World, consumer: &str) -> Command {
    let fakes = &world.fakes;
    let mut command = Command::new(env!("CARGO_BIN_EXE_mediator"));
    command
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .env("DATABASE_URL", world.database.url.expose_secret())
        .env("REDIS_URL", testing::redis_url().expose_secret())
        .env("INTERNAL_TOKEN", testing::INTERNAL_TOKEN)
        .env("ORDERS_STREAM", &world.stream)
        .env("DEAD_LETTER_STREAM", world.dead_letter_stream())
        .env("CONSUMER_GROUP", crate::GROUP)
        .env("CONSUMER_NAME", consumer)
        .env("ITEMS_URL", &fakes.items.url)
        .env("SLOTS_URL", &fakes.slots.url)
        .env("BILLING_URL", &fakes.billing.url)
        .env("STEP_DEADLINE_MS", "10000")
        // One request per action, as `World::config` has it: the fakes answer order by order.
        .env("PARTICIPANT_BATCH", "1")
        .env("RUST_LOG", "warn");
    command
}

/// A running mediator process, killed when dropped.
struct Process(Child);

impl Process {
    fn start(world: &World, consumer: &str) -> Self {
        let child = mediator_command(world, consumer)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting the mediator binary");
        Self(child)
    }

    fn signal(&self, sig: &str) {
        signal(&self.0.id().to_string(), sig);
    }

    async fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let mut exited = None;
        eventually(within, "the process exits", async || {
            exited = self.0.try_wait().unwrap();
            exited.is_some()
        })
        .await;
        exited.unwrap()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn signal(pid: &str, sig: &str) {
    let sent = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid)
        .status();
    assert!(sent.unwrap().success(), "kill -{sig} {pid}");
}

#[tokio::test]
async fn after_kill_9_mid_saga_the_restarted_process_recovers_its_pending_entry() {
    let world = World::new().await;
    let billing = &world.fakes.billing;
    billing.always_put(Answer::Hang);
    let mut first = Process::start(&world, "pod-0");
    let id = world.new_order().await;
    world.publish(id).await;
    eventually(WAIT, "the charge is in flight", async || {
        !billing.puts(id).is_empty()
    })
    .await;
    assert_eq!(world.pending().await, 1);
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).await;
    assert_eq!(
        world.status(id).await.0,
        Status::Pending,
        "no decision was stored"
    );
    assert_eq!(world.pending().await, 1, "never acknowledged");

    billing.always_put(Answer::Ok);
    let mut second = Process::start(&world, "pod-0");
    assert_eq!(world.wait_final(id).await.0, Status::Completed);
    assert_eq!(world.fakes.items.hold(id), Some(Hold::Held));
    assert_eq!(billing.hold(id), Some(Hold::Held));
    world.wait_all_acknowledged().await;
    second.signal("TERM");
    assert!(second.wait_exit(Duration::from_secs(5)).await.success());
}

#[tokio::test]
async fn sigterm_exits_promptly_with_status_0() {
    let world = World::new().await;
    let mut process = Process::start(&world, "pod-0");
    eventually(WAIT, "the consumer group exists", async || {
        world.group_exists().await
    })
    .await;
    let asked = std::time::Instant::now();
    process.signal("TERM");
    let status = process.wait_exit(Duration::from_secs(5)).await;
    let took = asked.elapsed();
    assert!(status.success(), "{status}");
    assert!(
        took < Duration::from_secs(3),
        "exited {took:?} after SIGTERM"
    );
}

/// Start-up refuses a secret too short to be safe, says which variable, and never prints the
/// secret itself — neither when refusing it nor in a normal run's debug log.
#[tokio::test]
async fn a_short_internal_token_is_refused_at_start_up_and_never_logged() {
    let world = World::new().await;
    let short = "tiny-token-42";
    let refused = mediator_command(&world, "pod-0")
        .env("INTERNAL_TOKEN", short)
        .env("RUST_LOG", "debug")
        .output()
        .expect("running the mediator binary");
    assert!(!refused.status.success(), "started with a short token");
    let said = String::from_utf8_lossy(&refused.stderr).into_owned()
        + &String::from_utf8_lossy(&refused.stdout);
    assert!(
        said.contains("INTERNAL_TOKEN"),
        "does not name the variable: {said}"
    );
    assert!(!said.contains(short), "printed the secret: {said}");

    // A normal start at debug level, until it has joined the group, then SIGTERM. Its output is
    // read from the start (a full pipe would block its logging).
    let child = mediator_command(&world, "pod-0")
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the mediator binary");
    let pid = child.id().to_string();
    let output = tokio::task::spawn_blocking(move || child.wait_with_output());
    eventually(WAIT, "the consumer group exists", async || {
        world.group_exists().await
    })
    .await;
    signal(&pid, "TERM");
    let output = tokio::time::timeout(WAIT, output)
        .await
        .expect("it exits on SIGTERM")
        .unwrap()
        .unwrap();
    let output = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(!output.is_empty(), "a debug log was written");
    assert!(
        !output.contains(testing::INTERNAL_TOKEN),
        "the internal token is in the log"
    );
}
