//! The stack harness itself: processes come up, `kill9` / `restart` / extra mediators work, and
//! nothing outlives the stack. Needs `TEST_DATABASE_URL` / `TEST_REDIS_URL` (fails without them),
//! except the missing-binary check.

use std::time::Duration;
use tools::stack::{Service, Stack, StackConfig};

/// The process exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}

async fn gone(pid: u32) -> bool {
    for _ in 0..100 {
        if !alive(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn missing_binaries_fail_with_a_build_hint() {
    let empty = std::env::temp_dir().join(format!("no-bins-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let mut config = StackConfig::new("postgres://nowhere/postgres", "redis://nowhere");
    config.bin_dir = Some(empty.clone());
    let err = Stack::start(config).await.err().expect("must fail");
    let text = format!("{err:#}");
    assert!(text.contains("cargo build --workspace --bins"), "{text}");
    assert!(text.contains("mediator"), "{text}");
    let _ = std::fs::remove_dir(empty);
}

#[tokio::test]
async fn kill_restart_extra_mediator_and_no_orphans() {
    let stack = Stack::start(StackConfig::from_test_env())
        .await
        .expect("starting the stack");
    let http = reqwest::Client::new();
    for svc in Service::ALL {
        let r = http
            .get(format!("{}/health/ready", stack.url(svc)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), reqwest::StatusCode::OK, "{svc} not ready");
    }

    let before = stack.pid("billing").unwrap();
    stack.kill9("billing").await.unwrap();
    assert!(!stack.is_running("billing"));
    assert!(gone(before).await, "billing survived kill -9");
    assert!(
        stack.kill9("billing").await.is_err(),
        "killing a dead process is an error"
    );
    stack.restart("billing").await.unwrap();
    let after = stack.pid("billing").unwrap();
    assert_ne!(before, after);
    let r = http
        .get(format!("{}/health/ready", stack.url(Service::Billing)))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        reqwest::StatusCode::OK,
        "billing back on its port"
    );

    stack.start_extra_mediator("mediator-extra").await.unwrap();
    assert_eq!(stack.mediators(), ["mediator", "mediator-extra"]);
    assert!(stack.crashed().is_empty());

    let pids: Vec<u32> = stack
        .instances()
        .iter()
        .filter_map(|n| stack.pid(n))
        .collect();
    assert_eq!(pids.len(), 7);
    drop(stack);
    for pid in pids {
        assert!(gone(pid).await, "process {pid} outlived its stack");
    }
}
