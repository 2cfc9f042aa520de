//! Running a program in another process's namespaces (the host's, through PID 1), the way
//! `nsenter -t PID -m -u -i -n` does, without needing `nsenter` in the image: the installer
//! image is `scratch` plus two static binaries.
//!
//! The namespace files are opened before the fork; the child joins them with setns(2) between
//! fork and exec, so the program is looked up and run in the target's mount namespace.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// The namespaces joined, in the order nsenter joins them (mount last: after it, paths are the
/// target's). The PID namespace is not among them: the installer shares the host's already
/// (`hostPID: true`), and joining one only affects children anyway.
const NAMESPACES: [&str; 4] = ["ipc", "uts", "net", "mnt"];

/// A search path for the program inside the target's mount namespace (the container's own
/// `PATH` means nothing there).
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum HostNamespaceError {
    #[error("could not open {path} (is the pod hostPID and privileged?): {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The namespaces of one process, held open.
#[derive(Debug)]
pub struct Namespaces {
    files: Vec<OwnedFd>,
}

impl Namespaces {
    /// Opens the namespaces of `pid` under `proc` (normally `/proc`).
    pub fn of(proc: &Path, pid: u32) -> Result<Self, HostNamespaceError> {
        let dir = proc.join(pid.to_string()).join("ns");
        let files = NAMESPACES
            .iter()
            .map(|name| {
                let path = dir.join(name);
                std::fs::File::open(&path)
                    .map(OwnedFd::from)
                    .map_err(|source| HostNamespaceError::Open { path, source })
            })
            .collect::<Result<_, _>>()?;
        Ok(Namespaces { files })
    }

    /// A command that runs `program` with `args` inside these namespaces. `self` must outlive
    /// the spawn (the child joins the namespaces through these open files).
    pub fn command(&self, program: &str, args: &[String]) -> tokio::process::Command {
        let fds: Vec<i32> = self.files.iter().map(AsRawFd::as_raw_fd).collect();
        let mut command = tokio::process::Command::new(program);
        command.args(args).env("PATH", HOST_PATH);
        // SAFETY: the closure runs in the forked child before exec; it only calls setns(2),
        // which is async-signal-safe, on descriptors that stay open until the spawn returns.
        unsafe {
            command.pre_exec(move || {
                for fd in &fds {
                    if libc::setns(*fd, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        command
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace_of(pid: u32, name: &str) -> String {
        std::fs::read_link(format!("/proc/{pid}/ns/{name}"))
            .expect("readlink ns")
            .display()
            .to_string()
    }

    /// A process in new mount and UTS namespaces whose hostname is set (root only: `unshare`
    /// needs CAP_SYS_ADMIN). It says `ready` once `hostname` has run: being in the new
    /// namespace is not enough, the name is set a moment later (a run under load read the
    /// host's name).
    fn process_in_new_namespaces() -> Option<std::process::Child> {
        use std::io::BufRead;
        let mut child = std::process::Command::new("unshare")
            .args([
                "--mount",
                "--uts",
                "sh",
                "-c",
                "hostname spore-ns-test && echo ready && exec sleep 30",
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        let stdout = child.stdout.take()?;
        std::io::BufReader::new(stdout).read_line(&mut line).ok()?;
        if line.trim() != "ready" {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        assert_ne!(
            namespace_of(child.id(), "uts"),
            namespace_of(std::process::id(), "uts")
        );
        Some(child)
    }

    #[tokio::test]
    async fn a_command_runs_in_the_target_namespaces() {
        let Some(mut target) = process_in_new_namespaces() else {
            panic!("unshare did not start a process in new namespaces");
        };
        let pid = target.id();
        let target_mnt = namespace_of(pid, "mnt");
        let namespaces = Namespaces::of(Path::new("/proc"), pid).expect("open namespaces");
        let output = namespaces
            .command(
                "sh",
                &[
                    "-c".to_owned(),
                    "hostname; readlink /proc/self/ns/mnt".to_owned(),
                ],
            )
            .output()
            .await
            .expect("run in namespaces");
        let _ = target.kill();
        let _ = target.wait();
        assert!(output.status.success(), "{output:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let mut lines = stdout.lines();
        assert_eq!(lines.next(), Some("spore-ns-test"), "{stdout}");
        assert_eq!(lines.next(), Some(target_mnt.as_str()), "{stdout}");
        assert_ne!(target_mnt, namespace_of(std::process::id(), "mnt"));
    }

    #[test]
    fn a_missing_process_names_the_file() {
        let err = Namespaces::of(Path::new("/proc"), u32::MAX).expect_err("no such pid");
        assert!(err.to_string().contains("/ns/ipc"), "{err}");
    }
}
