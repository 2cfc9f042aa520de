//! Per-container figures for containerd's Stats call, in its cgroup v1 metrics format (which
//! containerd's CRI and `ctr task metrics` decode on cgroup v1 and v2 hosts alike).

use std::sync::atomic::{AtomicU64, Ordering};

use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics,
};
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::protobuf::well_known_types::any::Any;

/// The type URL containerd registers cgroup v1 metrics under.
pub const METRICS_TYPE_URL: &str = "io.containerd.cgroups.v1.Metrics";

/// What one Wasm container uses, updated while it runs.
#[derive(Debug, Default)]
pub struct Usage {
    /// Bytes of linear memory the guest holds.
    pub memory_bytes: AtomicU64,
    /// The most linear memory it ever held.
    pub memory_peak_bytes: AtomicU64,
    /// CPU time spent running it, in nanoseconds.
    pub cpu_nanos: AtomicU64,
}

impl Usage {
    /// A copy holding the given figures (for containers measured elsewhere, e.g. by runc).
    pub fn snapshot(cpu_nanos: u64, memory_bytes: u64, peak: u64) -> Usage {
        let usage = Usage::default();
        usage.cpu_nanos.store(cpu_nanos, Ordering::Relaxed);
        usage.memory_bytes.store(memory_bytes, Ordering::Relaxed);
        usage.memory_peak_bytes.store(peak, Ordering::Relaxed);
        usage
    }

    pub fn memory_peak(&self) -> u64 {
        self.memory_peak_bytes.load(Ordering::Relaxed)
    }

    pub fn metrics(&self, memory_limit: Option<u64>) -> Metrics {
        let memory = self.memory_bytes.load(Ordering::Relaxed);
        let peak = self.memory_peak_bytes.load(Ordering::Relaxed).max(memory);
        let cpu = self.cpu_nanos.load(Ordering::Relaxed);
        let mut metrics = Metrics::new();
        let mut usage = MemoryEntry::new();
        usage.usage = memory;
        usage.max = peak;
        usage.limit = memory_limit.unwrap_or(u64::MAX);
        let mut mem = MemoryStat::new();
        mem.usage = Some(usage).into();
        mem.rss = memory;
        mem.total_rss = memory;
        metrics.memory = Some(mem).into();
        let mut cpu_usage = CPUUsage::new();
        cpu_usage.total = cpu;
        cpu_usage.user = cpu;
        let mut cpu_stat = CPUStat::new();
        cpu_stat.usage = Some(cpu_usage).into();
        metrics.cpu = Some(cpu_stat).into();
        metrics
    }

    pub fn metrics_any(&self, memory_limit: Option<u64>) -> Result<Any, String> {
        let value = self
            .metrics(memory_limit)
            .write_to_bytes()
            .map_err(|e| format!("encoding metrics: {e}"))?;
        let mut any = Any::new();
        any.type_url = METRICS_TYPE_URL.to_string();
        any.value = value;
        Ok(any)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_carry_memory_and_cpu() {
        let usage = Usage::default();
        usage.memory_bytes.store(2 << 20, Ordering::Relaxed);
        usage.cpu_nanos.store(5_000_000, Ordering::Relaxed);
        let any = usage.metrics_any(Some(64 << 20)).expect("encodes");
        assert_eq!(any.type_url, METRICS_TYPE_URL);
        let decoded = Metrics::parse_from_bytes(&any.value).expect("decodes");
        assert_eq!(decoded.memory.usage.usage, 2 << 20);
        assert_eq!(decoded.memory.usage.limit, 64 << 20);
        assert_eq!(decoded.cpu.usage.total, 5_000_000);
    }
}
