//! One container served by this shim, and its processes. What runs in it is decided once, at
//! Create, by [`factory`]: a Wasm guest in this process ([`wasm`]) or an ordinary Linux container
//! through runc ([`native`]). The Task service only talks to the [`Container`] and [`Process`]
//! traits, so it can be tested with stubs.
//!
//! - [`process`]: the [`Process`] trait and the state machine processes share;
//! - [`factory`]: from a Create request to a container;
//! - [`wasm`], [`native`]: the two kinds; [`runc`]: the runc binary, driven for one container;
//! - [`pod_sandbox`]: the pod's sandbox as the shim's own init, without runc;
//!   [`execs`]: a native container's exec processes; [`console`]: terminals of native processes.

pub mod console;
pub mod execs;
pub mod factory;
pub mod host_record;
pub mod native;
pub mod pod_sandbox;
pub mod process;
pub mod runc;
pub mod wasm;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::ShimError;
use crate::host::stdio::StdioPaths;
pub use process::{Lifecycle, Phase, Process, ProcessInfo, WindowSize};

/// How a container runs, decided at Create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerKind {
    /// A component exporting `wasi:cli/run`, run to completion.
    WasmCommand,
    /// A component exporting `wasi:http/incoming-handler`, served.
    WasmHttp,
    /// A WASI preview1 module exporting `_start`, run to completion.
    Preview1,
    /// An ordinary Linux container (the pod's sandbox, a sidecar), through runc.
    Native,
    /// The pod's sandbox as the shim's own init process (no runc).
    PodInit,
}

impl ContainerKind {
    pub fn describe(self) -> &'static str {
        match self {
            ContainerKind::WasmCommand => "wasi:cli/command component",
            ContainerKind::WasmHttp => "wasi:http/proxy component",
            ContainerKind::Preview1 => "WASI preview1 module",
            ContainerKind::Native => "native container (runc)",
            ContainerKind::PodInit => "pod sandbox (Spore's init)",
        }
    }

    pub fn is_wasm(self) -> bool {
        !matches!(self, ContainerKind::Native | ContainerKind::PodInit)
    }
}

impl std::fmt::Display for ContainerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// What task Create asks for, taken from containerd's request.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: Vec<crate::host::rootfs::RootfsMount>,
    pub stdio: StdioPaths,
    pub terminal: bool,
    /// containerd's runtime options: `(type_url, protobuf bytes)`.
    pub options: Option<(String, Vec<u8>)>,
}

/// What Exec asks for.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub exec_id: String,
    pub process: oci_spec::runtime::Process,
    pub stdio: StdioPaths,
    pub terminal: bool,
}

/// A container's resource use now, for Stats.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResourceUse {
    pub cpu_nanos: u64,
    pub memory_bytes: u64,
    pub memory_peak_bytes: u64,
    pub memory_limit: Option<u64>,
}

#[async_trait]
pub trait Container: Send + Sync {
    fn id(&self) -> &str;
    fn bundle(&self) -> &Path;
    fn kind(&self) -> ContainerKind;
    /// The init process (`None`) or exec process `exec_id`.
    fn process(&self, exec_id: Option<&str>) -> Result<Arc<dyn Process>, ShimError>;
    /// Adds an exec process (created, not started).
    async fn exec(&self, request: ExecRequest) -> Result<Arc<dyn Process>, ShimError>;
    /// Forgets a deleted exec process.
    fn remove_exec(&self, exec_id: &str) -> Result<(), ShimError>;
    async fn pause(&self) -> Result<(), ShimError>;
    async fn resume(&self) -> Result<(), ShimError>;
    /// Applies new resources (an OCI `LinuxResources`).
    async fn update(&self, resources: &oci_spec::runtime::LinuxResources) -> Result<(), ShimError>;
    async fn stats(&self) -> Result<ResourceUse, ShimError>;
    async fn pids(&self) -> Result<Vec<u32>, ShimError>;
}
