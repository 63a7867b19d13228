//! Tools that drive the whole saga shop from the outside, as a client would: the real-process
//! [`stack`] harness (end-to-end tests, `chaos`), the shared HTTP [`client`], the order
//! [`workload`] (mixes, expected outcomes), and the [`audit`] that checks, straight in the
//! databases, that no money, stock or courier was created or lost; and the [`manifest`] check
//! of deploy-services.yml against the binaries' own configuration, which also gives the README its
//! [`config_table`].
//!
//! Binaries: `loadgen` (throughput and latency against a running stack), `chaos` (kill -9 the
//! services under load, then audit) and `gateway-config` (the local nginx gateway's config,
//! rendered from the Kubernetes Ingress: [`gateway`]).

pub mod audit;
pub mod campaign;
pub mod config_table;
pub mod gateway;
pub mod local;
pub mod manifest;
pub mod nemesis;
pub mod procs;
pub mod proxy;
pub mod stack;
pub mod stores;
pub mod workload;

/// The shared HTTP client, its own crate so that the services' tests use it too.
pub use shop_client as client;
