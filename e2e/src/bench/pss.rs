//! Proportional set size (PSS) of processes, from `/proc/PID/smaps_rollup`: each shared page is
//! counted once in total across the processes sharing it, so a sum over processes is the memory
//! they really cost together.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Containerd, Pod, cgroup};

/// The `Pss:` figure of an `smaps_rollup` text, in KiB.
pub fn parse_pss_kib(smaps_rollup: &str) -> Option<u64> {
    smaps_rollup.lines().find_map(|line| {
        let rest = line.strip_prefix("Pss:")?;
        let mut words = rest.split_whitespace();
        let value = words.next()?.parse().ok()?;
        (words.next() == Some("kB")).then_some(value)
    })
}

/// PSS of one process in KiB; `None` when it is gone or unreadable.
pub fn process_pss_kib(pid: i32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .ok()
        .and_then(|text| parse_pss_kib(&text))
}

/// Every process the pods add to the machine: this containerd's shims and every process in the
/// pods' cgroups (pause, containers, and the shim again where it joined the pod's cgroup).
pub fn pod_processes(containerd: &Containerd, pods: &[Pod]) -> BTreeSet<i32> {
    let mut pids: BTreeSet<i32> = containerd
        .shim_processes()
        .into_iter()
        .map(|(pid, _)| pid)
        .collect();
    for pod in pods {
        pids.extend(cgroup::processes(&pod.cgroup_parent()).unwrap_or_default());
    }
    pids
}

/// The summed PSS (KiB) of `pids` and how many of them could be read.
pub fn total_pss_kib(pids: &BTreeSet<i32>) -> (u64, usize) {
    pids.iter()
        .filter_map(|pid| process_pss_kib(*pid))
        .fold((0, 0), |(sum, n), kib| (sum + kib, n + 1))
}

/// The summed PSS (KiB) of `pids` grouped by process name (`/proc/PID/comm`).
pub fn pss_by_command_kib(pids: &BTreeSet<i32>) -> BTreeMap<String, u64> {
    let mut by_command = BTreeMap::new();
    for pid in pids {
        let Some(kib) = process_pss_kib(*pid) else {
            continue;
        };
        let command = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|c| c.trim().to_owned())
            .unwrap_or_else(|_| "?".into());
        *by_command.entry(command).or_insert(0) += kib;
    }
    by_command
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pss_is_read_from_smaps_rollup() {
        let text = "00400000-7ffd0000 ---p 00000000 00:00 0   [rollup]\n\
                    Rss:                4096 kB\n\
                    Pss:                2618 kB\n\
                    Pss_Dirty:           900 kB\n\
                    Pss_Anon:            800 kB\n";
        assert_eq!(parse_pss_kib(text), Some(2618));
        assert_eq!(parse_pss_kib("Rss: 1 kB\n"), None);
        assert_eq!(parse_pss_kib("Pss: many kB\n"), None);
    }

    #[test]
    fn this_process_has_a_pss() {
        let own = i32::try_from(std::process::id()).expect("pid fits");
        assert!(process_pss_kib(own).is_some_and(|kib| kib > 0));
        let (total, read) = total_pss_kib(&BTreeSet::from([own, i32::MAX]));
        assert_eq!(read, 1);
        assert!(total > 0);
        let by_command = pss_by_command_kib(&BTreeSet::from([own]));
        assert_eq!(by_command.len(), 1);
        assert!(by_command.values().all(|kib| *kib > 0));
    }
}
