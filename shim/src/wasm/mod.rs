//! The Wasm runtime: one shared [`engine`] per shim, guests [`compile`]d through the node's
//! compile [`cache`] from a rootfs file or an OCI Wasm artifact in containerd's [`content`] store
//! ([`source`]), linked against Spore's host ([`linker`]) and run ([`guest`]) in a WASI view of
//! their container ([`wasi`]) under its [`limits`]; [`http`] serves `wasi:http` components;
//! [`exit`] turns a guest's end into an exit status.

pub mod cache;
pub mod compile;
pub mod content;
pub mod engine;
pub mod exit;
pub mod guest;
pub mod hosted;
pub mod http;
pub mod limits;
pub mod linker;
pub mod name_lookup;
pub mod names;
pub mod source;
pub mod wasi;
