//! Tools that drive the whole saga shop from the outside, as a client would: the real-process
//! [`stack`] harness (end-to-end tests, `chaos`), the shared HTTP [`client`], the order
//! [`workload`] (mixes, expected outcomes), and the [`audit`] that checks, straight in the
//! databases, that no money, stock or courier was created or lost; and the [`manifest`] check
//! of deploy-services.yml against the binaries' own configuration, which also gives the README its
//! [`config_table`]; [`fuzz`] runs schemathesis from the stack's OpenAPI document.
//!
//! Binaries: `loadgen` (throughput and latency against a running stack), `chaos` (kill -9 the
//! services under load, then audit) and `gateway-config` (the local nginx gateway's config,
//! rendered from the Kubernetes Ingress: [`gateway`]).

/// `Display` and `FromStr` of a unit enum by its `name()`, over its `ALL`: how services, fault
/// kinds and order kinds are named on the command line and in reports. An unknown name is refused
/// with the list of known ones.
macro_rules! named {
    ($type:ty, $what:literal) => {
        impl std::fmt::Display for $type {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $type {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .into_iter()
                    .find(|k| k.name() == s)
                    .ok_or_else(|| {
                        let known: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                        format!("unknown {} {s:?} ({})", $what, known.join(", "))
                    })
            }
        }
    };
}

pub mod audit;
pub mod bench;
pub mod campaign;
pub mod checks;
pub mod config_table;
pub mod floor;
pub mod fuzz;
pub mod gateway;
pub mod local;
pub mod manifest;
pub mod nemesis;
pub mod procs;
pub mod profile;
pub mod proxy;
pub mod stack;
pub mod stores;
pub mod workload;

/// The shared HTTP client, its own crate so that the services' tests use it too.
pub use shop_client as client;
