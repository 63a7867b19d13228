//! The system tests of tools: real processes, real stores, real HTTP — one test binary, so that
//! CI links it once. Each module says what it owns; `.config/nextest.toml` picks the heavy ones
//! out by module (`test(/^crash::/)`, ...) for their test groups.

mod audit;
mod chaos_teeth;
mod crash;
mod fault_proxy;
mod floor;
mod gateway;
mod manifest;
mod postgres_roles;
mod saga_e2e;
mod stack;
mod startup;
mod store_restarts;
mod supervisor;
