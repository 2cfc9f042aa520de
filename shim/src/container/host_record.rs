//! What a container holds on the host, written into its bundle at Create, so that
//! `containerd-shim-spore-v1 delete` can let go of it when the shim that made it is gone
//! (SIGKILLed, OOM-killed with its pod, crashed): containerd runs `delete` in the bundle of each
//! container whose shim died, and that process knows nothing but the bundle.
//!
//! A native container's runc state (runc root and binary) lets `delete` kill and delete it with
//! runc, as runc's own shim does; a Wasm container names the cgroup leaves its shim joined and
//! the compile cache it wrote into, whose temporary files a dead writer leaves behind; a sandbox
//! run by the shim's own init names that process and its cgroup leaves.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The record's file name in the bundle.
pub const RECORD_FILE: &str = "spore-host.json";

/// How a native container's runc is reached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuncState {
    pub binary: String,
    pub root: PathBuf,
    pub systemd_cgroup: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Held {
    /// A container run by runc: its processes outlive the shim.
    Native { runc: RuncState },
    /// A container run inside the shim: it dies with it, leaving the shim's cgroup leaves and
    /// the compile cache's temporary files.
    Wasm {
        cgroup_leaves: Vec<PathBuf>,
        cache_dir: PathBuf,
    },
    /// The pod's sandbox as the shim's init process: it outlives the shim, in its own leaves.
    PodInit {
        pid: u32,
        /// When the init started (see [`HostRecord::shim_started`]).
        started: u64,
        cgroup_leaves: Vec<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    pub id: String,
    /// The serving shim's pid: temporary cache files carry it in their names.
    pub shim_pid: u32,
    /// When that process started (clock ticks after boot, `/proc/<pid>/stat`), so that a new
    /// process that got the same pid is not taken for it.
    pub shim_started: u64,
    pub held: Held,
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Spore host record: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// One thing `delete` could not release; the others are still tried.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("runc could not delete container {id}: {reason}")]
    Runc { id: String, reason: String },
    #[error("the cgroup {path} stays: {source}")]
    Cgroup {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl HostRecord {
    /// Writes the record into `bundle` atomically (a reader sees all of it or nothing).
    pub fn write(&self, bundle: &Path) -> Result<(), RecordError> {
        let path = bundle.join(RECORD_FILE);
        let temp = bundle.join(format!(".{RECORD_FILE}.tmp"));
        let written = serde_json::to_vec(self)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(&bytes)?;
                file.sync_all()
            })
            .and_then(|()| std::fs::rename(&temp, &path));
        written.map_err(|source| RecordError::Write { path, source })
    }

    /// The record in `bundle`; `None` when there is none (a container of an older shim, or one
    /// whose Create failed before it held anything).
    pub fn read(bundle: &Path) -> Result<Option<HostRecord>, RecordError> {
        let path = bundle.join(RECORD_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RecordError::Read { path, source }),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| RecordError::Parse { path, source })
    }

    /// Releases what the container held. Safe to repeat: what is already gone is skipped.
    pub fn release(&self) -> Vec<ReleaseError> {
        match &self.held {
            Held::Native { runc } => force_delete(runc, &self.id).err().into_iter().collect(),
            Held::Wasm {
                cgroup_leaves,
                cache_dir,
            } => {
                // A live shim still owns them (containerd may run `delete` when it merely lost
                // the connection).
                if self.shim_alive() {
                    return Vec::new();
                }
                remove_temp_files_of(cache_dir, self.shim_pid);
                cgroup_leaves
                    .iter()
                    .filter_map(|leaf| remove_cgroup(leaf).err())
                    .collect()
            }
            Held::PodInit {
                pid,
                started,
                cgroup_leaves,
            } => {
                if self.shim_alive() {
                    return Vec::new();
                }
                if process_started(*pid) == Some(*started) {
                    // SAFETY: kill(2) of the process the record names, checked by start time.
                    unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
                }
                cgroup_leaves
                    .iter()
                    .filter_map(|leaf| remove_cgroup(leaf).err())
                    .collect()
            }
        }
    }
}

impl HostRecord {
    /// Whether the shim that made the container still runs.
    pub fn shim_alive(&self) -> bool {
        process_started(self.shim_pid) == Some(self.shim_started)
    }

