//! Spore's end-to-end harness: real containerd, runc, CNI and an OCI registry, started privately
//! for each test, plus a CRI client that drives containerd the way the kubelet does.
//!
//! Start with [`containerd::Containerd::start`], [`registry::Registry::start`],
//! [`image`] for images and [`cri::CriClient::for_containerd`] for the kubelet's calls.

pub mod bench;
pub mod cgroup;
pub mod cleanup;
pub mod cluster;
pub mod cni;
pub mod config;
pub mod containerd;
pub mod cri;
pub mod cri_log;
pub mod dns;
pub mod fuzz;
pub mod http;
pub mod image;
pub mod pod;
pub mod registry;
pub mod tools;

pub use containerd::{Containerd, ContainerdOptions, PAUSE_IMAGE};
pub use cri::{Container, CriClient, Pod};
pub use cri_log::{LogStream, read_cri_log};
pub use pod::{ContainerSpec, PodSpec};
pub use registry::Registry;
pub use tools::ContainerdVersion;
