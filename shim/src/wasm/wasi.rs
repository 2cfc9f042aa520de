//! The guest's WASI view of its container, built from the OCI spec: args, env and cwd from the
//! process; the rootfs as `/` and each directory bind mount at its destination as preopened
//! directories (read-only where the spec says so). Nothing else of the host is reachable.

use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

use crate::error::ShimError;
use crate::host::stdio::GuestStdio;
use crate::spec::ContainerSpec;

/// One directory the guest sees: where it lives on the host and its path in the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preopen {
    pub host: std::path::PathBuf,
    pub guest: String,
    pub read_only: bool,
}

/// The directories a guest of `spec` sees. File bind mounts (`/etc/hosts`, the termination log)
/// are left out: WASI preopens are directories.
pub fn preopens(spec: &ContainerSpec) -> Vec<Preopen> {
    let mut dirs = vec![Preopen {
        host: spec.root.clone(),
        guest: "/".to_string(),
        read_only: spec.root_read_only,
    }];
    for mount in &spec.mounts {
        if mount.source.is_dir() {
            dirs.push(Preopen {
                host: mount.source.clone(),
                guest: mount.destination.clone(),
                read_only: mount.read_only,
            });
        }
    }
    dirs
}

/// A WASI context builder for a guest of `spec` writing to `stdio`.
pub fn builder(spec: &ContainerSpec, stdio: GuestStdio) -> Result<WasiCtxBuilder, ShimError> {
    builder_with_preopens(spec, &preopens(spec), stdio)
}

/// As [`builder`], with the directories already listed (an HTTP container lists them once,
/// not per request; each request's context still opens its own handles on them).
pub fn builder_with_preopens(
    spec: &ContainerSpec,
    dirs: &[Preopen],
    stdio: GuestStdio,
) -> Result<WasiCtxBuilder, ShimError> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&spec.args)
        .envs(&spec.env)
        .initial_cwd(&spec.cwd);
    if let Some(stdin) = stdio.stdin {
        builder.stdin(stdin);
    }
    if let Some(stdout) = stdio.stdout {
        builder.stdout(stdout);
    }
    if let Some(stderr) = stdio.stderr {
        builder.stderr(stderr);
    }
    for dir in dirs {
        let perms = if dir.read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        builder
            .preopened_dir(&dir.host, &dir.guest, perms)
            .map_err(|e| {
                ShimError::Wasi(format!(
                    "preopening {} as {}: {e:#}",
                    dir.host.display(),
                    dir.guest
                ))
            })?;
    }
    // Sockets are made in the shim's network namespace, which is the pod's (see `netns.rs`).
    builder
        .inherit_network()
        .allow_tcp(true)
        .allow_udp(true)
        .allow_ip_name_lookup(true);
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::BindMount;

    #[test]
    fn rootfs_is_slash_and_only_directory_mounts_are_preopened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        let data = dir.path().join("data");
        let hosts = dir.path().join("hosts");
        std::fs::create_dir_all(&root).expect("mkdir");
        std::fs::create_dir_all(&data).expect("mkdir");
        std::fs::write(&hosts, "127.0.0.1 localhost\n").expect("write");
        let spec = ContainerSpec {
            root: root.clone(),
            root_read_only: true,
            mounts: vec![
                BindMount {
                    destination: "/data".into(),
                    source: data.clone(),
                    read_only: false,
                },
                BindMount {
                    destination: "/etc/hosts".into(),
                    source: hosts,
                    read_only: true,
                },
                BindMount {
                    destination: "/missing".into(),
                    source: dir.path().join("nope"),
                    read_only: true,
                },
            ],
            ..ContainerSpec::default()
        };
        assert_eq!(
            preopens(&spec),
            [
                Preopen {
                    host: root,
                    guest: "/".into(),
                    read_only: true
                },
                Preopen {
                    host: data,
                    guest: "/data".into(),
                    read_only: false
                },
            ]
        );
    }
}
