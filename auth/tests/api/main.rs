//! auth's integration tests, one binary: sign-up, tokens and refresh over real HTTP with a real
//! billing behind auth, a login flood, and auth's database going down.

mod helpers;
mod signup;
