//! Finding the process that serves a Unix socket: the containerd to stop when the restart
//! strategy is `signal` (containerd supervised by something other than systemd, which brings it
//! back). Needs the host's PID namespace (`hostPID: true`): `/proc` must show the host's
//! processes.
//!
//! A listening socket is matched twice: its path and inode in `/proc/PID/net/unix` (the table of
//! the process's network namespace), and that inode among the process's open files
//! (`/proc/PID/fd/* -> socket:[INODE]`).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// `__SO_ACCEPTCON` in `/proc/net/unix`'s Flags column: the socket listens.
const LISTENING: u32 = 0x0001_0000;

#[derive(Debug, thiserror::Error)]
pub enum SocketOwnerError {
    #[error("cannot list {path}: {source}")]
    ListProc {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The inodes of the sockets listening on any of `sockets` in one `/proc/PID/net/unix` table.
pub fn listening_inodes(table: &str, sockets: &[PathBuf]) -> HashSet<u64> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode Path
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            let inode = fields.get(6)?.parse::<u64>().ok()?;
            let path = fields.get(7)?;
            let wanted = sockets.iter().any(|s| s.as_os_str() == *path);
            (flags & LISTENING != 0 && wanted).then_some(inode)
        })
        .collect()
}

/// The socket inode a `/proc/PID/fd/N` link names (`socket:[12345]`), if it names one.
pub fn socket_inode(link: &Path) -> Option<u64> {
    link.to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The processes under `proc_root` (normally `/proc`) holding a socket that listens on any of
/// `sockets` (paths as the serving process bound them), lowest pid first, this process
/// excluded, in one pass over `proc_root`. Processes that vanish or cannot be read while
/// looking are skipped.
pub fn find(proc_root: &Path, sockets: &[PathBuf]) -> Result<Vec<u32>, SocketOwnerError> {
    let entries = std::fs::read_dir(proc_root).map_err(|source| SocketOwnerError::ListProc {
        path: proc_root.to_owned(),
        source,
    })?;
    let mut pids: Vec<u32> = entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| *pid != std::process::id())
        .collect();
    pids.sort_unstable();
    // One socket table per network namespace, read from its first process.
    let mut tables: HashMap<PathBuf, HashSet<u64>> = HashMap::new();
    let mut owners = Vec::new();
    for pid in pids {
        let dir = proc_root.join(pid.to_string());
        let Ok(netns) = std::fs::read_link(dir.join("ns/net")) else {
            continue;
        };
        let inodes = tables.entry(netns).or_insert_with(|| {
            std::fs::read_to_string(dir.join("net/unix"))
                .map(|table| listening_inodes(&table, sockets))
                .unwrap_or_default()
        });
        if inodes.is_empty() {
            continue;
        }
        let Ok(fds) = std::fs::read_dir(dir.join("fd")) else {
            continue;
        };
        let holds = fds.filter_map(Result::ok).any(|fd| {
            std::fs::read_link(fd.path())
                .ok()
                .and_then(|link| socket_inode(&link))
                .is_some_and(|inode| inodes.contains(&inode))
        });
        if holds {
            owners.push(pid);
        }
    }
    Ok(owners)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 41234 /run/containerd/containerd.sock
0000000000000000: 00000002 00000000 00010000 0001 01 41240 /run/containerd/containerd.sock.ttrpc
0000000000000000: 00000003 00000000 00000000 0001 03 41300 /run/containerd/containerd.sock
0000000000000000: 00000002 00000000 00010000 0001 01 51000 @/containerd-shim/abc.sock
0000000000000000: 00000002 00000000 00000000 0002 01 52000
";

    #[test]
    fn only_listening_sockets_on_the_exact_path_count() {
        let socket = PathBuf::from("/run/containerd/containerd.sock");
        let found = listening_inodes(TABLE, std::slice::from_ref(&socket));
        assert_eq!(found, HashSet::from([41234]));
        let both = [
            socket.clone(),
            PathBuf::from("/run/containerd/containerd.sock.ttrpc"),
        ];
        assert_eq!(
            listening_inodes(TABLE, &both),
            HashSet::from([41234, 41240])
        );
        assert!(listening_inodes(TABLE, &[PathBuf::from("/run/containerd")]).is_empty());
        assert!(listening_inodes("", &[socket]).is_empty());
    }

    #[test]
    fn fd_links_name_socket_inodes() {
        assert_eq!(socket_inode(Path::new("socket:[41234]")), Some(41234));
        assert_eq!(socket_inode(Path::new("pipe:[41234]")), None);
        assert_eq!(socket_inode(Path::new("/dev/null")), None);
        assert_eq!(socket_inode(Path::new("socket:[x]")), None);
    }

    /// A child process listening on a socket is found by the socket's path; nothing is found
    /// for a path nobody listens on.
    #[test]
    fn finds_the_process_listening_on_a_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("serve.sock");
        let ready = dir.path().join("ready");
        let script = format!(
            "import socket, pathlib, time\n\
             s = socket.socket(socket.AF_UNIX)\n\
             s.bind({socket:?})\n\
             s.listen()\n\
             pathlib.Path({ready:?}).touch()\n\
             time.sleep(30)\n",
            socket = socket.display().to_string(),
            ready = ready.display().to_string(),
        );
        let mut child = std::process::Command::new("python3")
            .args(["-c", &script])
            .spawn()
            .expect("python3");
        for _ in 0..200 {
            if ready.exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let found = find(Path::new("/proc"), &[dir.path().join("other.sock"), socket]);
        let none = find(Path::new("/proc"), &[dir.path().join("other.sock")]);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.expect("scan"), vec![child.id()]);
        assert_eq!(none.expect("scan"), Vec::<u32>::new());
    }
}
