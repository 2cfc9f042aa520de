//! What the kubelet bench reads on the node itself: a container's log file as the kubelet
//! writes it, the processes in pods' cgroups, and the shims of the node's containerd.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// How deep under a hierarchy's root a pod's cgroup may sit: the kubelet's `cgroupRoot`,
/// `kubepods`, the QoS class, the pod.
const POD_CGROUP_DEPTH: usize = 6;

/// The kubelet's log file of the first attempt of a pod's container:
/// `POD_LOGS/NAMESPACE_NAME_UID/CONTAINER/0.log`.
pub fn container_log(
    pod_logs: &Path,
    namespace: &str,
    name: &str,
    uid: &str,
    container: &str,
) -> PathBuf {
    pod_logs
        .join(format!("{namespace}_{name}_{uid}"))
        .join(container)
        .join("0.log")
}

/// The pod UID a kubelet cgroup directory name is for: `pod<UID>` (the cgroupfs driver) or
/// `kubepods-<qos>-pod<UID with _ for ->.slice` (the systemd driver).
pub fn pod_uid_of(dir_name: &str) -> Option<String> {
    if let Some(uid) = dir_name.strip_prefix("pod") {
        return is_uid(uid).then(|| uid.to_owned());
    }
    let slice = dir_name.strip_suffix(".slice")?;
    let (_, uid) = slice.rsplit_once("-pod")?;
    let uid = uid.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

fn is_uid(text: &str) -> bool {
    text.len() == 36 && text.chars().all(|c| c.is_ascii_hexdigit() || c == '-')
}

/// The cgroup directories of the pods `uids`, in every hierarchy under `roots`.
pub fn pod_cgroups(roots: &[PathBuf], uids: &BTreeSet<String>) -> BTreeMap<String, Vec<PathBuf>> {
    let mut found: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for root in roots {
        walk(root, 0, &mut |dir, name| match pod_uid_of(name) {
            Some(uid) if uids.contains(&uid) => {
                found.entry(uid).or_default().push(dir.to_path_buf());
                true
            }
            Some(_) => true,
            None => false,
        });
    }
    found
}

/// Calls `visit` on every directory under `dir` down to [`POD_CGROUP_DEPTH`]; a directory for
/// which it returns true is not descended into.
fn walk(dir: &Path, depth: usize, visit: &mut dyn FnMut(&Path, &str) -> bool) {
    if depth >= POD_CGROUP_DEPTH {
        return;
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let name = entry.file_name();
        if !visit(&path, &name.to_string_lossy()) {
            walk(&path, depth + 1, visit);
        }
    }
}

/// Every process in the cgroup `dir` and in the cgroups below it.
pub fn processes_under(dir: &Path) -> BTreeSet<i32> {
    let mut pids: BTreeSet<i32> = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pids.extend(processes_under(&entry.path()));
            }
        }
    }
    pids
}

/// The shim processes of the containerd serving `socket` (containerd starts every shim with
/// `-address SOCKET`) that serve the sandboxes `sandbox_ids` (`-id ID`), and the processes a
/// runtime shares between its pods (Spore's fork server). Shims of pods deleted earlier, which
/// run until the kubelet removes their sandboxes, are left out.
pub fn shims(socket: &Path, sandbox_ids: &BTreeSet<String>) -> BTreeSet<i32> {
    crate::cleanup::processes_naming(&socket.to_string_lossy())
        .into_iter()
        .filter(|(_, cmdline)| serves(cmdline, sandbox_ids))
        .map(|(pid, _)| pid)
        .collect()
}

/// Whether a shim's command line serves one of `sandbox_ids` or all pods (`fork-server`).
fn serves(cmdline: &str, sandbox_ids: &BTreeSet<String>) -> bool {
    let words: Vec<&str> = cmdline.split_whitespace().collect();
    if !words.first().is_some_and(|w| w.contains("containerd-shim")) {
        return false;
    }
    words.last() == Some(&"fork-server")
        || words
            .windows(2)
            .any(|w| w[0] == "-id" && sandbox_ids.contains(w[1]))
}

/// The names of the cgroups directly below `dirs` (a pod's cgroups): the kubelet's runtime
/// names them after the pod's sandbox and containers.
pub fn child_names(dirs: &[PathBuf]) -> BTreeSet<String> {
    dirs.iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flat_map(|entries| entries.flatten())
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f4a0c1e-7d39-4c55-9c55-3d3f0e8b2a61";

    #[test]
    fn the_log_file_is_where_the_kubelet_writes_it() {
        assert_eq!(
            container_log(Path::new("/var/log/pods"), "ns", "web", UID, "main"),
            PathBuf::from(format!("/var/log/pods/ns_web_{UID}/main/0.log"))
        );
    }

    #[test]
    fn both_drivers_cgroup_names_give_the_pod_uid() {
        assert_eq!(pod_uid_of(&format!("pod{UID}")).as_deref(), Some(UID));
        let systemd = format!("kubepods-burstable-pod{}.slice", UID.replace('-', "_"));
        assert_eq!(pod_uid_of(&systemd).as_deref(), Some(UID));
        for other in [
            "burstable",
            "kubepods",
            "pod",
            "podnotauid",
            "cri-containerd-1.scope",
        ] {
            assert_eq!(pod_uid_of(other), None, "{other}");
        }
    }

    #[test]
    fn pods_cgroups_and_their_processes_are_found_in_every_hierarchy() {
        let root = tempfile::tempdir().expect("tempdir");
        let other = "11111111-2222-3333-4444-555555555555";
        let memory = root.path().join("memory");
        let cpu = root.path().join("cpu");
        let pod_memory = memory.join(format!("k8s/kubepods/burstable/pod{UID}"));
        let pod_cpu = cpu.join(format!("k8s/kubepods/burstable/pod{UID}"));
        let other_pod = memory.join(format!("k8s/kubepods/pod{other}"));
        for dir in [&pod_memory.join("sandbox"), &pod_cpu, &other_pod] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(pod_memory.join("cgroup.procs"), "10\n").expect("write");
        std::fs::write(pod_memory.join("sandbox/cgroup.procs"), "11\n12\n").expect("write");
        std::fs::write(other_pod.join("cgroup.procs"), "99\n").expect("write");
        let found = pod_cgroups(&[memory, cpu], &BTreeSet::from([UID.to_owned()]));
        assert_eq!(found.len(), 1);
        assert_eq!(found[UID], vec![pod_memory.clone(), pod_cpu]);
        assert_eq!(processes_under(&pod_memory), BTreeSet::from([10, 11, 12]));
        assert_eq!(
            child_names(&found[UID]),
            BTreeSet::from(["sandbox".to_owned()])
        );
    }

    #[test]
    fn a_shim_counts_for_its_sandbox_and_the_fork_server_for_all() {
        let ids = BTreeSet::from(["abc".to_owned()]);
        let shim = "/bin/containerd-shim-runc-v2 -namespace k8s.io -id abc -address /s";
        assert!(serves(shim, &ids));
        assert!(!serves(&shim.replace("-id abc", "-id abd"), &ids));
        assert!(serves(
            "/bin/containerd-shim-spore-v1 -namespace k8s.io -address /s fork-server",
            &BTreeSet::new()
        ));
        assert!(!serves("/usr/bin/containerd --config c -id abc", &ids));
    }
}
