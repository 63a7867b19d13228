//! auth: owns the `auth` database (users and their Argon2id password hashes), signs users up —
//! creating their billing account before answering — and issues access and refresh JWTs.

mod config;
mod db;
mod domain;
mod error;
mod password;
mod routes;
mod startup;

pub use config::Config;
pub use password::PasswordConfig;
pub use startup::{MIGRATOR, build_router, openapi, run};
