//! Pod-level cgroups as the kubelet's cgroupfs driver manages them: created before
//! RunPodSandbox, removed after RemovePodSandbox. Works on cgroup v1 (one directory per mounted
//! hierarchy, the hybrid layout's unified mount included) and on pure v2.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup parent {0:?} must be an absolute cgroupfs path without `..`")]
    BadParent(String),
    #[error("could not {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("pod cgroup {path} still has children (leaked containers?): {children:?}")]
    NotEmpty {
        path: PathBuf,
        children: Vec<String>,
    },
}

/// The pod cgroups a harness containerd's pods use, shared between the [`crate::Containerd`]
/// and its CRI clients, so that drop can remove what a failed test left.
#[derive(Clone, Debug, Default)]
pub struct TrackedPodCgroups(std::sync::Arc<std::sync::Mutex<std::collections::BTreeSet<String>>>);

impl TrackedPodCgroups {
    pub fn insert(&self, parent: &str) {
        if let Ok(mut set) = self.0.lock() {
            set.insert(parent.to_owned());
        }
    }

    pub fn remove(&self, parent: &str) {
        if let Ok(mut set) = self.0.lock() {
            set.remove(parent);
        }
    }

    pub fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Mount points of every cgroup hierarchy (v1 `cgroup` and v2 `cgroup2`) in this process's
/// mount namespace.
pub fn hierarchies() -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| left.split(' ').nth(4).map(PathBuf::from))
                .flatten()
        })
        .collect();
    found.sort();
    found.dedup();
    found
}

fn relative(parent: &str) -> Result<PathBuf, CgroupError> {
    let rel = parent.trim_start_matches('/');
    if !parent.starts_with('/')
        || rel.is_empty()
        || rel
            .split('/')
            .any(|p| p == ".." || p == "." || p.is_empty())
    {
        return Err(CgroupError::BadParent(parent.to_owned()));
    }
    Ok(PathBuf::from(rel))
}

/// The directories of `parent` (e.g. `/kubepods/besteffort/pod<uid>`) that exist now.
pub fn existing_dirs(parent: &str) -> Result<Vec<PathBuf>, CgroupError> {
    let rel = relative(parent)?;
    Ok(hierarchies()
        .into_iter()
        .map(|h| h.join(&rel))
        .filter(|p| p.is_dir())
        .collect())
}

fn copy_cpuset_if_empty(dir: &Path) -> Result<(), CgroupError> {
    for file in ["cpuset.cpus", "cpuset.mems"] {
        let path = dir.join(file);
        let Ok(current) = std::fs::read_to_string(&path) else {
            continue;
        };
        if !current.trim().is_empty() {
            continue;
        }
        let Some(parent) = dir.parent() else { continue };
        let parent_path = parent.join(file);
        let value = std::fs::read_to_string(&parent_path).map_err(|source| CgroupError::Io {
            what: "read",
            path: parent_path,
            source,
        })?;
        std::fs::write(&path, value.trim()).map_err(|source| CgroupError::Io {
            what: "write",
            path,
            source,
        })?;
    }
    Ok(())
}

/// Creates `parent` in every hierarchy, as the kubelet does for a pod before its sandbox runs
/// (cpuset directories get their parent's cpus and mems).
pub fn create(parent: &str) -> Result<Vec<PathBuf>, CgroupError> {
    let rel = relative(parent)?;
    let mut created = Vec::new();
    for hierarchy in hierarchies() {
        let mut dir = hierarchy.clone();
        for part in rel.iter() {
            dir.push(part);
            if !dir.is_dir() {
                std::fs::create_dir(&dir)
                    .or_else(|e| if dir.is_dir() { Ok(()) } else { Err(e) })
                    .map_err(|source| CgroupError::Io {
                        what: "create",
                        path: dir.clone(),
                        source,
                    })?;
            }
            copy_cpuset_if_empty(&dir)?;
        }
        created.push(dir);
    }
    Ok(created)
}

/// Sets the memory limit of `parent` as the kubelet does for a pod whose containers all have
/// limits (their sum plus the RuntimeClass overhead): `memory.limit_in_bytes` on cgroup v1,
/// `memory.max` on v2. Fails when no hierarchy has a memory controller.
pub fn set_memory_limit(parent: &str, bytes: i64) -> Result<(), CgroupError> {
    let rel = relative(parent)?;
    let mut set = false;
    for hierarchy in hierarchies() {
        let dir = hierarchy.join(&rel);
        for file in ["memory.limit_in_bytes", "memory.max"] {
            let path = dir.join(file);
            if path.exists() {
                std::fs::write(&path, bytes.to_string()).map_err(|source| CgroupError::Io {
                    what: "write",
                    path: path.clone(),
                    source,
                })?;
                set = true;
            }
        }
    }
    if set {
        Ok(())
    } else {
        Err(CgroupError::Io {
            what: "find a memory controller for",
            path: PathBuf::from(parent),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        })
    }
}

