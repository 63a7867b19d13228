//! billing's integration tests, one binary: the account API, the charge step of the saga with the
//! shared participant contract and conservation property, concurrent deposit retries, and the
//! real binary refusing weak secrets.

mod accounts;
mod charges;
mod deposit_retries;
mod helpers;
mod weak_secrets;
