//! A container's memory limit, enforced inside wasmtime on the instances alive at one time.
//!
//! The OCI spec's memory limit is a [`MemoryBudget`] the container's instances share: a command
//! has one instance; an HTTP server has one per request in flight, each holding what its linear
//! memories use and giving it back when the request ends (the store, and with it its
//! [`GuestLimits`], is dropped). Growth is reserved atomically, so concurrent requests cannot
//! together pass the limit. A growth fails two ways:
//! - [`MemoryLimitExceeded`]: the instance alone would pass the limit (a 500 for a request, a
//!   trap for a command);
//! - [`MemoryBusy`]: it fits the limit, but not beside the requests in flight (an HTTP server
//!   answers 503 with `Retry-After`).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use wasmtime::ResourceLimiter;

/// A guest may not grow a table past this many elements (no OCI field maps onto tables).
const MAX_TABLE_ELEMENTS: usize = 10_000_000;

/// Host handles (open files, sockets, streams, pollables) one instance may hold at once. Each
/// open file is a descriptor of the shim, which serves the whole pod: without a cap, one guest
/// could take every descriptor the shim may open (wasmtime's default is 1,000,000).
pub const MAX_GUEST_HANDLES: usize = 4096;

/// What wasmtime says when an instance's handle table is full.
pub const HANDLES_FULL: &str = "resource table has no free keys";

/// A new store's handle table, capped at [`MAX_GUEST_HANDLES`].
pub fn handle_table() -> wasmtime::component::ResourceTable {
    let mut table = wasmtime::component::ResourceTable::new();
    table.set_max_capacity(MAX_GUEST_HANDLES);
    table
}

#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: the container's memory limit is {limit} bytes and the guest asked for {requested} bytes of linear memory"
)]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub requested: u64,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "memory busy: the guest asked for {requested} bytes of linear memory, which fits the container's limit of {limit} bytes, but {in_use} bytes are in use by other requests"
)]
pub struct MemoryBusy {
    pub limit: u64,
    pub requested: u64,
    pub in_use: u64,
}

/// The memory of a container's live instances, against its limit.
#[derive(Debug, Default)]
pub struct MemoryBudget {
    limit: Option<u64>,
    in_use: AtomicU64,
    peak: AtomicU64,
}

impl MemoryBudget {
    pub fn new(limit: Option<u64>) -> Self {
        MemoryBudget {
            limit,
            ..MemoryBudget::default()
        }
    }

    pub fn limit(&self) -> Option<u64> {
        self.limit
    }

    /// Bytes of linear memory the container's live instances hold now.
    pub fn in_use(&self) -> u64 {
        self.in_use.load(Ordering::Relaxed)
    }

    /// The most they ever held at once.
    pub fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }

    /// Takes `bytes` more, unless that passes the limit; returns what was in use otherwise.
    fn reserve(&self, bytes: u64) -> Result<(), u64> {
        let mut current = self.in_use.load(Ordering::Relaxed);
        loop {
            let next = current.saturating_add(bytes);
            if self.limit.is_some_and(|limit| next > limit) {
                return Err(current);
            }
            match self.in_use.compare_exchange_weak(
                current,
                next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.peak.fetch_max(next, Ordering::Relaxed);
                    return Ok(());
                }
                Err(actual) => current = actual,
            }
        }
    }

    fn release(&self, bytes: u64) {
        let _ = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(bytes))
            });
    }
}

/// The limiter of one instance (one store): what it holds of its container's budget.
pub struct GuestLimits {
    budget: Arc<MemoryBudget>,
    held: u64,
    /// Every guest's store holds its limits: while one exists, a guest may run, and the
    /// engine's epoch must tick for its CPU time and Kill to be enforced.
    _epoch: crate::wasm::engine::Ticking,
}

impl GuestLimits {
    pub fn new(budget: Arc<MemoryBudget>) -> Self {
        GuestLimits {
            budget,
            held: 0,
            _epoch: crate::wasm::engine::Ticking::new(),
        }
    }
}

impl Drop for GuestLimits {
    fn drop(&mut self) {
        self.budget.release(self.held);
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = (desired as u64).saturating_sub(current as u64);
        let requested = self.held.saturating_add(more);
        if let Some(limit) = self.budget.limit {
            if requested > limit {
                return Err(MemoryLimitExceeded { limit, requested }.into());
            }
            if let Err(in_use) = self.budget.reserve(more) {
                return Err(MemoryBusy {
                    limit,
                    requested,
                    in_use,
                }
                .into());
            }
        } else {
            let _ = self.budget.reserve(more);
        }
        self.held = requested;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 65536;

    #[test]
    fn growth_within_the_limit_is_counted_and_given_back_when_the_instance_goes() {
        let budget = Arc::new(MemoryBudget::new(Some(1 << 20)));
        let mut limits = GuestLimits::new(budget.clone());
        assert!(limits.memory_growing(0, PAGE, None).expect("fits"));
        assert!(limits.memory_growing(PAGE, 2 * PAGE, None).expect("fits"));
        assert_eq!(budget.in_use(), 2 * PAGE as u64);
        drop(limits);
        assert_eq!(budget.in_use(), 0);
        assert_eq!(budget.peak(), 2 * PAGE as u64);
    }

    #[test]
    fn one_instance_past_the_limit_is_exceeded() {
        let budget = Arc::new(MemoryBudget::new(Some(100_000)));
        let mut limits = GuestLimits::new(budget.clone());
        assert!(limits.memory_growing(0, PAGE, None).expect("fits"));
        let err = limits
            .memory_growing(PAGE, 2 * PAGE, None)
            .expect_err("over the limit");
        assert_eq!(
            err.to_string(),
            "memory limit exceeded: the container's memory limit is 100000 bytes and the guest asked for 131072 bytes of linear memory"
        );
        assert!(err.downcast_ref::<MemoryLimitExceeded>().is_some());
        assert_eq!(budget.in_use(), PAGE as u64);
    }

    #[test]
    fn instances_that_together_pass_the_limit_are_busy_and_the_next_fits_again() {
        let budget = Arc::new(MemoryBudget::new(Some(3 * PAGE as u64)));
        let mut first = GuestLimits::new(budget.clone());
        let mut second = GuestLimits::new(budget.clone());
        assert!(first.memory_growing(0, 2 * PAGE, None).expect("fits"));
        let err = second
            .memory_growing(0, 2 * PAGE, None)
            .expect_err("does not fit beside the first");
        let busy = err.downcast_ref::<MemoryBusy>().expect("busy");
        assert_eq!(
            (busy.in_use, busy.requested),
            (2 * PAGE as u64, 2 * PAGE as u64)
        );
        drop(first);
        assert!(second.memory_growing(0, 2 * PAGE, None).expect("fits now"));
        assert_eq!(budget.in_use(), 2 * PAGE as u64);
    }

    #[test]
    fn a_thousand_requests_one_after_another_never_add_up() {
        let budget = Arc::new(MemoryBudget::new(Some(64 << 20)));
        for _ in 0..1000 {
            let mut limits = GuestLimits::new(budget.clone());
            assert!(limits.memory_growing(0, 17 * PAGE, None).expect("fits"));
        }
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn no_limit_means_any_growth_still_counted() {
        let budget = Arc::new(MemoryBudget::new(None));
        let mut limits = GuestLimits::new(budget.clone());
        assert!(limits.memory_growing(0, 1 << 32, None).expect("no limit"));
        assert_eq!(budget.in_use(), 1 << 32);
    }
}