/// Removes `parent` from every hierarchy (only the last component: `/kubepods/besteffort`
/// stays, as on a node). Fails when a directory still has child cgroups.
pub fn remove(parent: &str) -> Result<(), CgroupError> {
    for dir in existing_dirs(parent)? {
        let children: Vec<String> = std::fs::read_dir(&dir)
            .map_err(|source| CgroupError::Io {
                what: "list",
                path: dir.clone(),
                source,
            })?
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        if !children.is_empty() {
            return Err(CgroupError::NotEmpty {
                path: dir,
                children,
            });
        }
        // A cgroup stays busy until its last task is gone (a shim may take a moment to exit).
        let mut last = None;
        for _ in 0..150 {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {
                    last = None;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    last = None;
                    break;
                }
                Err(e) => {
                    last = Some(e);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
            }
        }
        if let Some(source) = last {
            return Err(CgroupError::Io {
                what: "remove",
                path: dir,
                source,
            });
        }
    }
    Ok(())
}

/// Every cgroup directory at or below `dir`, deepest first.
fn descendants_deepest_first(dir: &Path) -> Vec<PathBuf> {
    let mut found = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < found.len() {
        if let Ok(entries) = std::fs::read_dir(&found[i]) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    found.push(entry.path());
                }
            }
        }
        i += 1;
    }
    found.reverse();
    found
}

fn pids_in(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Every process in `parent` and its child cgroups (in any hierarchy).
pub fn processes(parent: &str) -> Result<Vec<i32>, CgroupError> {
    let mut pids: Vec<i32> = existing_dirs(parent)?
        .iter()
        .flat_map(|dir| descendants_deepest_first(dir))
        .flat_map(|cgroup| pids_in(&cgroup))
        .collect();
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// The last resort after a failed test: SIGKILLs every process in `parent` and its child
/// cgroups (in every hierarchy), then removes them all. Returns the pids it killed.
pub fn kill_and_remove(parent: &str) -> Result<Vec<i32>, CgroupError> {
    let mut killed = Vec::new();
    for dir in existing_dirs(parent)? {
        for cgroup in descendants_deepest_first(&dir) {
            for pid in pids_in(&cgroup) {
                if nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .is_ok()
                {
                    killed.push(pid);
                }
            }
        }
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    for dir in existing_dirs(parent)? {
        for cgroup in descendants_deepest_first(&dir) {
            while !pids_in(&cgroup).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if let Err(source) = std::fs::remove_dir(&cgroup)
                && source.kind() != std::io::ErrorKind::NotFound
            {
                return Err(CgroupError::Io {
                    what: "remove",
                    path: cgroup,
                    source,
                });
            }
        }
    }
    killed.sort_unstable();
    killed.dedup();
    Ok(killed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents_must_be_absolute_and_plain() {
        for bad in ["kubepods", "/", "/a/../b", "/a//b"] {
            assert!(
                matches!(relative(bad), Err(CgroupError::BadParent(_))),
                "{bad}"
            );
        }
        assert_eq!(
            relative("/kubepods/pod1").expect("valid"),
            PathBuf::from("kubepods/pod1")
        );
    }

    #[test]
    fn pod_cgroups_are_created_and_removed_everywhere() {
        let parent = format!("/spore-e2e-unit/pod{}", std::process::id());
        let created = create(&parent).expect("create");
        assert!(!created.is_empty(), "no cgroup hierarchy is mounted");
        assert_eq!(existing_dirs(&parent).expect("dirs").len(), created.len());
        remove(&parent).expect("remove");
        assert!(existing_dirs(&parent).expect("dirs").is_empty());

        // A cgroup with a child cgroup and a process in it is emptied and removed by force.
        let created = create(&parent).expect("create again");
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("sleep");
        let memory = created
            .iter()
            .find(|d| {
                d.starts_with("/sys/fs/cgroup/memory") || d.join("cgroup.controllers").exists()
            })
            .expect("a memory or v2 hierarchy")
            .join("c1");
        std::fs::create_dir(&memory).expect("child cgroup");
        std::fs::write(memory.join("cgroup.procs"), child.id().to_string()).expect("move sleep");
        assert!(matches!(remove(&parent), Err(CgroupError::NotEmpty { .. })));
        let killed = kill_and_remove(&parent).expect("kill and remove");
        assert_eq!(killed, [child.id() as i32]);
        assert!(!child.wait().expect("reaped").success());
        assert!(existing_dirs(&parent).expect("dirs").is_empty());
        let _ = remove("/spore-e2e-unit").map(|_| ());
    }
}
