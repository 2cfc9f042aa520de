//! Puts the shim binary on the host: verified by sha256, replaced atomically, only when the
//! digest on the host differs (so a DaemonSet rollout with a new image upgrades every node).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::fs_atomic;

/// The shim's file name; containerd maps runtime type `io.containerd.spore.v1` to it.
pub const SHIM_BINARY: &str = spore_format::SHIM_BINARY;

#[derive(Debug, thiserror::Error)]
pub enum ShimCopyError {
    #[error("reading the shim at {path}: {source}")]
    ReadSource {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the shim at {path} has sha256 {actual}, expected {expected}")]
    SourceDigest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("installing the shim at {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the shim written to {path} reads back with sha256 {actual}, expected {expected}")]
    WrittenDigest {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("removing the shim at {path}: {source}")]
    Remove {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    pub path: PathBuf,
    pub sha256: String,
    pub changed: bool,
}

/// Copies `source` to `dest` unless `dest` already has the same digest. `expected` (hex sha256),
/// when given, must match the source.
pub fn install(
    source: &Path,
    dest: &Path,
    expected: Option<&str>,
) -> Result<Installed, ShimCopyError> {
    let bytes = std::fs::read(source).map_err(|source_err| ShimCopyError::ReadSource {
        path: source.to_owned(),
        source: source_err,
    })?;
    let digest = sha256_hex(&bytes);
    if let Some(expected) = expected
        && !expected.eq_ignore_ascii_case(&digest)
    {
        return Err(ShimCopyError::SourceDigest {
            path: source.to_owned(),
            expected: expected.to_ascii_lowercase(),
            actual: digest,
        });
    }
    let write_err = |e| ShimCopyError::Write {
        path: dest.to_owned(),
        source: e,
    };
    let current = fs_atomic::read_optional(dest).map_err(write_err)?;
    if current.as_deref().map(sha256_hex).as_deref() == Some(digest.as_str()) {
        return Ok(Installed {
            path: dest.to_owned(),
            sha256: digest,
            changed: false,
        });
    }
    fs_atomic::replace(dest, &bytes, 0o755).map_err(write_err)?;
    let written = std::fs::read(dest).map_err(write_err)?;
    let written_digest = sha256_hex(&written);
    if written_digest != digest {
        return Err(ShimCopyError::WrittenDigest {
            path: dest.to_owned(),
            expected: digest,
            actual: written_digest,
        });
    }
    Ok(Installed {
        path: dest.to_owned(),
        sha256: digest,
        changed: true,
    })
}

/// Removes the installed shim; a missing file is fine. Running shims keep their open binary.
pub fn uninstall(dest: &Path) -> Result<bool, ShimCopyError> {
    fs_atomic::remove_optional(dest).map_err(|e| ShimCopyError::Remove {
        path: dest.to_owned(),
        source: e,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn copies_once_then_only_when_the_digest_differs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        let dest = dir.path().join("host/opt/spore/bin").join(SHIM_BINARY);
        std::fs::write(&src, b"shim v1").expect("write");
        let first = install(&src, &dest, None).expect("install");
        assert!(first.changed);
        assert_eq!(first.sha256, sha256_hex(b"shim v1"));
        let mode = std::fs::metadata(&dest).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o755);
        assert!(!install(&src, &dest, None).expect("again").changed);
        std::fs::write(&src, b"shim v2").expect("write");
        let upgraded = install(&src, &dest, Some(&sha256_hex(b"shim v2"))).expect("upgrade");
        assert!(upgraded.changed);
        assert_eq!(std::fs::read(&dest).expect("read"), b"shim v2");
        assert!(uninstall(&dest).expect("remove"));
        assert!(!dest.exists());
        assert!(!uninstall(&dest).expect("again"));
    }

    #[test]
    fn a_source_with_the_wrong_digest_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        let dest = dir.path().join("dest");
        std::fs::write(&src, b"tampered").expect("write");
        let err = install(&src, &dest, Some(&sha256_hex(b"genuine"))).expect_err("digest");
        assert!(matches!(err, ShimCopyError::SourceDigest { .. }), "{err}");
        assert!(!dest.exists());
        let err = install(&dir.path().join("missing"), &dest, None).expect_err("missing");
        assert!(matches!(err, ShimCopyError::ReadSource { .. }), "{err}");
    }
}
