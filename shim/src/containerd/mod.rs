//! What containerd sees of the shim: the binary's actions ([`bootstrap`]), its ttrpc socket
//! ([`socket`]), the Task service ([`task_service`]) answering every request even when handling
//! it panics ([`panic_answer`]), and the task events it raises ([`events`],
//! [`exit_events`]), the translation of containerd's messages ([`convert`]) and the runtime
//! options of containerd's config ([`options`]).

pub mod bootstrap;
pub mod container_table;
pub mod convert;
pub mod events;
pub mod exit_events;
pub mod options;
pub mod panic_answer;
pub mod shutdown;
pub mod socket;
pub mod task_service;
