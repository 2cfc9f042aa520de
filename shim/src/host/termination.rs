//! The container's termination message: the file the kubelet reads when a container ends, at
//! its `terminationMessagePath` (default `/dev/termination-log`), which the kubelet mounts as a
//! file and `kubectl describe pod` shows. A Wasm guest cannot write it itself (file mounts are
//! not in its view), so the shim writes a short message there for every abnormal end, capped
//! at the kubelet's 4 KiB. A normal exit writes nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::spec::ContainerSpec;

/// The kubelet reads at most this much of the file.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The annotation in which the kubelet records the container's `terminationMessagePath`
/// (passed into the OCI spec when the runtime's `container_annotations` allow it, as the node
/// installer configures).
pub const PATH_ANNOTATION: &str = "io.kubernetes.container.terminationMessagePath";
/// Kubernetes' default `terminationMessagePath`.
pub const DEFAULT_PATH: &str = "/dev/termination-log";

/// Where the container's termination message goes on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TerminationLog(PathBuf);

impl TerminationLog {
    /// The host file behind the container's termination message path: the mount at the path
    /// the annotation names, else at the default path, else the one file mount laid out as the
    /// kubelet lays the termination file out (`.../pods/<uid>/containers/<name>/<id>`).
    pub fn of(spec: &ContainerSpec) -> Option<Self> {
        let file_mount = |destination: &str| {
            spec.mounts
                .iter()
                .find(|m| m.destination == destination)
                .map(|m| m.source.clone())
        };
        if let Some(path) = spec.annotations.get(PATH_ANNOTATION) {
            return file_mount(path).map(TerminationLog);
        }
        if let Some(source) = file_mount(DEFAULT_PATH) {
            return Some(TerminationLog(source));
        }
        let kubelet_laid_out: Vec<&PathBuf> = spec
            .mounts
            .iter()
            .map(|m| &m.source)
            .filter(|source| is_kubelet_container_file(source))
            .collect();
        match kubelet_laid_out.as_slice() {
            [only] => Some(TerminationLog((*only).clone())),
            _ => None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `message` (cut to [`MAX_MESSAGE_BYTES`] on a character boundary) into the file the
    /// kubelet made; a file that does not exist is not created.
    pub fn write(&self, message: &str) {
        let written = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&self.0)
            .and_then(|mut file| file.write_all(capped(message).as_bytes()));
        if let Err(err) = written {
            tracing::warn!(path = %self.0.display(), %err, "cannot write the termination message");
        }
    }
}

/// `message` cut to [`MAX_MESSAGE_BYTES`] bytes without splitting a character.
pub fn capped(message: &str) -> &str {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    &message[..end]
}

/// `.../pods/<uid>/containers/<name>/<id>`: the kubelet's termination-message file.
fn is_kubelet_container_file(path: &Path) -> bool {
    let parts: Vec<&str> = path
        .components()
        .filter_map(|c| c.as_os_str().to_str())
        .collect();
    parts.len() >= 5 && {
        let n = parts.len();
        parts[n - 5] == "pods" && parts[n - 3] == "containers"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::BindMount;

    fn mount(destination: &str, source: &str) -> BindMount {
        BindMount {
            destination: destination.into(),
            source: source.into(),
            read_only: false,
        }
    }

    #[test]
    fn the_annotated_path_wins_then_the_default_then_the_kubelets_layout() {
        let kubelet = "/var/lib/kubelet/pods/1234/containers/app/9f8e7d6c";
        let mut spec = ContainerSpec {
            mounts: vec![
                mount("/etc/hosts", "/var/lib/kubelet/pods/1234/etc-hosts"),
                mount("/tmp/why", kubelet),
            ],
            ..ContainerSpec::default()
        };
        assert_eq!(
            TerminationLog::of(&spec),
            Some(TerminationLog(kubelet.into()))
        );
        spec.annotations
            .insert(PATH_ANNOTATION.into(), "/tmp/why".into());
        assert_eq!(
            TerminationLog::of(&spec),
            Some(TerminationLog(kubelet.into()))
        );
        spec.annotations
            .insert(PATH_ANNOTATION.into(), "/nowhere".into());
        assert_eq!(TerminationLog::of(&spec), None);
        let defaulted = ContainerSpec {
            mounts: vec![mount(DEFAULT_PATH, "/x/termination")],
            ..ContainerSpec::default()
        };
        assert_eq!(
            TerminationLog::of(&defaulted),
            Some(TerminationLog("/x/termination".into()))
        );
        assert_eq!(TerminationLog::of(&ContainerSpec::default()), None);
    }

    #[test]
    fn messages_are_cut_at_four_kib_on_a_character_boundary() {
        let long = "é".repeat(3000);
        let cut = capped(&long);
        assert!(cut.len() <= MAX_MESSAGE_BYTES && cut.len() >= MAX_MESSAGE_BYTES - 1);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(capped("short"), "short");
    }

    #[test]
    fn writing_replaces_the_file_the_kubelet_made_and_never_creates_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("termination");
        std::fs::write(&file, "old text that is longer").expect("write");
        TerminationLog(file.clone()).write("guest trapped");
        assert_eq!(
            std::fs::read_to_string(&file).expect("read"),
            "guest trapped"
        );
        let missing = dir.path().join("missing");
        TerminationLog(missing.clone()).write("x");
        assert!(!missing.exists());
    }
}
