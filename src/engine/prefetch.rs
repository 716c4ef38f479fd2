//! A hint to start loading memory that will be read soon, without waiting for it.
//!
//! The state's tables are far larger than the caches, and the customers and ids of a stream
//! land on them at random: each lookup is a cache miss. Reading a slot early (an ordinary
//! load) only moved the stall, since a load that misses holds its place in the processor's
//! queue of instructions until it completes; a prefetch retires at once, so the misses of
//! the next few events overlap with the work on this one.

/// Starts bringing the cache line holding `value` into all levels of cache.
#[inline(always)]
pub fn prefetch<T>(value: &T) {
    #[cfg(all(target_arch = "x86_64", target_feature = "sse"))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(target_arch = "x86_64", target_feature = "sse")))]
    let _ = value;
}
