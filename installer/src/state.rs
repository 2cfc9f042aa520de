//! The installer's record on the host: which file it edited, the bytes that file had before
//! Spore's runtime was added (the backup), and the digest of what it wrote. Uninstall uses it to
//! give the file back byte for byte.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fs_atomic;

/// The state file's name inside the state directory.
pub const STATE_FILE: &str = "state.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The edited file, as a host path.
    pub config_file: PathBuf,
    /// Its content before the `spore` runtime was added; `None` when Spore created the file.
    pub original: Option<String>,
    /// sha256 of the content Spore last wrote.
    pub written_sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a Spore state file: {source}")]
    Decode {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads the record in `dir`, `None` when there is none.
pub fn load(dir: &Path) -> Result<Option<Record>, StateError> {
    let path = dir.join(STATE_FILE);
    let Some(bytes) = fs_atomic::read_optional(&path).map_err(|source| StateError::Read {
        path: path.clone(),
        source,
    })?
    else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StateError::Decode { path, source })
}

/// Writes the record atomically (readable by root only: it holds a copy of containerd's config).
pub fn save(dir: &Path, record: &Record) -> Result<(), StateError> {
    let path = dir.join(STATE_FILE);
    let write_err = |source| StateError::Write {
        path: path.clone(),
        source,
    };
    let bytes =
        serde_json::to_vec_pretty(record).map_err(|e| write_err(std::io::Error::other(e)))?;
    fs_atomic::replace(&path, &bytes, 0o600).map_err(write_err)
}

/// Removes the record and the directory when it is left empty.
pub fn clear(dir: &Path) -> Result<(), StateError> {
    let path = dir.join(STATE_FILE);
    fs_atomic::remove_optional(&path).map_err(|source| StateError::Write {
        path: path.clone(),
        source,
    })?;
    // Only an empty directory is removed; anything else someone put there stays.
    let _ = std::fs::remove_dir(dir);
    Ok(())
}

/// Written by `--uninstall`. An installer process that started before it stays idle (the
/// DaemonSet still runs until Helm deletes it after the pre-delete hook); one started after it
/// (a new install) removes it and installs.
pub const UNINSTALLED_MARKER: &str = "uninstalled";

/// Leaves the marker (with its own mtime as the time of the uninstall).
pub fn mark_uninstalled(dir: &Path) -> Result<(), StateError> {
    let path = dir.join(UNINSTALLED_MARKER);
    fs_atomic::replace(
        &path,
        b"uninstalled by spore-node-install --uninstall\n",
        0o644,
    )
    .map_err(|source| StateError::Write { path, source })
}

/// Whether an uninstall happened at or after `since`. A marker from before `since` is removed.
pub fn uninstalled_since(dir: &Path, since: std::time::SystemTime) -> Result<bool, StateError> {
    let path = dir.join(UNINSTALLED_MARKER);
    let modified = match std::fs::metadata(&path).and_then(|m| m.modified()) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(StateError::Read { path, source }),
    };
    if modified >= since {
        return Ok(true);
    }
    fs_atomic::remove_optional(&path).map_err(|source| StateError::Write { path, source })?;
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exact_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state_dir = dir.path().join("var/lib/spore/node-install");
        assert_eq!(load(&state_dir).expect("load"), None);
        let record = Record {
            config_file: "/etc/containerd/config.toml".into(),
            original: Some("version = 2\n\t# tabs, \"quotes\", unicode: é\r\n".into()),
            written_sha256: "ab".repeat(32),
        };
        save(&state_dir, &record).expect("save");
        assert_eq!(load(&state_dir).expect("load"), Some(record));
        clear(&state_dir).expect("clear");
        assert!(!state_dir.exists());
    }

    #[test]
    fn the_uninstall_marker_stops_only_older_installers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let before = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        assert!(!uninstalled_since(dir.path(), before).expect("none"));
        mark_uninstalled(dir.path()).expect("mark");
        assert!(uninstalled_since(dir.path(), before).expect("older process idles"));
        let after = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(!uninstalled_since(dir.path(), after).expect("newer process installs"));
        assert!(
            !dir.path().join(UNINSTALLED_MARKER).exists(),
            "and clears the marker"
        );
    }

    #[test]
    fn garbage_is_a_decode_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(STATE_FILE), b"not json").expect("write");
        assert!(matches!(load(dir.path()), Err(StateError::Decode { .. })));
    }
}
