//! auth: sign-up and tokens.

use shop_common::service;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    big_allocations_in_their_own_mappings();
    service::main(auth::run).await
}

/// glibc raises its mmap threshold to the largest chunk freed so far, so after the first 19 MiB
/// Argon2 buffer is freed the next ones come from its heaps, which it keeps after a burst. A fixed
/// threshold keeps every large buffer in a mapping of its own, returned to the OS when freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn big_allocations_in_their_own_mappings() {
    // SAFETY: mallopt only sets a malloc tunable; nothing has allocated a large buffer yet.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn big_allocations_in_their_own_mappings() {}
