//! deploy-services.yml against the binaries it runs (tools::manifest): every container of our
//! image gets each variable its binary requires and no secret it does not read, every secret key
//! is one the install Job creates, and every URL points at a Service port of the manifest. Each
//! kind of mistake is then made on purpose in a copy of the manifest and must be reported exactly.
//! The same binaries give the README its configuration table (tools::config_table).

use clap::{CommandFactory, Parser};
use tools::{
    config_table,
    manifest::{self, Binary, Report},
};

const MANIFEST: &str = include_str!("../../../deploy-services.yml");

fn binaries() -> Vec<Binary> {
    let binary = |name: &str, config: clap::Command| {
        config.clone().debug_assert();
        Binary {
            path: format!("/usr/local/bin/{name}"),
            config,
        }
    };
    vec![
        binary("auth", auth::Config::command()),
        binary("billing", billing::Config::command()),
        binary("order", order::Config::command()),
        binary("mediator", mediator::Config::command()),
        binary("items", items::Config::command()),
        binary("slots", slots::Config::command()),
    ]
}

/// The Job's command line through ensure-secrets' own parser.
fn parse_job(argv: &[String]) -> anyhow::Result<(String, Vec<String>)> {
    let cli = ensure_secrets::Cli::try_parse_from(argv)?;
    Ok((cli.secret, cli.keys))
}

fn check(manifest: &str) -> Report {
    manifest::check(manifest, &binaries(), &parse_job).expect("the manifest parses")
}

/// `MANIFEST` with `from` (found exactly once) replaced by `to`.
fn edited(from: &str, to: &str) -> String {
    assert_eq!(MANIFEST.matches(from).count(), 1, "{from:?} is not unique");
    MANIFEST.replacen(from, to, 1)
}

fn violations(manifest: &str) -> Vec<String> {
    check(manifest).violations
}

#[test]
fn every_service_gets_what_its_binary_requires_and_only_the_secrets_it_reads() {
    let report = check(MANIFEST);
    assert_eq!(report.violations, Vec::<String>::new());
    assert_eq!(
        report.checked,
        [
            "Deployment/auth: auth",
            "Deployment/billing: billing",
            "Deployment/order: order",
            "Deployment/mediator: mediator",
            "Deployment/items: items",
            "Deployment/slots: slots",
        ]
    );
}

#[test]
fn a_required_variable_missing_from_the_config_map_is_reported_for_each_binary_requiring_it() {
    let manifest = edited("  BILLING_URL: \"http://billing:8080\"\n", "");
    assert_eq!(
        violations(&manifest),
        [
            "Deployment/auth: BILLING_URL is required by auth and not provided",
            "Deployment/mediator: BILLING_URL is required by mediator and not provided",
        ]
    );
}

/// An env entry of `variable` from the key `key` of shop-secrets.
fn secret_entry(variable: &str, key: &str) -> String {
    format!(
        "            - name: {variable}\n              valueFrom:\n                secretKeyRef:\n                  name: shop-secrets\n                  key: {key}\n"
    )
}

/// `MANIFEST` with `text` inserted right after the first `anchor` in the container running
/// `binary`.
fn inserted_in_container(binary: &str, anchor: &str, text: &str) -> String {
    let command = format!("command: [\"/usr/local/bin/{binary}\"]");
    let container = MANIFEST.find(&command).expect("the binary's container");
    let at = container + MANIFEST[container..].find(anchor).expect("the anchor") + anchor.len();
    format!("{}{text}{}", &MANIFEST[..at], &MANIFEST[at..])
}

#[test]
fn a_required_secret_not_given_is_reported() {
    let manifest = edited(
        &format!(
            "          env:\n{}            # Declared before DATABASE_URL",
            secret_entry("JWT_SECRET", "JWT_SECRET")
        ),
        "          env:\n            # Declared before DATABASE_URL",
    );
    assert_eq!(
        violations(&manifest),
        ["Deployment/order: JWT_SECRET is required by order and not provided"]
    );
}

#[test]
fn a_secret_the_binary_does_not_read_is_reported() {
    let manifest = inserted_in_container(
        "items",
        "          env:\n",
        &secret_entry("JWT_SECRET", "JWT_SECRET"),
    );
    assert_eq!(
        violations(&manifest),
        [
            "Deployment/items: secret key shop-secrets/JWT_SECRET is given as JWT_SECRET, which items does not read"
        ]
    );
}

