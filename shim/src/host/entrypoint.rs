//! A container's entrypoint (`args[0]`, relative to its working directory) opened inside its
//! rootfs only (see `in_root.rs`): a regular file, at most [`MAX_ENTRYPOINT_BYTES`], whose first
//! bytes say whether it is Wasm. Errors name the path the container gave and never carry bytes of
//! the file.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::spec::ContainerSpec;

/// The largest entrypoint the shim reads.
pub const MAX_ENTRYPOINT_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum EntrypointError {
    #[error("the container has no entrypoint: the OCI spec's process.args is empty")]
    NoEntrypoint,
    #[error("the entrypoint {path} does not exist in the container's image")]
    NotFound { path: PathBuf },
    #[error("cannot open the entrypoint {path} in the container's image: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the entrypoint {path} is not a regular file (it is {what})")]
    NotAFile { path: PathBuf, what: &'static str },
    #[error("the entrypoint {path} is {size} bytes; Spore reads at most {MAX_ENTRYPOINT_BYTES}")]
    TooLarge { path: PathBuf, size: u64 },
    #[error("cannot read the entrypoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The entrypoint file, open.
pub struct Entrypoint {
    file: File,
    /// The path as the container names it.
    shown_as: PathBuf,
    size: u64,
    header: Vec<u8>,
}

/// Names the file and its size, never its bytes.
impl std::fmt::Debug for Entrypoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entrypoint")
            .field("path", &self.shown_as)
            .field("size", &self.size)
            .field("wasm", &self.is_wasm())
            .finish()
    }
}

impl Entrypoint {
    /// Opens the entrypoint of `spec` inside its rootfs.
    pub fn open(spec: &ContainerSpec) -> Result<Self, EntrypointError> {
        let first = spec.args.first().ok_or(EntrypointError::NoEntrypoint)?;
        let in_container = if first.starts_with('/') {
            PathBuf::from(first)
        } else {
            Path::new(&spec.cwd).join(first)
        };
        Self::open_at(&spec.root, &in_container, PathBuf::from(first))
    }

    /// Opens `path` (as the container sees it) below `root`; errors show `shown_as`.
    pub fn open_at(root: &Path, path: &Path, shown_as: PathBuf) -> Result<Self, EntrypointError> {
        let file = crate::host::in_root::open_in_root(root, path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                EntrypointError::NotFound {
                    path: shown_as.clone(),
                }
            } else {
                EntrypointError::Open {
                    path: shown_as.clone(),
                    source,
                }
            }
        })?;
        let meta = file.metadata().map_err(|source| EntrypointError::Open {
            path: shown_as.clone(),
            source,
        })?;
        if !meta.is_file() {
            let what = if meta.is_dir() {
                "a directory"
            } else {
                "a device, FIFO or socket"
            };
            return Err(EntrypointError::NotAFile {
                path: shown_as,
                what,
            });
        }
        let size = meta.len();
        if size > MAX_ENTRYPOINT_BYTES {
            return Err(EntrypointError::TooLarge {
                path: shown_as,
                size,
            });
        }
        let mut header = vec![0u8; 8.min(size as usize)];
        file.read_exact_at(&mut header, 0)
            .map_err(|source| EntrypointError::Read {
                path: shown_as.clone(),
                source,
            })?;
        Ok(Entrypoint {
            file,
            shown_as,
            size,
            header,
        })
    }

    /// Whether the file starts with the Wasm magic bytes.
    pub fn is_wasm(&self) -> bool {
        spore_format::starts_with_wasm_magic(&self.header)
    }

    pub fn shown_as(&self) -> &Path {
        &self.shown_as
    }

    /// The whole file (at most [`MAX_ENTRYPOINT_BYTES`]).
    pub fn read_all(mut self) -> Result<Vec<u8>, EntrypointError> {
        let mut bytes = Vec::with_capacity(self.size as usize);
        (&mut self.file)
            .take(MAX_ENTRYPOINT_BYTES)
            .read_to_end(&mut bytes)
            .map_err(|source| EntrypointError::Read {
                path: self.shown_as.clone(),
                source,
            })?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn spec_in(root: &Path, args: &[&str], cwd: &str) -> ContainerSpec {
        ContainerSpec {
            args: args.iter().map(|a| a.to_string()).collect(),
            cwd: cwd.into(),
            root: root.to_path_buf(),
            ..ContainerSpec::default()
        }
    }

    #[test]
    fn a_symlink_to_a_host_path_reads_the_rootfs_file_of_that_name() {
        let host = tempfile::tempdir().expect("tempdir");
        let secret = host.path().join("secret.wasm");
        std::fs::write(&secret, b"\0asm\x01\0\0\0host").expect("write");
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        // `/app.wasm` points at the host file's absolute path, which does not exist in the rootfs.
        symlink(&secret, root.join("app.wasm")).expect("symlink");
        let err = Entrypoint::open(&spec_in(root, &["/app.wasm"], "/")).expect_err("escapes");
        assert!(matches!(err, EntrypointError::NotFound { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            "the entrypoint /app.wasm does not exist in the container's image"
        );
    }

    #[test]
    fn relative_entrypoints_start_at_the_working_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("work")).expect("mkdir");
        std::fs::write(dir.path().join("work/app.wasm"), b"\0asm\x0d\0\x01\0").expect("write");
        let file = Entrypoint::open(&spec_in(dir.path(), &["app.wasm"], "/work")).expect("opens");
        assert!(file.is_wasm());
        assert_eq!(file.read_all().expect("reads"), b"\0asm\x0d\0\x01\0");
    }

    #[test]
    fn directories_and_devices_are_not_entrypoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("app.wasm")).expect("mkdir");
        let err = Entrypoint::open(&spec_in(dir.path(), &["/app.wasm"], "/")).expect_err("dir");
        assert_eq!(
            err.to_string(),
            "the entrypoint /app.wasm is not a regular file (it is a directory)"
        );
        symlink("/dev/zero", dir.path().join("zero")).expect("symlink");
        std::fs::create_dir_all(dir.path().join("dev")).expect("mkdir");
        let err = Entrypoint::open(&spec_in(dir.path(), &["/zero"], "/")).expect_err("missing");
        assert!(matches!(err, EntrypointError::NotFound { .. }), "{err}");
    }

    #[test]
    fn a_script_is_not_wasm_and_its_bytes_stay_out_of_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("run.sh"), b"#!/bin/sh\nsecret").expect("write");
        let file = Entrypoint::open(&spec_in(dir.path(), &["/run.sh"], "/")).expect("opens");
        assert!(!file.is_wasm());
        let shown = format!("{file:?}");
        assert!(
            shown.contains("/run.sh") && !shown.contains("#!"),
            "{shown}"
        );
    }
}
