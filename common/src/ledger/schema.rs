//! The ledger's SQL, written once: the `holds` table (`holds.sql`) and the `ledger_hold` /
//! `ledger_release` functions (`functions.sql`), templates rendered for one participant from its
//! [`LedgerSpec`] into that participant's sqlx migrations — the only place they are defined.
//!
//! A participant's migrations are: 1, its own tables followed by the `holds` table; 2, the two
//! functions. Both were released as files (`<participant>/migrations/0001_*.sql`,
//! `0002_ledger_functions.sql`), and sqlx refuses to start on a database where an applied
//! migration's checksum (SHA-384 of its SQL) differs from the one it embeds ("previously applied
//! but has been modified"). So the renderings are byte for byte those files, under the same
//! versions and descriptions — each participant's tests pin the released checksums — and a database
//! migrated before the templates existed keeps working. The price: the rendered text is history.
//! A change to the ledger is a new migration (`CREATE OR REPLACE FUNCTION`), never an edit of the
//! templates, which the pinned checksums would refuse.
//!
//! Why rendered in Rust when the migrator is built, and neither by a build script nor at start-up:
//! - functions created at start-up (`CREATE OR REPLACE` after connecting) would let the replicas of
//!   two versions in a rolling update each put back their own body, and concurrent `CREATE OR
//!   REPLACE` of one function fails ("tuple concurrently updated"); a migration is applied once, in
//!   order, under sqlx's advisory lock;
//! - `sqlx::migrate!` only reads a directory inside the crate (no `OUT_DIR`), so a build script
//!   would also have to re-implement the macro's output, checksums included; here rendering is a
//!   few replacements, and [`Migration::new`] checksums the SQL exactly as the macro does.

use super::LedgerSpec;
use crate::{config::ParticipantConfig, db};
use anyhow::Result;
use sqlx::{
    AssertSqlSafe, PgPool, SqlSafeStr,
    migrate::{Migration, MigrationType, Migrator},
};
use std::{borrow::Cow, sync::OnceLock};

const HOLDS: &str = include_str!("holds.sql");
const FUNCTIONS: &str = include_str!("functions.sql");

/// The released files wrapped their comment paragraphs greedily at this width.
const COMMENT_WIDTH: usize = 100;

/// Where one participant keeps what the ledger holds: a table with one row per resource and a
/// column of what is still available (never negative: the take is conditional on it).
#[derive(Debug)]
pub struct Resources {
    /// The table of resources, e.g. `accounts`.
    pub table: &'static str,
    /// Its primary key, which the ledger's `resource` (text) names.
    pub key: &'static str,
    /// The key's SQL type: the ledger's text `resource` is cast to it.
    pub key_type: KeyType,
    /// The column of what is still available, e.g. `wallet`.
    pub available: &'static str,
    /// Refusal code of an action asking more than is available (a resource that does not exist
    /// is refused with [`LedgerSpec::unknown_code`]).
    pub exhausted_code: &'static str,
    /// Words of the functions' header comment: `(here: <summary>)`, e.g.
    /// `accounts.wallet by username, cents`.
    pub summary: &'static str,
    /// Words of the `holds` table's comment after "one row per order, ": what `resource` and
    /// `quantity` are here, with the line break (`\n-- `) it was released with.
    pub holds_meaning: &'static str,
}

#[derive(Debug, Clone, Copy)]
pub enum KeyType {
    Text,
    Bigint,
}

impl KeyType {
    /// What follows a text expression to make it a key of this type.
    fn cast(self) -> &'static str {
        match self {
            KeyType::Text => "",
            KeyType::Bigint => "::bigint",
        }
    }
}

/// A participant's own tables: its `tables.sql`, under the description sqlx derived from the file
/// name they were released under (`0001_accounts.sql` → `accounts`); and, once rendered, the
/// participant's migrations.
#[derive(Debug)]
pub struct OwnTables {
    description: &'static str,
    sql: &'static str,
    migrator: OnceLock<Migrator>,
}

impl OwnTables {
    pub const fn new(description: &'static str, sql: &'static str) -> Self {
        Self {
            description,
            sql,
            migrator: OnceLock::new(),
        }
    }
}

impl LedgerSpec {
    /// The participant's database, reached (waiting for it) and migrated.
    pub async fn connect(&self, config: &ParticipantConfig) -> Result<PgPool> {
        db::connect_and_migrate(&config.database, self.migrator()).await
    }

