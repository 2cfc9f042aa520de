//! `containerd-shim-spore-v1`: a containerd shim v2 that runs WebAssembly components in-process
//! on one shared wasmtime engine, one shim process per pod, and the pod's other containers
//! through runc.
//!
//! Where to look:
//! - [`containerd`]: the plumbing containerd sees: the binary's actions (start, delete, serve),
//!   the socket, the Task service, events, runtime options;
//! - [`container`]: one container and its processes, Wasm or native, and the factory that
//!   decides which at Create;
//! - [`wasm`]: the Wasm runtime: engine, compile cache, images, WASI, limits, HTTP serving;
//! - [`host`]: the Linux host: the pod's cgroup and network namespace, stdio, rootfs, reaping;
//! - [`spec`], [`signal`], [`error`]: the OCI spec as the shim reads it, signals, errors.
//!
//! The crate is a library so that everything below the ttrpc layer is tested directly; `main.rs`
//! only calls [`containerd::bootstrap::main`].

mod allocator;
pub mod container;
pub mod containerd;
pub mod error;
pub mod faults;
pub mod host;
pub mod signal;
pub mod spec;
pub mod wasm;

/// The runtime type containerd knows this shim by.
pub const RUNTIME_ID: &str = spore_format::RUNTIME_TYPE;
