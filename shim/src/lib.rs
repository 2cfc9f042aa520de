//! `containerd-shim-spore-v1`: a containerd shim v2 that runs WebAssembly components in-process
//! on one shared wasmtime engine.
//!
//! The crate is a library so that the parts that do not need containerd (loading, classifying and
//! running Wasm, building the guest's WASI view from an OCI spec) are tested directly; `main.rs`
//! only hands control to the `containerd-shim` crate.

pub mod cache;
pub mod container;
pub mod content;
pub mod cputime;
pub mod engine;
pub mod error;
pub mod exit;
pub mod guest_source;
pub mod http;
pub mod io;
pub mod legacy;
pub mod limits;
pub mod logging;
pub mod options;
pub mod pod;
pub mod reaper;
pub mod rootfs;
pub mod shim;
pub mod spec;
pub mod stats;
pub mod task;
pub mod wasi;
pub mod wasm_kind;

/// The runtime type containerd knows this shim by.
pub const RUNTIME_ID: &str = "io.containerd.spore.v1";
