//! The TLS side of the real binary: it trusts exactly the CA of the mounted service account. An
//! `openssl s_server -WWW` on loopback (a certificate for 127.0.0.1 signed by a CA made for the
//! test) serves a complete Secret: with that CA as `ca.crt` the run reads it and changes nothing;
//! with another CA it refuses the server.

use crate::support::{NAMESPACE, assert_reported, ensure_secrets, service_account};
use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
};

const WAIT: Duration = Duration::from_secs(20);

fn openssl(dir: &Path, args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command (apt-get install openssl)");
    assert!(status.success(), "openssl {args:?}");
}

fn self_signed_ca(dir: &Path, name: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A CA, and a server certificate for 127.0.0.1 it signed; another CA; and the Secret the fake
/// API serves (with every key the runs ask for).
fn prepare() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ensure-secrets-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let secrets = dir.join(format!("www/api/v1/namespaces/{NAMESPACE}/secrets"));
    std::fs::create_dir_all(&secrets).unwrap();
    self_signed_ca(&dir, "cluster-ca");
    self_signed_ca(&dir, "other-ca");
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-subj",
            "/CN=api",
            "-keyout",
            "api.key",
            "-out",
            "api.csr",
        ],
    );
    std::fs::write(dir.join("san"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "api.csr",
            "-CA",
            "cluster-ca.crt",
            "-CAkey",
            "cluster-ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "san",
            "-out",
            "api.crt",
        ],
    );
    std::fs::write(
        secrets.join("shop-secrets"),
        r#"{"metadata":{"resourceVersion":"1"},"data":{"JWT_SECRET":"eA==","INTERNAL_TOKEN":"eA=="}}"#,
    )
    .unwrap();
    dir
}

/// `openssl s_server -WWW` on a port it picks, once it accepts connections.
async fn api_server(dir: &Path) -> (Child, String) {
    let mut server = Command::new("openssl")
        .args(["s_server", "-accept", "127.0.0.1:0", "-WWW"])
        .args(["-cert", "../api.crt", "-key", "../api.key"])
        .current_dir(dir.join("www"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("openssl s_server");
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let address = tokio::time::timeout(WAIT, async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(address) = line.strip_prefix("ACCEPT ") {
                return address.to_owned();
            }
        }
        panic!("s_server ended before accepting");
    })
    .await
    .expect("s_server accepts within the bound");
    (server, format!("https://{address}"))
}

/// A service account whose `ca.crt` is `ca`; the run's exit status and output.
async fn run(dir: &Path, api: &str, ca: &str) -> (bool, String) {
    let account = dir.join(format!("account-{ca}"));
    service_account(&account, "token", &dir.join(ca));
    ensure_secrets(api, &account, &["JWT_SECRET", "INTERNAL_TOKEN"]).await
}

#[tokio::test]
async fn the_api_server_is_trusted_through_the_service_account_ca_only() {
    let dir = prepare();
    let (_server, api) = api_server(&dir).await;

    let ran = run(&dir, &api, "cluster-ca.crt").await;
    assert_reported(&ran, "exists with every key; unchanged");

    let (ok, said) = run(&dir, &api, "other-ca.crt").await;
    assert!(!ok, "{said}");
    assert!(
        said.contains("invalid peer certificate: UnknownIssuer"),
        "{said}"
    );

    std::fs::remove_dir_all(&dir).unwrap();
}
