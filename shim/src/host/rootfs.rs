//! The container's root filesystem: containerd hands the shim the snapshot's mounts (an overlay
//! for `ctr` and CRI) to mount at `<bundle>/rootfs`, and the shim unmounts it at delete.

use std::path::{Path, PathBuf};

use crate::error::ShimError;

/// One mount as containerd describes it in CreateTaskRequest.rootfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    pub fs_type: String,
    pub source: String,
    pub options: Vec<String>,
}

/// Mounts `mounts` at `<bundle>/rootfs`, returning the path when something was mounted (so it
/// is unmounted at delete). With no mounts, the rootfs was prepared by the caller.
pub fn mount(bundle: &Path, mounts: &[RootfsMount]) -> Result<Option<PathBuf>, ShimError> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(|e| ShimError::Rootfs {
        target: target.clone(),
        reason: format!("creating the directory: {e}"),
    })?;
    for m in mounts {
        containerd_shim::mount::mount_rootfs(
            Some(m.fs_type.as_str()).filter(|t| !t.is_empty()),
            Some(m.source.as_str()).filter(|s| !s.is_empty()),
            &m.options,
            &target,
        )
        .map_err(|e| {
            // Undo what was already mounted so a failed create leaves nothing behind.
            let _ = unmount(&target);
            ShimError::Rootfs {
                target: target.clone(),
                reason: format!("{} mount of {}: {e}", m.fs_type, m.source),
            }
        })?;
    }
    Ok(Some(target))
}

/// Unmounts everything mounted at `target` (lazily, so a busy mount cannot keep the container).
pub fn unmount(target: &Path) -> Result<(), ShimError> {
    loop {
        match nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => return Ok(()),
            Err(e) => {
                return Err(ShimError::Rootfs {
                    target: target.to_path_buf(),
                    reason: format!("unmounting: {e}"),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_mounts_means_nothing_to_undo() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert_eq!(mount(dir.path(), &[]).expect("nothing to mount"), None);
    }

    #[test]
    fn unmounting_what_is_not_mounted_is_fine() {
        let dir = tempfile::tempdir().expect("tempdir");
        unmount(dir.path()).expect("nothing mounted");
    }

    #[test]
    fn a_failing_mount_names_the_target_and_the_source() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = mount(
            dir.path(),
            &[RootfsMount {
                fs_type: "no-such-fs".into(),
                source: "nothing".into(),
                options: vec![],
            }],
        )
        .expect_err("unknown filesystem type");
        let text = err.to_string();
        assert!(text.contains("rootfs"), "{text}");
        assert!(text.contains("no-such-fs mount of nothing"), "{text}");
    }
}
