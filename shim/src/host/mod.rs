//! The Linux host as the shim uses it: the pod's cgroup ([`cgroup`]), the shim's place in it
//! ([`shim_cgroup`]) and the pod's network namespace
//! ([`netns`]), the container's stdio FIFOs ([`stdio`]), its rootfs mounts ([`rootfs`]) and the
//! files in it ([`in_root`], [`entrypoint`]), reaping children ([`reaper`]), the pod's sandbox init ([`pod_init`]), CPU time per guest
//! ([`cputime`]), per-container figures for Stats ([`stats`]), the kubelet's termination
//! message file ([`termination`]) and the shim's own log ([`logging`]), panics included
//! ([`panic_log`]).

pub mod cgroup;
pub mod cgroup_placement;
pub mod cputime;
pub mod entrypoint;
pub mod fd_passing;
pub mod heap;
pub mod idle_stacks;
pub mod in_root;
pub mod logging;
pub mod netns;
pub mod panic_log;
pub mod pod_init;
pub mod process_title;
pub mod reaper;
pub mod rootfs;
pub mod shim_cgroup;
pub mod stats;
pub mod stdio;
pub mod termination;