    /// The participant's migrations: 1 (its tables' description) is its own tables followed by
    /// the `holds` table, 2 (`ledger functions`) the ledger's functions.
    pub fn migrator(&self) -> &Migrator {
        self.tables.migrator.get_or_init(|| {
            let tables = &self.tables;
            let first = format!("{}\n{}", without_notes(tables.sql), self.holds_sql());
            Migrator::with_migrations(vec![
                migration(1, tables.description, first),
                migration(2, "ledger functions", self.functions_sql()),
            ])
        })
    }

    fn holds_sql(&self) -> String {
        render(HOLDS, &[("holds_meaning", self.resources.holds_meaning)])
    }

    fn functions_sql(&self) -> String {
        let r = &self.resources;
        let sql = render(
            FUNCTIONS,
            &[
                ("summary", r.summary),
                ("table", r.table),
                ("key", r.key),
                ("key_cast", r.key_type.cast()),
                ("available", r.available),
                ("refusal", &self.refusal_sql()),
            ],
        );
        fill_comments(&sql)
    }

    /// The code a refused take records. One code needs no lookup; two are told apart by whether
    /// the resource exists — after the failed take, in its own statement, like every step.
    fn refusal_sql(&self) -> String {
        let r = &self.resources;
        if r.exhausted_code == self.unknown_code {
            return format!("'{}'", r.exhausted_code);
        }
        let (table, key, cast) = (r.table, r.key, r.key_type.cast());
        let (exhausted, unknown) = (r.exhausted_code, self.unknown_code);
        format!(
            "CASE WHEN EXISTS (SELECT 1 FROM {table} WHERE {key} = p_resource{cast})
                         THEN '{exhausted}' ELSE '{unknown}' END"
        )
    }
}

fn migration(version: i64, description: &'static str, sql: String) -> Migration {
    let no_tx = false;
    Migration::new(
        version,
        Cow::Borrowed(description),
        MigrationType::Simple,
        AssertSqlSafe(sql).into_sql_str(),
        no_tx,
    )
}

/// `template` without its leading `--!` lines: notes for its reader, not part of the migration.
fn without_notes(template: &str) -> &str {
    let mut rest = template;
    while let Some(line_end) = rest.strip_prefix("--!").and_then(|_| rest.find('\n')) {
        rest = &rest[line_end + 1..];
    }
    rest
}

/// `template`'s text with every `{{name}}` replaced by its value; a placeholder left over is a
/// bug in this module, found by the first test that migrates.
fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut sql = without_notes(template).to_owned();
    for (name, value) in values {
        sql = sql.replace(&format!("{{{{{name}}}}}"), value);
    }
    assert!(
        !sql.contains("{{"),
        "a ledger template placeholder has no value:\n{sql}"
    );
    sql
}

/// Re-wraps every top-level comment paragraph (consecutive lines starting with `-- `) greedily to
/// [`COMMENT_WIDTH`] columns; comments inside the function bodies (indented) are left as written.
fn fill_comments(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut words: Vec<&str> = Vec::new();
    for line in sql.split_inclusive('\n') {
        match line.strip_prefix("-- ") {
            Some(text) => words.extend(text.split_whitespace()),
            None => {
                fill_paragraph(&words, &mut out);
                words.clear();
                out.push_str(line);
            }
        }
    }
    fill_paragraph(&words, &mut out);
    out
}

fn fill_paragraph(words: &[&str], out: &mut String) {
    let mut line = String::from("--");
    for word in words {
        if line != "--" && line.chars().count() + 1 + word.chars().count() > COMMENT_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line.truncate(2);
        }
        line.push(' ');
        line.push_str(word);
    }
    if line != "--" {
        out.push_str(&line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_not_rendered() {
        assert_eq!(without_notes("--! a\n--! b\nSELECT 1;\n"), "SELECT 1;\n");
        assert_eq!(
            without_notes("SELECT 1;\n--! kept\n"),
            "SELECT 1;\n--! kept\n"
        );
    }

    #[test]
    fn comment_paragraphs_are_filled_and_code_is_not() {
        let long = "word ".repeat(30);
        let sql = format!("-- {long}\n-- end\nSELECT 1;\n    -- {long}\n");
        let filled = fill_comments(&sql);
        let lines: Vec<&str> = filled.lines().collect();
        assert!(
            lines[..2].iter().all(|l| l.len() <= COMMENT_WIDTH),
            "{filled}"
        );
        assert_eq!(lines[2], "SELECT 1;");
        assert_eq!(lines[3], format!("    -- {long}"));
    }
}
