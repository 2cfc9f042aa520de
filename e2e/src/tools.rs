//! Where the project's tools live: the repository root, `.tools/`, and the containerd that
//! `hack/setup.sh` unpacked there.

use std::path::{Path, PathBuf};

/// The repository root (the workspace that holds this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Cargo's target directory: `CARGO_TARGET_DIR` when set, else `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_root().join(dir)
            }
        }
        _ => repo_root().join("target"),
    }
}

/// A Wasm guest built by `hack/build-guests.sh` for `target` (`wasm32-wasip2`, `wasm32-wasip1`);
/// the error says how to build it.
pub fn guest_wasm(target: &str, name: &str) -> Result<Vec<u8>, String> {
    let path = target_dir()
        .join(target)
        .join("release")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).map_err(|e| {
        format!(
            "guest {} is missing ({e}): run `bash hack/build-guests.sh` first",
            path.display()
        )
    })
}

/// Where `hack/build-guests.sh` puts an example in another language (`js`, `python`):
/// `target/examples/LANGUAGE/NAME.wasm`.
pub fn example_path(language: &str, name: &str) -> PathBuf {
    target_dir()
        .join("examples")
        .join(language)
        .join(format!("{name}.wasm"))
}

/// The example [`example_path`] names; the error says how to build it.
pub fn example_wasm(language: &str, name: &str) -> Result<Vec<u8>, String> {
    let path = example_path(language, name);
    std::fs::read(&path).map_err(|e| {
        format!(
            "example {} is missing ({e}): run `bash hack/build-guests.sh` first",
            path.display()
        )
    })
}

/// Cargo's debug output directory (`target/debug`), where the shim binary is built.
pub fn debug_bin_dir() -> PathBuf {
    target_dir().join("debug")
}

/// Finds an executable on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The containerd release lines the harness can start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContainerdVersion {
    /// containerd 2.x from Debian sid (config layout `version = 3`).
    #[default]
    V2,
    /// containerd 1.7 from Debian trixie (config layout `version = 2`).
    V1_7,
}

impl ContainerdVersion {
    /// The Debian suite `hack/setup.sh` takes this containerd from.
    pub fn debian_suite(self) -> &'static str {
        match self {
            ContainerdVersion::V2 => "sid",
            ContainerdVersion::V1_7 => "trixie",
        }
    }

    /// The command that installs this containerd into `.tools/`.
    pub fn setup_command(self) -> &'static str {
        match self {
            ContainerdVersion::V2 => "bash hack/setup.sh",
            ContainerdVersion::V1_7 => "SPORE_CONTAINERD=1.7 bash hack/setup.sh",
        }
    }

    /// `.tools/containerd-<suite>/usr/bin`: holds `containerd`, `ctr`, `containerd-shim-runc-v2`.
    pub fn bin_dir(self) -> PathBuf {
        repo_root()
            .join(".tools")
            .join(format!("containerd-{}", self.debian_suite()))
            .join("usr")
            .join("bin")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containerd_bin_dirs_follow_the_setup_script_layout() {
        assert!(
            ContainerdVersion::V2
                .bin_dir()
                .ends_with(".tools/containerd-sid/usr/bin")
        );
        assert!(
            ContainerdVersion::V1_7
                .bin_dir()
                .ends_with(".tools/containerd-trixie/usr/bin")
        );
        assert!(
            ContainerdVersion::V1_7
                .setup_command()
                .contains("SPORE_CONTAINERD=1.7")
        );
    }

    #[test]
    fn target_dir_is_absolute() {
        assert!(target_dir().is_absolute());
        assert!(debug_bin_dir().ends_with("debug"));
    }
}
