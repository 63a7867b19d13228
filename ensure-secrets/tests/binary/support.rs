//! Running the real binary the way the install Job does: a mounted service account (token,
//! namespace, CA) and the keys to ensure; what it says, and the one-line report of a success.

use std::{path::Path, time::Duration};
use tokio::process::Command;

/// A run ends quickly: one GET and at most one write to a server on loopback.
const EXIT_WITHIN: Duration = Duration::from_secs(30);

/// The namespace every test's service account is in.
pub const NAMESPACE: &str = "shop-ns";

/// Mounts a service account in `dir`: its `token`, the namespace, and `ca` as `ca.crt`.
pub fn service_account(dir: &Path, token: &str, ca: &Path) {
    std::fs::create_dir_all(dir).expect("the service account directory");
    std::fs::write(dir.join("token"), token).expect("writing the token");
    std::fs::write(dir.join("namespace"), NAMESPACE).expect("writing the namespace");
    std::fs::copy(ca, dir.join("ca.crt")).expect("copying the CA");
}

/// Runs the binary for the Secret `shop-secrets` and `keys` against `api` with the service account
/// in `account`: whether it succeeded, and what it printed (stdout, then stderr).
pub async fn ensure_secrets(api: &str, account: &Path, keys: &[&str]) -> (bool, String) {
    let run = Command::new(env!("CARGO_BIN_EXE_ensure-secrets"))
        .args(["--secret", "shop-secrets", "--api-server", api])
        .arg("--service-account-dir")
        .arg(account)
        .args(keys)
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(EXIT_WITHIN, run)
        .await
        .expect("ensure-secrets exits")
        .expect("running ensure-secrets");
    let said = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), said)
}

/// Asserts that the run succeeded and reported exactly `report` about the Secret.
pub fn assert_reported((ok, said): &(bool, String), report: &str) {
    assert!(ok, "{said}");
    assert_eq!(said.trim(), format!("secret shop-secrets: {report}"));
}
