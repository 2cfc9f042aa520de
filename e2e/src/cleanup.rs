//! Finding and removing what a containerd instance leaves behind: shim processes, runc
//! containers, mounts. Used on drop and by tests that check teardown left nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::mount::{MntFlags, umount2};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `(pid, command line)` of every containerd shim (`containerd-shim-*`) whose command line
/// contains `needle` (an instance's socket path, say).
pub fn processes_naming(needle: &str) -> Vec<(i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if u32::try_from(pid).is_ok_and(|p| p == own) {
            continue;
        }
        let Ok(raw) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = raw
            .split(|b| *b == 0)
            // Blank arguments are room a process keeps for its title (Spore's fork server).
            .filter(|a| !a.iter().all(u8::is_ascii_whitespace))
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let Some(program) = args.first() else {
            continue;
        };
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !name.starts_with("containerd-shim") {
            continue;
        }
        let cmdline = args.join(" ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found.sort();
    found
}

/// Whether `pid` is gone (or a zombie waiting for its parent).
fn is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
    }
}

/// SIGKILLs the processes and waits (up to 3 s) until they are gone.
pub fn kill_processes(processes: &[(i32, String)]) {
    for (pid, cmdline) in processes {
        tracing::warn!(pid, %cmdline, "killing a leftover shim");
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline && !processes.iter().all(|(pid, _)| is_gone(*pid)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    // A killed shim cannot remove its socket: do it, so a failed test leaves no stale socket
    // in /run/containerd/s.
    for (_, cmdline) in processes {
        if let Some(path) = socket_of(cmdline) {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The socket path of a shim's command line (`-socket unix:///run/containerd/s/<hash>`).
fn socket_of(cmdline: &str) -> Option<&str> {
    let mut words = cmdline.split_whitespace();
    words.find(|w| *w == "-socket")?;
    words.next()?.strip_prefix("unix://")
}

/// Decodes the octal escapes (`\040`) of a `/proc/self/mountinfo` field.
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let value =
                (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Mount points listed in `mountinfo` text.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mount_field(field)))
        .collect()
}

/// Mount points at or under `dir` in this process's mount namespace, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = mount_points(&text)
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    found.dedup();
    found
}

/// Lazily unmounts everything under `dir`, deepest first, until nothing is left (or 5 rounds).
pub fn unmount_under(dir: &Path) {
    for _ in 0..5 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for mount in mounts {
            if let Err(errno) = umount2(&mount, MntFlags::MNT_DETACH) {
                tracing::warn!(mount = %mount.display(), %errno, "could not unmount");
            }
        }
    }
}

fn runc(root: &Path, args: &[&str]) -> Option<String> {
    let output = Command::new("runc")
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Ids of the containers in one runc state root (none when the root does not exist).
pub fn runc_containers_in(root: &Path) -> Vec<String> {
    if !root.is_dir() {
        return Vec::new();
    }
    runc(root, &["list", "--quiet"])
        .map(|out| {
            out.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The per-namespace runc roots under a shim's `Root` option (`<root>/<namespace>`).
fn namespace_roots(root: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(root)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Ids of the containers under a shim's runc `Root` option, every namespace, as
/// `<namespace>/<id>`.
pub fn runc_containers(root: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for ns_root in namespace_roots(root) {
        let ns = ns_root
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        found.extend(
            runc_containers_in(&ns_root)
                .into_iter()
                .map(|id| format!("{ns}/{id}")),
        );
    }
    found.sort();
    found
}

/// Force-deletes (kills first) every container under a shim's runc `Root` option.
pub fn kill_runc_containers(root: &Path) {
    for ns_root in namespace_roots(root) {
        for id in runc_containers_in(&ns_root) {
            tracing::warn!(%id, "deleting a leftover runc container");
            if runc(&ns_root, &["delete", "--force", &id]).is_none() {
                tracing::warn!(%id, "runc delete --force failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shims_socket_is_read_from_its_command_line() {
        let cmdline = "/bin/containerd-shim-spore-v1 -namespace k8s.io -id abc -address /x.sock -socket unix:///run/containerd/s/0123 -debug";
        assert_eq!(socket_of(cmdline), Some("/run/containerd/s/0123"));
        assert_eq!(socket_of("/bin/containerd-shim-spore-v1 -id abc"), None);
    }

    #[test]
    fn mountinfo_fields_are_unescaped() {
        let info = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /tmp/x/state/netns/cni-1 rw - nsfs nsfs rw\n";
        assert_eq!(
            mount_points(info),
            [
                PathBuf::from("/mnt/with space"),
                PathBuf::from("/tmp/x/state/netns/cni-1")
            ]
        );
    }

    #[test]
    fn nothing_is_mounted_under_a_fresh_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(mounts_under(dir.path()).is_empty());
        assert!(runc_containers(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn only_shims_are_reported() {
        // This test process names its own arguments, but it is not a shim.
        let needle = "spore-e2e-no-such-socket";
        assert!(processes_naming(needle).is_empty());
    }
}
