//! The pod's cgroups as the shim finds them: the pod's cgroup from a container's `cgroupsPath`,
//! the hierarchies (cgroup v1 and v2), leaves below the pod's cgroup, and what they hold and
//! use. The shim's own place in its pod is `shim_cgroup.rs`; the pod's network namespace is
//! `netns.rs`.

use std::path::{Path, PathBuf};

use crate::spec::ContainerSpec;

/// The leaf cgroup the shim moves into below the pod's cgroup.
pub const SHIM_CGROUP_LEAF: &str = "spore-wasm";
/// The leaf cgroup of the pod's sandbox init (`pod_init.rs`), below the pod's cgroup.
pub const SANDBOX_CGROUP_LEAF: &str = "spore-sandbox";

/// The pod's cgroup, relative to a hierarchy's root, from a container's `cgroupsPath`:
/// `/kubepods/besteffort/pod<uid>/<id>` (cgroupfs driver) or
/// `kubepods-besteffort-pod<uid>.slice:cri-containerd:<id>` (systemd driver).
pub fn pod_cgroup(cgroups_path: &str) -> Option<PathBuf> {
    if cgroups_path.starts_with('/') {
        return Path::new(cgroups_path).parent().map(Path::to_path_buf);
    }
    let slice = cgroups_path.split(':').next()?;
    let name = slice.strip_suffix(".slice")?;
    // systemd nests `a-b-c.slice` in `a.slice/a-b.slice/a-b-c.slice`.
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Some(path)
}

/// Whether `dir` is in a cgroup v2 hierarchy (only v2 has `cgroup.controllers`).
pub fn is_v2(dir: &Path) -> bool {
    dir.join("cgroup.controllers").exists()
}

/// Mount points of the cgroup hierarchies, from `/proc/self/mountinfo`.
pub fn cgroup_mounts(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fs_type = right.split_whitespace().next()?;
            if fs_type != "cgroup" && fs_type != "cgroup2" {
                return None;
            }
            left.split_whitespace().nth(4).map(PathBuf::from)
        })
        .collect()
}

/// Makes leaf `name` below the pod's cgroup of `spec` in every hierarchy, with the pod's cgroup
/// itself where it is missing (as runc makes a sandbox's `cgroupsPath`); returns the leaves.
/// A hierarchy where that fails is logged and left out.
pub fn make_pod_leaves(spec: &ContainerSpec, name: &str) -> Vec<PathBuf> {
    let Some(pod) = spec.cgroups_path.as_deref().and_then(pod_cgroup) else {
        return Vec::new();
    };
    let relative = pod.strip_prefix("/").unwrap_or(&pod).join(name);
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut leaves = Vec::new();
    for mount in cgroup_mounts(&mountinfo) {
        match make_dirs(&mount, &relative) {
            Ok(leaf) => leaves.push(leaf),
            Err(err) => {
                tracing::warn!(hierarchy = %mount.display(), %err, "cannot make the pod's cgroup")
            }
        }
    }
    leaves
}

/// `mount/relative`, made level by level so that each new cpuset gets its parent's CPUs.
pub(crate) fn make_dirs(mount: &Path, relative: &Path) -> std::io::Result<PathBuf> {
    let mut path = mount.to_path_buf();
    for part in relative.components() {
        let parent = path.clone();
        path.push(part);
        match std::fs::create_dir(&path) {
            Ok(()) => inherit_cpuset(&parent, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(path)
}

/// Removes leaves made by [`make_pod_leaves`] once nothing runs in them.
pub fn remove_leaves(leaves: &[PathBuf]) {
    for leaf in leaves {
        match std::fs::remove_dir(leaf) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => tracing::warn!(leaf = %leaf.display(), %err, "cannot remove a cgroup"),
        }
    }
}

/// CPU time (ns) and memory (bytes) charged to `leaves`, read from whichever hierarchies have
/// them (cgroup v2's `cpu.stat` and `memory.current`, or v1's `cpuacct.usage` and
/// `memory.usage_in_bytes`).
pub fn leaf_usage(leaves: &[PathBuf]) -> (u64, u64) {
    let read = |path: PathBuf| std::fs::read_to_string(path).ok();
    let (mut cpu, mut memory) = (0, 0);
    for leaf in leaves {
        if let Some(v) = read(leaf.join("cpuacct.usage")).and_then(|s| s.trim().parse().ok()) {
            cpu = v;
        }
        if let Some(usec) = read(leaf.join("cpu.stat")).and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
        }) {
            cpu = usec * 1000;
        }
        for file in ["memory.current", "memory.usage_in_bytes"] {
            if let Some(v) = read(leaf.join(file)).and_then(|s| s.trim().parse().ok()) {
                memory = v;
            }
        }
    }
    (cpu, memory)
}

/// The processes in `leaves` (every hierarchy lists the same ones).
pub fn leaf_pids(leaves: &[PathBuf]) -> Vec<u32> {
    let mut pids: Vec<u32> = leaves
        .iter()
        .filter_map(|leaf| std::fs::read_to_string(leaf.join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// A new cgroup v1 cpuset starts with no CPUs and no memory nodes, and takes no process until
/// it has some: give it its parent's.
pub(crate) fn inherit_cpuset(parent: &Path, leaf: &Path) -> std::io::Result<()> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let mine = leaf.join(file);
        if mine.exists() && std::fs::read_to_string(&mine)?.trim().is_empty() {
            std::fs::write(&mine, std::fs::read_to_string(parent.join(file))?.trim())?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_pod_is_the_parent() {
        assert_eq!(
            pod_cgroup("/kubepods/besteffort/pod1234/abcd"),
            Some(PathBuf::from("/kubepods/besteffort/pod1234"))
        );
    }

    #[test]
    fn systemd_slices_nest() {
        assert_eq!(
            pod_cgroup("kubepods-besteffort-pod1234.slice:cri-containerd:abcd"),
            Some(PathBuf::from(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1234.slice"
            ))
        );
        assert_eq!(pod_cgroup("not-a-slice:x:y"), None);
    }

    #[test]
    fn finds_v1_and_v2_mounts() {
        let info = "\
30 24 0:26 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw
31 24 0:27 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
32 24 0:28 / /proc rw - proc proc rw";
        assert_eq!(
            cgroup_mounts(info),
            [
                PathBuf::from("/sys/fs/cgroup/unified"),
                PathBuf::from("/sys/fs/cgroup/memory")
            ]
        );
    }
}
