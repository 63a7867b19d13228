//! The manifest's Postgres set-up, run for real: the initdb script of the ConfigMap
//! `postgres-initdb` against a private PostgreSQL that checks passwords, with the env the
//! manifest gives the Postgres container (random values for its secret keys); then every Deployment's own DATABASE_URL (its role, its `$(DB_PASSWORD)` from the
//! secret key it references) runs its service's migrations as that role, and cannot open another
//! service's database nor log in with a wrong password.

use serde_yaml_ng::Value;
use sqlx::{Connection, PgConnection, migrate::Migrator};
use std::{collections::BTreeMap, time::Duration};
use tools::stores::PrivateStores;

const MANIFEST: &str = include_str!("../../../deploy-services.yml");

fn documents() -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(MANIFEST)
        .map(|d| <Value as serde::Deserialize>::deserialize(d).expect("YAML"))
        .filter(|d| !d.is_null())
        .collect()
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    documents
        .iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("{kind}/{name} in the manifest"))
}

/// A Deployment's DATABASE_URL, the variable it splices in, and that variable's secret key.
fn database_url_of(documents: &[Value], deployment: &str) -> (String, String, String) {
    let env = named(documents, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
        [0]["env"]
        .as_sequence()
        .expect("env")
        .clone();
    let url = env
        .iter()
        .find(|e| e["name"] == "DATABASE_URL")
        .and_then(|e| e["value"].as_str())
        .expect("DATABASE_URL")
        .to_owned();
    let spliced = url
        .split("$(")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("a $(VAR) in DATABASE_URL");
    let key = env
        .iter()
        .find(|e| e["name"] == spliced)
        .and_then(|e| e["valueFrom"]["secretKeyRef"]["key"].as_str())
        .expect("the spliced variable comes from a secret key")
        .to_owned();
    let spliced = spliced.to_owned();
    (url, spliced, key)
}

fn random_hex() -> String {
    use rand::Rng;
    (0..32)
        .map(|_| format!("{:02x}", rand::rng().random::<u8>()))
        .collect()
}

#[tokio::test]
async fn each_service_owns_its_database_as_its_own_role() {
    let dir = std::env::temp_dir().join(format!("saga-pg-roles-{}", uuid::Uuid::new_v4()));
    let stores = PrivateStores::start(&dir)
        .await
        .expect("starting a private Postgres");
    let port = stores
        .admin_url
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .expect("the port")
        .to_owned();

    // Passwords are checked from now on, except for the superuser (tools::stores starts it with trust).
    std::fs::write(
        stores.postgres.data.join("pg_hba.conf"),
        "local all all trust\nhost all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    let mut admin = PgConnection::connect(&stores.admin_url).await.unwrap();
    sqlx::query("SELECT pg_reload_conf()")
        .execute(&mut admin)
        .await
        .unwrap();

    let documents = documents();
    let initdb = named(&documents, "ConfigMap", "postgres-initdb")["data"]
        .as_mapping()
        .expect("data")
        .iter()
        .find(|(name, _)| name.as_str().is_some_and(|n| n.ends_with(".sh")))
        .and_then(|(_, script)| script.as_str())
        .expect("an initdb .sh script")
        .to_owned();
    // What the Job would create (a random value per secret key), and the Postgres container's
    // env as the manifest gives it: the script sees exactly the variables it would see there.
    let postgres_env = named(&documents, "StatefulSet", "postgres")["spec"]["template"]["spec"]
        ["containers"][0]["env"]
        .as_sequence()
        .expect("the Postgres container's env")
        .clone();
    let mut passwords: BTreeMap<String, String> = BTreeMap::new();
    let mut container_env: BTreeMap<String, String> = BTreeMap::new();
    for var in &postgres_env {
        let name = var["name"].as_str().expect("a name").to_owned();
        if let Some(key) = var["valueFrom"]["secretKeyRef"]["key"].as_str() {
            let value = passwords.entry(key.to_owned()).or_insert_with(random_hex);
            container_env.insert(name, value.clone());
        } else if let Some(value) = var["value"].as_str() {
            container_env.insert(name, value.to_owned());
        }
    }
    let script = dir.join("initdb.sh");
    std::fs::write(&script, initdb).unwrap();
    let path = format!(
        "{}:{}",
        stores.postgres.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let ran = tokio::process::Command::new("bash")
        .arg(&script)
        .env("PATH", path)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", &port)
        .envs(&container_env)
        .output()
        .await
        .unwrap();
    assert!(
        ran.status.success(),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );

    let services: [(&str, &Migrator); 6] = [
        ("auth", &auth::MIGRATOR),
        ("billing", billing::CHARGES.migrator()),
        ("order", &order_store::MIGRATOR),
        ("mediator", &order_store::MIGRATOR),
        ("items", items::RESERVATIONS.migrator()),
        ("slots", slots::BOOKINGS.migrator()),
    ];
    for (deployment, migrator) in services {
        let (url, spliced, key) = database_url_of(&documents, deployment);
        // The Service `postgres` is this private server; the variable is what the Job created.
        let url = url
            .replace("@postgres:5432/", &format!("@127.0.0.1:{port}/"))
            .replace(&format!("$({spliced})"), &passwords[&key]);
        let mut own = PgConnection::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{deployment} connects as its role: {e}"));
        migrator
            .run(&mut own)
            .await
            .unwrap_or_else(|e| panic!("{deployment}'s migrations as its role: {e}"));
        let (user, owner): (String, String) = sqlx::query_as(
            "SELECT current_user::text, pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()",
        )
        .fetch_one(&mut own)
        .await
        .unwrap();
        assert_eq!(user, owner, "{deployment}");
        own.close().await.unwrap();

        let (role, database) = {
            let rest = url.split("://").nth(1).unwrap();
            let role = rest.split(':').next().unwrap().to_owned();
            let database = rest.rsplit('/').next().unwrap().to_owned();
            (role, database)
        };
        assert_eq!(
            role, database,
            "{deployment}: one role per database, named after it"
        );
        let other = if database == "auth" {
            "billing"
        } else {
            "auth"
        };
        let (server, _) = url.rsplit_once('/').unwrap();
        let refused = PgConnection::connect(&format!("{server}/{other}"))
            .await
            .err()
            .unwrap_or_else(|| panic!("{deployment}'s role opened database {other}"));
        assert!(
            refused
                .to_string()
                .contains(&format!("permission denied for database \"{other}\"")),
            "{refused}"
        );
    }

    // The superuser's reload may take a moment to reach new connections: wait, bounded, until a
    // wrong password is refused (under the old trust rule it would be let in).
    let wrong = format!("postgres://auth:{}@127.0.0.1:{port}/auth", random_hex());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match PgConnection::connect(&wrong).await {
            Err(e) => {
                assert!(
                    e.to_string()
                        .contains("password authentication failed for user \"auth\""),
                    "{e}"
                );
                break;
            }
            Ok(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "a wrong password still logs in 10 s after the reload"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
