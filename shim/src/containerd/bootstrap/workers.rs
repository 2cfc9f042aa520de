//! How many worker threads the serving process's shared runtime has.
//!
//! The shared runtime answers containerd's requests, forwards the task events, copies output and
//! runs command guests; an HTTP container's connections have threads of their own
//! (`wasm::http::serving_threads`). tokio's default is one worker per CPU the process may use:
//! on a 64-core node a pod without a CPU limit would hold 64 idle workers, about 17 KiB of
//! memory each and 64 of the pod's pids (a kubelet's `podPidsLimit` counts the shim's threads,
//! since the shim lives in the pod's cgroup). Two answer containerd while a guest computes. A
//! guest runs on one thread at a time, so more workers only help a pod that runs more than two
//! CPU-bound command containers at once: `SPORE_SHIM_WORKERS` in containerd's environment sets
//! another number for every shim of the node.

/// The environment variable that sets the number of workers.
pub const WORKERS_ENV: &str = "SPORE_SHIM_WORKERS";
/// Workers when the environment sets none: at most this many, fewer on fewer CPUs.
pub const DEFAULT_MAX: usize = 2;

/// What the environment says about the number of workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkersSetting {
    /// Not set (or empty): the default.
    Default,
    /// A number of workers, at least one.
    Set(usize),
    /// Not a number of workers: the default applies, and the shim's log says so.
    Invalid(String),
}

impl WorkersSetting {
    /// The setting in `value`, the environment variable's value if it is set.
    pub fn parse(value: Option<&str>) -> WorkersSetting {
        match value.map(str::trim) {
            None | Some("") => WorkersSetting::Default,
            Some(text) => match text.parse::<usize>() {
                Ok(n) if n > 0 => WorkersSetting::Set(n),
                _ => WorkersSetting::Invalid(text.to_owned()),
            },
        }
    }

    /// The setting of this process's environment.
    pub fn from_env() -> WorkersSetting {
        WorkersSetting::parse(std::env::var(WORKERS_ENV).ok().as_deref())
    }

    /// The number of workers for a process that may use `cpus` CPUs.
    pub fn workers(&self, cpus: usize) -> usize {
        match self {
            WorkersSetting::Set(n) => *n,
            WorkersSetting::Default | WorkersSetting::Invalid(_) => cpus.clamp(1, DEFAULT_MAX),
        }
    }
}

/// The CPUs this process may use (its affinity and its cgroup's CPU quota), at least one.
pub fn usable_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_default_at_most_two_workers_and_never_none() {
        let default = WorkersSetting::parse(None);
        assert_eq!(default, WorkersSetting::Default);
        assert_eq!(default.workers(64), 2);
        assert_eq!(default.workers(2), 2);
        assert_eq!(default.workers(1), 1);
        assert_eq!(default.workers(0), 1);
        assert_eq!(WorkersSetting::parse(Some(" ")).workers(64), 2);
    }

    #[test]
    fn the_environment_sets_any_positive_number() {
        assert_eq!(WorkersSetting::parse(Some("8")).workers(2), 8);
        assert_eq!(WorkersSetting::parse(Some(" 1 ")).workers(64), 1);
    }

    #[test]
    fn a_setting_that_is_no_number_of_workers_falls_back_to_the_default() {
        for bad in ["0", "-1", "two", "2.5"] {
            let setting = WorkersSetting::parse(Some(bad));
            assert_eq!(setting, WorkersSetting::Invalid(bad.to_owned()));
            assert_eq!(setting.workers(64), 2, "{bad}");
        }
    }
}
