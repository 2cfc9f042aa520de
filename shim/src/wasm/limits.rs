//! Per-container resource limits enforced inside wasmtime: the OCI spec's memory limit caps the
//! sum of the guest's linear memories, and the bytes in use are shared with `Stats`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use wasmtime::ResourceLimiter;

use crate::host::stats::Usage;

/// A guest may not grow a table past this many elements (no OCI field maps onto tables).
const MAX_TABLE_ELEMENTS: usize = 10_000_000;

#[derive(Debug, thiserror::Error)]
#[error(
    "memory limit exceeded: the container's memory limit is {limit} bytes and the guest asked for {requested} bytes of linear memory"
)]
pub struct MemoryLimitExceeded {
    pub limit: u64,
    pub requested: u64,
}

pub struct GuestLimits {
    memory_limit: Option<u64>,
    usage: Arc<Usage>,
}

impl GuestLimits {
    pub fn new(memory_limit: Option<u64>, usage: Arc<Usage>) -> Self {
        GuestLimits {
            memory_limit,
            usage,
        }
    }
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let in_use = self.usage.memory_bytes.load(Ordering::Relaxed);
        let requested = in_use.saturating_sub(current as u64) + desired as u64;
        if let Some(limit) = self.memory_limit
            && requested > limit
        {
            return Err(MemoryLimitExceeded { limit, requested }.into());
        }
        self.usage.memory_bytes.store(requested, Ordering::Relaxed);
        self.usage
            .memory_peak_bytes
            .fetch_max(requested, Ordering::Relaxed);
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

    #[test]
    fn growth_within_the_limit_is_counted() {
        let used = Arc::new(Usage::default());
        let mut limits = GuestLimits::new(Some(1 << 20), used.clone());
        assert!(limits.memory_growing(0, 65536, None).expect("fits"));
        assert!(limits.memory_growing(65536, 131072, None).expect("fits"));
        assert_eq!(used.memory_bytes.load(Ordering::Relaxed), 131072);
    }

    #[test]
    fn growth_past_the_limit_fails_with_a_message() {
        let used = Arc::new(Usage::default());
        let mut limits = GuestLimits::new(Some(100_000), used.clone());
        assert!(limits.memory_growing(0, 65536, None).expect("fits"));
        let err = limits
            .memory_growing(65536, 131072, None)
            .expect_err("over the limit");
        assert_eq!(
            err.to_string(),
            "memory limit exceeded: the container's memory limit is 100000 bytes and the guest asked for 131072 bytes of linear memory"
        );
        assert_eq!(used.memory_bytes.load(Ordering::Relaxed), 65536);
    }

    #[test]
    fn no_limit_means_any_growth() {
        let used = Arc::new(Usage::default());
        let mut limits = GuestLimits::new(None, used);
        assert!(limits.memory_growing(0, 1 << 32, None).expect("no limit"));
    }
}
