//! The README's configuration table, generated: one row per environment variable of the
//! services, taken from their own configuration (the `clap::Command` of each [`Binary`], the same
//! list the manifest check uses) and from the logging variables every service reads outside it
//! ([`shop_common::telemetry::VARIABLES`]). tools/tests/system/manifest.rs fails when the README's
//! block differs from [`render`], and rewrites it when asked ([`REGENERATE`]).

use crate::manifest::Binary;
use anyhow::{Context, Result, bail};
use std::collections::BTreeSet;

/// The command that rewrites the README's block from the code.
pub const REGENERATE: &str =
    "UPDATE_CONFIG_TABLE=1 cargo nextest run --workspace --test system manifest::config_table";

pub const BEGIN: &str = "<!-- config-table:begin -->";
pub const END: &str = "<!-- config-table:end -->";

/// One row: a variable as one or more binaries declare it.
struct Row {
    variable: String,
    services: Vec<String>,
    default: String,
    /// "required", "secret" (its value hidden from `--help`), both or neither.
    requirement: String,
    meaning: String,
}

impl Row {
    fn same_declaration(&self, other: &Row) -> bool {
        (
            &self.variable,
            &self.default,
            &self.requirement,
            &self.meaning,
        ) == (
            &other.variable,
            &other.default,
            &other.requirement,
            &other.meaning,
        )
    }
}

/// A Markdown table cell: one line, no column separator.
fn cell(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

fn rows_of(binary: &Binary) -> Result<Vec<Row>> {
    let service = binary.program().to_owned();
    binary
        .config
        .get_arguments()
        .filter_map(|arg| Some((arg, arg.get_env()?.to_string_lossy().into_owned())))
        .map(|(arg, variable)| {
            let meaning = arg
                .get_long_help()
                .or_else(|| arg.get_help())
                .map(|help| cell(&help.to_string()))
                .filter(|help| !help.is_empty())
                .with_context(|| {
                    format!("{variable} ({service}) has no doc comment to say what it means")
                })?;
            let defaults: Vec<String> = arg
                .get_default_values()
                .iter()
                .map(|v| v.to_string_lossy().into_owned())
                .collect();
            let required = arg.is_required_set() && defaults.is_empty();
            let default = if defaults.is_empty() {
                if required { "–" } else { "unset" }.to_owned()
            } else if arg.is_hide_default_value_set() {
                // Computed where the process runs (a hostname, a pid): the meaning says how.
                "computed".to_owned()
            } else {
                format!("`{}`", defaults.join(","))
            };
            let secret = arg.is_hide_env_values_set();
            let requirement = match (required, secret) {
                (true, true) => "required, secret",
                (true, false) => "required",
                (false, true) => "secret",
                (false, false) => "",
            };
            Ok(Row {
                variable,
                services: vec![service.clone()],
                default,
                requirement: requirement.to_owned(),
                meaning,
            })
        })
        .collect()
}

/// The table (without the markers): variables every service reads first, then the others in
/// the order of the binaries; a variable declared differently by two services gets a row each.
pub fn render(binaries: &[Binary]) -> Result<String> {
    let mut rows: Vec<Row> = Vec::new();
    for binary in binaries {
        for row in rows_of(binary)? {
            match rows.iter_mut().find(|seen| seen.same_declaration(&row)) {
                Some(seen) => seen.services.extend(row.services),
                None => rows.push(row),
            }
        }
    }
    let everyone: BTreeSet<&str> = binaries.iter().map(Binary::program).collect();
    let read_by_all = |row: &Row| {
        row.services
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            == everyone
    };
    let (mut common, specific): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(read_by_all);
    common.extend(
        shop_common::telemetry::VARIABLES
            .iter()
            .map(|variable| Row {
                variable: variable.name.to_owned(),
                services: everyone.iter().map(|s| s.to_string()).collect(),
                default: format!("`{}`", variable.default),
                requirement: String::new(),
                meaning: cell(variable.help),
            }),
    );
    let mut table = String::from(
        "| variable | read by | default | required, secret | meaning |\n|---|---|---|---|---|\n",
    );
    for row in common.iter().chain(&specific) {
        let services = if read_by_all(row) {
            "all".to_owned()
        } else {
            row.services.join(", ")
        };
        table.push_str(&format!(
            "| `{}` | {services} | {} | {} | {} |\n",
            row.variable, row.default, row.requirement, row.meaning
        ));
    }
    Ok(table)
}

/// `document` with the text between [`BEGIN`] and [`END`] replaced by `table`.
pub fn with_table(document: &str, table: &str) -> Result<String> {
    let (Some(begin), Some(end)) = (document.find(BEGIN), document.find(END)) else {
        bail!("no block between {BEGIN:?} and {END:?}");
    };
    if end < begin || document.matches(BEGIN).count() != 1 || document.matches(END).count() != 1 {
        bail!("the block between {BEGIN:?} and {END:?} must be there exactly once");
    }
    let inside = begin + BEGIN.len();
    Ok(format!(
        "{}\n<!-- generated from each service's config.rs (edit the doc comments there): {REGENERATE} -->\n{table}{}",
        &document[..inside],
        &document[end..]
    ))
}
