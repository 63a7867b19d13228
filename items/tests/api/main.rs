//! items' integration tests, one binary: the reservation step and the catalog over real HTTP and
//! Postgres, the shared participant contract, and the randomized conservation property.

mod conservation;
mod helpers;
mod reservations;
