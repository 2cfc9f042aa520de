//! Per-container figures for containerd's Stats call, in its cgroup v1 metrics format (which
//! containerd's CRI and `ctr task metrics` decode on cgroup v1 and v2 hosts alike).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics,
};
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::protobuf::well_known_types::any::Any;

use crate::container::ResourceUse;
use crate::error::ShimError;
use crate::wasm::limits::MemoryBudget;

/// The type URL containerd registers cgroup v1 metrics under.
pub const METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";

/// What one Wasm container uses, updated while it runs.
#[derive(Debug, Default)]
pub struct Usage {
    /// The linear memory of its live instances, against its memory limit.
    pub memory: Arc<MemoryBudget>,
    /// CPU time spent running it, in nanoseconds.
    pub cpu_nanos: AtomicU64,
}

impl Usage {
    /// A container's figures, with its memory limit (none: `None`).
    pub fn new(memory_limit: Option<u64>) -> Self {
        Usage {
            memory: Arc::new(MemoryBudget::new(memory_limit)),
            cpu_nanos: AtomicU64::new(0),
        }
    }

    /// The figures Stats reports.
    pub fn now(&self) -> ResourceUse {
        ResourceUse {
            cpu_nanos: self.cpu_nanos.load(Ordering::Relaxed),
            memory_bytes: self.memory.in_use(),
            memory_peak_bytes: self.memory.peak(),
            memory_limit: self.memory.limit(),
        }
    }
}

/// containerd's metrics for a container's resource use.
pub fn metrics(usage: &ResourceUse) -> Metrics {
    let mut metrics = Metrics::new();
    let mut memory = MemoryEntry::new();
    memory.usage = usage.memory_bytes;
    memory.max = usage.memory_peak_bytes.max(usage.memory_bytes);
    memory.limit = usage.memory_limit.unwrap_or(u64::MAX);
    let mut mem = MemoryStat::new();
    mem.usage = Some(memory).into();
    mem.rss = usage.memory_bytes;
    mem.total_rss = usage.memory_bytes;
    metrics.memory = Some(mem).into();
    let mut cpu_usage = CPUUsage::new();
    cpu_usage.total = usage.cpu_nanos;
    cpu_usage.user = usage.cpu_nanos;
    let mut cpu = CPUStat::new();
    cpu.usage = Some(cpu_usage).into();
    metrics.cpu = Some(cpu).into();
    metrics
}

/// [`metrics`] as the `Any` a Stats response carries.
pub fn metrics_any(usage: &ResourceUse) -> Result<Any, ShimError> {
    let value = metrics(usage)
        .write_to_bytes()
        .map_err(|e| ShimError::Encode {
            what: "metrics",
            reason: e.to_string(),
        })?;
    let mut any = Any::new();
    any.type_url = METRICS_TYPE_URL.to_string();
    any.value = value;
    Ok(any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_memory_and_cpu() {
        let usage = ResourceUse {
            cpu_nanos: 5_000_000,
            memory_bytes: 2 << 20,
            memory_peak_bytes: 3 << 20,
            memory_limit: Some(64 << 20),
        };
        let any = metrics_any(&usage).expect("encodes");
        assert_eq!(any.type_url, METRICS_TYPE_URL);
        let decoded = Metrics::parse_from_bytes(&any.value).expect("decodes");
        assert_eq!(decoded.memory.usage.usage, 2 << 20);
        assert_eq!(decoded.memory.usage.limit, 64 << 20);
        assert_eq!(decoded.memory.usage.max, 3 << 20);
        assert_eq!(decoded.cpu.usage.total, 5_000_000);
    }
}