    /// Whether `other` was made by the same shim process.
    pub fn same_shim(&self, other: &HostRecord) -> bool {
        (self.shim_pid, self.shim_started) == (other.shim_pid, other.shim_started)
    }
}

/// `runc delete --force`: kills the container's processes and removes its state; a container
/// runc does not know is already released.
fn force_delete(runc: &RuncState, id: &str) -> Result<(), ReleaseError> {
    let mut command = Command::new(&runc.binary);
    command.arg("--root").arg(&runc.root);
    if runc.systemd_cgroup {
        command.arg("--systemd-cgroup");
    }
    let output = command
        .args(["delete", "--force", id])
        .output()
        .map_err(|e| ReleaseError::Runc {
            id: id.to_string(),
            reason: format!("cannot run {}: {e}", runc.binary),
        })?;
    if output.status.success() {
        return Ok(());
    }
    let said = String::from_utf8_lossy(&output.stderr);
    if said.contains("does not exist") || said.contains("not exist") {
        return Ok(());
    }
    Err(ReleaseError::Runc {
        id: id.to_string(),
        reason: said.trim().to_string(),
    })
}

/// Removes an empty cgroup; the dead shim's threads may take a moment to leave it.
fn remove_cgroup(leaf: &Path) -> Result<(), ReleaseError> {
    let mut attempt = 0;
    loop {
        match std::fs::remove_dir(leaf) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && attempt < 50 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(source) => {
                return Err(ReleaseError::Cgroup {
                    path: leaf.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// `PF_EXITING` among a task's flags (field 9 of `/proc/PID/stat`): the task has begun to exit.
const PF_EXITING: u64 = 0x4;

/// When the live process `pid` started (clock ticks after boot); `None` when there is no such
/// process, or it is a zombie, or it has begun to exit.
pub fn process_started(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    started_if_live(&stat)
}

/// The start time in a `/proc/PID/stat` line, unless the process is dead, a zombie or exiting.
///
/// Exiting counts as dead: containerd runs `delete` as soon as it sees a SIGKILLed shim's
/// connection close, which happens while the shim's last thread closes its files, before the
/// process is a zombie. Each of its threads has `PF_EXITING` by then; taken for alive, the shim
/// kept its pod's init running and its cgroup leaves for good (`delete` leaves what a live shim
/// owns to it, and containerd removed the bundle and its host record right after).
fn started_if_live(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of stat(5), flags field 9, starttime field 22.
    if matches!(*fields.first()?, "Z" | "X" | "x") {
        return None;
    }
    let flags: u64 = fields.get(6)?.parse().ok()?;
    if flags & PF_EXITING != 0 {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Removes the compile cache's temporary files of writer `pid` (`.tmp-<name>-<pid>-<n>`).
fn remove_temp_files_of(cache_dir: &Path, pid: u32) {
    let Ok(entries) = std::fs::read_dir(cache_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if temp_file_of(&name.to_string_lossy(), pid) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `name` is a temporary cache file written by process `pid`.
fn temp_file_of(name: &str, pid: u32) -> bool {
    let Some(rest) = name.strip_prefix(".tmp-") else {
        return false;
    };
    let mut parts = rest.rsplitn(3, '-');
    let (Some(sequence), Some(writer)) = (parts.next(), parts.next()) else {
        return false;
    };
    !sequence.is_empty()
        && sequence.bytes().all(|b| b.is_ascii_digit())
        && writer == pid.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm_record(dir: &Path) -> HostRecord {
        HostRecord {
            id: "c1".into(),
            shim_pid: 4242,
            shim_started: 1,
            held: Held::Wasm {
                cgroup_leaves: vec![dir.join("leaf")],
                cache_dir: dir.join("cache"),
            },
        }
    }

    #[test]
    fn a_record_reads_back_as_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let native = HostRecord {
            id: "sidecar".into(),
            shim_pid: 7,
            shim_started: 99,
            held: Held::Native {
                runc: RuncState {
                    binary: "runc".into(),
                    root: "/run/containerd/spore-runc/k8s.io".into(),
                    systemd_cgroup: true,
                },
            },
        };
        native.write(dir.path()).expect("write");
        assert_eq!(
            HostRecord::read(dir.path()).expect("read"),
            Some(native.clone())
        );
        let wasm = wasm_record(dir.path());
        wasm.write(dir.path()).expect("overwrite");
        assert_eq!(HostRecord::read(dir.path()).expect("read"), Some(wasm));
    }

    #[test]
    fn no_record_is_none_and_a_broken_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(HostRecord::read(dir.path()).expect("read"), None);
        std::fs::write(dir.path().join(RECORD_FILE), b"{half").expect("write");
        let err = HostRecord::read(dir.path()).expect_err("broken");
        assert!(matches!(err, RecordError::Parse { .. }), "{err}");
        assert!(err.to_string().contains(RECORD_FILE), "{err}");
    }

    #[test]
    fn temp_files_are_matched_by_their_writer() {
        assert!(temp_file_of(".tmp-layer-sha256-abc.cwasm-4242-0", 4242));
        assert!(temp_file_of(".tmp-x-4242-17", 4242));
        assert!(!temp_file_of(".tmp-x-42420-1", 4242));
        assert!(!temp_file_of(".tmp-x-4242-", 4242));
        assert!(!temp_file_of("layer-4242-1.cwasm", 4242));
    }

    #[test]
    fn releasing_a_dead_wasm_shim_removes_its_temp_files_and_leaf_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let record = wasm_record(dir.path());
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).expect("cache");
        std::fs::create_dir_all(dir.path().join("leaf")).expect("leaf");
        let mine = cache.join(".tmp-app.cwasm-4242-3");
        let other_writer = cache.join(".tmp-app.cwasm-1-3");
        let entry = cache.join("app.cwasm");
        for file in [&mine, &other_writer, &entry] {
            std::fs::write(file, b"x").expect("file");
        }
        // No process 4242 that started at tick 1 runs now.
        assert!(!record.shim_alive());
        assert!(record.release().is_empty());
        assert!(!mine.exists());
        assert!(other_writer.exists() && entry.exists());
        assert!(!dir.path().join("leaf").exists());
        // Again: nothing left to release, nothing fails.
        assert!(record.release().is_empty());
    }

    #[test]
    fn a_live_writer_keeps_its_temp_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(&cache).expect("cache");
        let me = std::process::id();
        let mine = cache.join(format!(".tmp-app.cwasm-{me}-0"));
        std::fs::write(&mine, b"x").expect("file");
        let record = HostRecord {
            id: "c1".into(),
            shim_pid: me,
            shim_started: process_started(me).expect("this process runs"),
            held: Held::Wasm {
                cgroup_leaves: vec![],
                cache_dir: cache,
            },
        };
        assert!(record.shim_alive());
        assert!(record.release().is_empty());
        assert!(mine.exists());
    }

    /// A `/proc/PID/stat` line of a process named `name` in `state` with `flags`, started at
    /// tick 5826383.
    fn stat_line(name: &str, state: &str, flags: u64) -> String {
        format!(
            "30648 ({name}) {state} 30645 30645 1287 0 -1 {flags} 99 0 0 0 0 0 0 0 20 0 1 0 \
             5826383 3133440 413 18446744073709551615 94102516895744 94102516915625"
        )
    }

    #[test]
    fn a_running_or_sleeping_process_is_live() {
        for state in ["R", "S", "D"] {
            assert_eq!(
                started_if_live(&stat_line("containerd-shim", state, 4194304)),
                Some(5826383),
                "{state}"
            );
        }
        // A name with spaces and parentheses does not shift the fields.
        assert_eq!(
            started_if_live(&stat_line("a) b (c", "S", 0)),
            Some(5826383)
        );
    }

    #[test]
    fn a_zombie_a_dead_or_an_exiting_process_is_not_live() {
        assert_eq!(started_if_live(&stat_line("shim", "Z", 4194304)), None);
        assert_eq!(started_if_live(&stat_line("shim", "X", 4194304)), None);
        // SIGKILLed, its files closed, not yet a zombie: PF_EXITING among its flags.
        assert_eq!(
            started_if_live(&stat_line("shim", "R", 4194304 | PF_EXITING)),
            None
        );
        assert_eq!(started_if_live("garbage"), None);
    }

    #[test]
    fn a_runc_that_cannot_run_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runc = RuncState {
            binary: "/nonexistent/runc".into(),
            root: dir.path().to_path_buf(),
            systemd_cgroup: false,
        };
        let err = force_delete(&runc, "c1").expect_err("no runc binary");
        assert!(
            err.to_string().contains("cannot run /nonexistent/runc"),
            "{err}"
        );
    }
}
