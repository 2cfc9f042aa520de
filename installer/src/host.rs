//! The node's root file system as the installer sees it: mounted at `--host-root` (`/host`).

use std::path::{Component, Path, PathBuf};

/// Maps host paths (`/etc/containerd/config.toml`) to where they are in this container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRoot {
    root: PathBuf,
}

impl HostRoot {
    pub fn new(root: impl Into<PathBuf>) -> HostRoot {
        HostRoot { root: root.into() }
    }

    /// Where host path `host_path` is below the mounted root. `..` components are dropped so a
    /// path can never leave the host root.
    pub fn path(&self, host_path: &Path) -> PathBuf {
        let mut out = self.root.clone();
        for part in host_path.components() {
            if let Component::Normal(name) = part {
                out.push(name);
            }
        }
        out
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_paths_land_below_the_root() {
        let host = HostRoot::new("/host");
        assert_eq!(
            host.path(Path::new("/etc/containerd/config.toml")),
            PathBuf::from("/host/etc/containerd/config.toml")
        );
        assert_eq!(
            host.path(Path::new("/../../etc/passwd")),
            PathBuf::from("/host/etc/passwd")
        );
        assert_eq!(
            host.path(Path::new("relative/x")),
            PathBuf::from("/host/relative/x")
        );
    }
}
