//! ensure-secrets' integration tests, one binary: the real binary against an in-memory Kubernetes
//! API, and its TLS trust against an `openssl s_server`.

mod against_a_fake_api;
mod support;
mod tls;