#[test]
fn every_key_of_the_secret_given_whole_is_reported() {
    let manifest = inserted_in_container(
        "slots",
        "                name: shop-config\n",
        "            - secretRef:\n                name: shop-secrets\n",
    );
    assert_eq!(
        violations(&manifest),
        [
            "Deployment/slots: envFrom secretRef shop-secrets gives every key of the Secret; reference the keys it reads (secretKeyRef)"
        ]
    );
}

#[test]
fn a_secret_key_the_job_does_not_create_is_reported_and_so_is_a_key_nobody_reads() {
    let manifest = edited(
        "            - SLOTS_DB_PASSWORD\n",
        "            - SLOT_DB_PASSWORD\n",
    );
    assert_eq!(
        violations(&manifest),
        [
            "StatefulSet/postgres: SLOTS_DB_PASSWORD refers to secret key shop-secrets/SLOTS_DB_PASSWORD, which the install Job does not create",
            "Deployment/slots: DB_PASSWORD refers to secret key shop-secrets/SLOTS_DB_PASSWORD, which the install Job does not create",
            "the install Job creates shop-secrets/SLOT_DB_PASSWORD, which no workload reads",
        ]
    );
}

#[test]
fn a_url_to_a_missing_service_or_port_is_reported() {
    let manifest = edited(
        "  ITEMS_URL: \"http://items:8080\"\n",
        "  ITEMS_URL: \"http://items:8081\"\n",
    );
    assert_eq!(
        violations(&manifest),
        [
            "Deployment/mediator: ITEMS_URL=http://items:8081 points at port 8081, which Service items does not have"
        ]
    );
    let manifest = edited("@postgres:5432/billing", "@postgresql:5432/billing");
    assert_eq!(
        violations(&manifest),
        [
            "Deployment/billing: DATABASE_URL=postgres://billing:$(DB_PASSWORD)@postgresql:5432/billing points at no Service (postgresql)"
        ]
    );
}

#[test]
fn a_password_spliced_in_before_it_is_declared_is_reported() {
    let manifest = edited(
        "\"postgres://auth:$(DB_PASSWORD)@postgres:5432/auth\"",
        "\"postgres://auth:$(AUTH_PASSWORD)@postgres:5432/auth\"",
    );
    assert_eq!(
        violations(&manifest),
        [
            "Deployment/auth: DATABASE_URL refers to $(AUTH_PASSWORD), not declared before it",
            "Deployment/auth: secret key shop-secrets/AUTH_DB_PASSWORD is given as DB_PASSWORD, which auth does not read",
        ]
    );
}

#[test]
fn a_secret_in_the_manifest_is_reported() {
    let manifest = format!(
        "{MANIFEST}---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: shop-secrets\nstringData:\n  JWT_SECRET: \"x\"\n"
    );
    assert_eq!(
        violations(&manifest),
        ["Secret/shop-secrets: the manifest holds a Secret; the install Job creates it"]
    );
}

/// The README's configuration table is what the binaries declare; with `UPDATE_CONFIG_TABLE=1`
/// this test writes it instead of comparing.
#[test]
fn config_table_in_the_readme_is_generated_from_the_binaries() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let table = config_table::render(&binaries()).expect("every variable has a doc comment");
    let generated = config_table::with_table(&readme, &table).expect("the README's markers");
    if std::env::var_os("UPDATE_CONFIG_TABLE").is_some() {
        std::fs::write(path, generated).expect("writing README.md");
        return;
    }
    assert!(
        readme == generated,
        "README.md's configuration table is not what the services' config.rs declare; regenerate it:\n  {}\nThe table they declare:\n{table}",
        config_table::REGENERATE
    );
}

/// A variable without a doc comment would leave its row without a meaning: refused, naming it.
#[test]
fn config_table_refuses_a_variable_nobody_explained() {
    let undocumented = Binary {
        path: "/usr/local/bin/svc".to_owned(),
        config: clap::Command::new("svc").arg(clap::Arg::new("x").long("x").env("SOME_KNOB")),
    };
    let refused = config_table::render(&[undocumented]).unwrap_err();
    assert_eq!(
        refused.to_string(),
        "SOME_KNOB (svc) has no doc comment to say what it means"
    );
}
