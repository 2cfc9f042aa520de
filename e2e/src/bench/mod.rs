//! Spore's benchmarks (`spore-bench start|pod|languages|http|kubelet`, run by `hack/bench.sh`):
//! task start latency through `ctr`, pod start latency and memory through the CRI, Spore against
//! runc on the same private containerd, the same through a cluster's kubelet, and HTTP throughput
//! against the peers. Results print as markdown tables.

pub mod args;
pub mod cache_cols;
pub mod ctr_events;
pub mod error;
pub mod fixture;
pub mod http;
pub mod kubelet;
pub mod languages;
pub mod pod;
pub mod pss;
pub mod start;
pub mod stats;
pub mod wrk;

pub use args::{BenchArgs, Mode};
pub use error::BenchError;
