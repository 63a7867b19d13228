//! slots' integration tests, one binary: the courier step and the slot list over real HTTP and
//! Postgres, the shared participant contract, and the randomized conservation property.

mod bookings;
mod conservation;
mod helpers;
