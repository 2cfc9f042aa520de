//! What the shim needs from a bundle's OCI runtime spec (`config.json`), read once at create into a
//! plain struct so that the rest of the shim is independent of `oci-spec`'s accessors.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::ShimError;

/// The CRI annotation that names the pod (sandbox) a container belongs to.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
/// The CRI annotation that says whether a container is the pod's sandbox or an ordinary one.
pub const CONTAINER_TYPE_ANNOTATION: &str = "io.kubernetes.cri.container-type";

/// The network a container asks for in its spec's Linux namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkNamespace {
    /// No network namespace entry: the host's network.
    #[default]
    Host,
    /// A network namespace entry without a path: a new, empty namespace.
    New,
    /// A namespace to join (what CRI gives every pod).
    Path(PathBuf),
}

/// What a pod sandbox's spec asks of its namespaces besides the network: which it makes new
/// (an entry without a path). CRI gives a sandbox new IPC and UTS namespaces, a new PID
/// namespace unless the pod uses the host's, and a user namespace with `hostUsers: false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SandboxNamespaces {
    pub new_ipc: bool,
    pub new_uts: bool,
    pub new_pid: bool,
    /// A user namespace, or any namespace other than the network joined by path: what only
    /// runc does for a sandbox.
    pub needs_runc: bool,
}

/// A mount from the spec: the guest path, the host path, and whether it is read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub destination: String,
    pub source: PathBuf,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: String,
    /// The rootfs path, absolute (relative paths in the spec are resolved against the bundle).
    pub root: PathBuf,
    pub root_read_only: bool,
    /// Bind mounts only: proc, sysfs, tmpfs, devpts and other kernel filesystems mean nothing to
    /// a Wasm guest and are left out.
    pub mounts: Vec<BindMount>,
    pub memory_limit: Option<u64>,
    pub annotations: HashMap<String, String>,
    pub network: NetworkNamespace,
    pub cgroups_path: Option<String>,
    pub hostname: Option<String>,
    pub sandbox_namespaces: SandboxNamespaces,
}

impl ContainerSpec {
    /// Reads `<bundle>/config.json`.
    pub fn load(bundle: &Path) -> Result<Self, ShimError> {
        let path = bundle.join("config.json");
        let spec = Spec::load(&path).map_err(|e| ShimError::Spec {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_spec(&spec, bundle))
    }

    pub fn from_spec(spec: &Spec, bundle: &Path) -> Self {
        let process = spec.process().as_ref();
        let args = process.and_then(|p| p.args().clone()).unwrap_or_default();
        let env = process
            .and_then(|p| p.env().clone())
            .unwrap_or_default()
            .into_iter()
            .map(|entry| match entry.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (entry, String::new()),
            })
            .collect();
        let cwd = process
            .map(|p| p.cwd().to_string_lossy().into_owned())
            .filter(|c| !c.is_empty())
            .unwrap_or_else(|| "/".to_string());
        let (root, root_read_only) = match spec.root() {
            Some(root) => {
                let path = root.path();
                let abs = if path.is_absolute() {
                    path.clone()
                } else {
                    bundle.join(path)
                };
                (abs, root.readonly().unwrap_or(false))
            }
            None => (bundle.join("rootfs"), false),
        };
        let mounts = spec
            .mounts()
            .as_ref()
            .map(|mounts| {
                mounts
                    .iter()
                    .filter_map(|m| {
                        let options = m.options().clone().unwrap_or_default();
                        let is_bind = m.typ().as_deref() == Some("bind")
                            || options.iter().any(|o| o == "bind" || o == "rbind");
                        if !is_bind {
                            return None;
                        }
                        let source = m.source().clone()?;
                        Some(BindMount {
                            destination: m.destination().to_string_lossy().into_owned(),
                            source,
                            read_only: options.iter().any(|o| o == "ro"),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let linux = spec.linux().as_ref();
        let memory_limit = linux
            .and_then(|l| l.resources().as_ref())
            .and_then(|r| r.memory().as_ref())
            .and_then(|m| m.limit())
            .filter(|limit| *limit > 0)
            .map(|limit| limit as u64);
        let network = linux
            .and_then(|l| l.namespaces().as_ref())
            .and_then(|namespaces| {
                namespaces
                    .iter()
                    .find(|ns| ns.typ() == LinuxNamespaceType::Network)
            })
            .map_or(NetworkNamespace::Host, |ns| match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => NetworkNamespace::Path(path.clone()),
                _ => NetworkNamespace::New,
            });
        let cgroups_path = linux
            .and_then(|l| l.cgroups_path().as_ref())
            .map(|p| p.to_string_lossy().into_owned());
        let sandbox_namespaces = linux
            .and_then(|l| l.namespaces().as_ref())
            .map(|namespaces| sandbox_namespaces(namespaces))
            .unwrap_or_default();
        let hostname = spec.hostname().clone().filter(|h| !h.is_empty());
        ContainerSpec {
            args,
            env,
            cwd,
            root,
            root_read_only,
            mounts,
            memory_limit,
            annotations: spec.annotations().clone().unwrap_or_default(),
            network,
            cgroups_path,
            hostname,
            sandbox_namespaces,
        }
    }

    /// The pod this container belongs to, when CRI created it.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.annotations
            .get(SANDBOX_ID_ANNOTATION)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    /// Whether CRI marked this container as the pod's sandbox (pause) container.
    pub fn is_sandbox(&self) -> bool {
        self.annotations
            .get(CONTAINER_TYPE_ANNOTATION)
            .is_some_and(|t| t == "sandbox")
    }

    /// The host path of the entrypoint (`args[0]`) inside the rootfs. The path is resolved
    /// lexically below the rootfs; `..` cannot climb out of it.
    pub fn entrypoint_path(&self) -> Option<PathBuf> {
        let first = self.args.first()?;
        let relative = if first.starts_with('/') {
            PathBuf::from(first)
        } else {
            Path::new(&self.cwd).join(first)
        };
        Some(join_inside(&self.root, &relative))
    }
}

fn sandbox_namespaces(namespaces: &[oci_spec::runtime::LinuxNamespace]) -> SandboxNamespaces {
    let mut found = SandboxNamespaces::default();
    for ns in namespaces {
        let joined = ns
            .path()
            .as_ref()
            .is_some_and(|p| !p.as_os_str().is_empty());
        match ns.typ() {
            LinuxNamespaceType::Network => {}
            LinuxNamespaceType::User => found.needs_runc = true,
            _ if joined => found.needs_runc = true,
            LinuxNamespaceType::Ipc => found.new_ipc = true,
            LinuxNamespaceType::Uts => found.new_uts = true,
            LinuxNamespaceType::Pid => found.new_pid = true,
            // A mount namespace holds the pause image's rootfs, a cgroup namespace its view of
            // the cgroups: the init needs neither, and no container joins them.
            _ => {}
        }
    }
    found
}

/// Joins `guest_path` (absolute inside the container) below `root`, dropping `..` components
/// that would leave it.
pub fn join_inside(root: &Path, guest_path: &Path) -> PathBuf {
    let mut parts: Vec<&std::ffi::OsStr> = Vec::new();
    for component in guest_path.components() {
        match component {
            std::path::Component::Normal(part) => parts.push(part),
            std::path::Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_from_json(json: &str) -> Spec {
        serde_json::from_str(json).expect("test spec parses")
    }

    const SPEC: &str = r#"{
        "ociVersion": "1.1.0",
        "process": {"user": {"uid": 0, "gid": 0}, "args": ["/app.wasm", "one"], "env": ["A=1", "B=x=y", "EMPTY"], "cwd": "/work"},
        "root": {"path": "rootfs", "readonly": true},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/data", "type": "bind", "source": "/var/data", "options": ["rbind", "ro"]},
            {"destination": "/cache", "source": "/var/cache", "options": ["bind", "rw"]}
        ],
        "annotations": {"io.kubernetes.cri.sandbox-id": "pod1", "io.kubernetes.cri.container-type": "container"},
        "linux": {
            "resources": {"memory": {"limit": 67108864}},
            "cgroupsPath": "/kubepods/pod1/c1",
            "namespaces": [{"type": "network", "path": "/var/run/netns/cni-1"}, {"type": "mount"}]
        }
    }"#;

    #[test]
    fn a_sandbox_spec_names_its_new_namespaces_and_what_only_runc_makes() {
        let pod = r#"{"ociVersion": "1.1.0", "hostname": "web-1", "linux": {"namespaces": [
            {"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"},
            {"type": "network", "path": "/var/run/netns/cni-1"}]}}"#;
        let spec = ContainerSpec::from_spec(&spec_from_json(pod), Path::new("/b"));
        assert_eq!(spec.hostname.as_deref(), Some("web-1"));
        assert_eq!(
            spec.sandbox_namespaces,
            SandboxNamespaces {
                new_ipc: true,
                new_uts: true,
                new_pid: true,
                needs_runc: false
            }
        );
        let host_pid_and_users = r#"{"ociVersion": "1.1.0", "linux": {"namespaces": [
            {"type": "ipc"}, {"type": "user"}]}}"#;
        let spec = ContainerSpec::from_spec(&spec_from_json(host_pid_and_users), Path::new("/b"));
        assert!(!spec.sandbox_namespaces.new_pid);
        assert!(
            spec.sandbox_namespaces.needs_runc,
            "a user namespace is runc's"
        );
        let joins_ipc = r#"{"ociVersion": "1.1.0", "linux": {"namespaces": [
            {"type": "ipc", "path": "/proc/1/ns/ipc"}]}}"#;
        let spec = ContainerSpec::from_spec(&spec_from_json(joins_ipc), Path::new("/b"));
        assert!(spec.sandbox_namespaces.needs_runc);
    }

    #[test]
    fn reads_process_root_mounts_limits_and_pod() {
        let spec = ContainerSpec::from_spec(&spec_from_json(SPEC), Path::new("/bundle"));
        assert_eq!(spec.args, ["/app.wasm", "one"]);
        assert_eq!(
            spec.env,
            [
                ("A".to_string(), "1".to_string()),
                ("B".to_string(), "x=y".to_string()),
                ("EMPTY".to_string(), String::new())
            ]
        );
        assert_eq!(spec.cwd, "/work");
        assert_eq!(spec.root, Path::new("/bundle/rootfs"));
        assert!(spec.root_read_only);
        assert_eq!(
            spec.mounts,
            [
                BindMount {
                    destination: "/data".into(),
                    source: "/var/data".into(),
                    read_only: true
                },
                BindMount {
                    destination: "/cache".into(),
                    source: "/var/cache".into(),
                    read_only: false
                },
            ]
        );
        assert_eq!(spec.memory_limit, Some(64 << 20));
        assert_eq!(spec.sandbox_id(), Some("pod1"));
        assert!(!spec.is_sandbox());
        assert_eq!(
            spec.network,
            NetworkNamespace::Path("/var/run/netns/cni-1".into())
        );
        assert_eq!(spec.cgroups_path.as_deref(), Some("/kubepods/pod1/c1"));
    }

    #[test]
    fn entrypoint_stays_inside_the_rootfs() {
        let mut spec = ContainerSpec::from_spec(&spec_from_json(SPEC), Path::new("/bundle"));
        assert_eq!(
            spec.entrypoint_path().as_deref(),
            Some(Path::new("/bundle/rootfs/app.wasm"))
        );
        spec.args = vec!["../../../etc/passwd".into()];
        assert_eq!(
            spec.entrypoint_path().as_deref(),
            Some(Path::new("/bundle/rootfs/etc/passwd"))
        );
        spec.args = vec!["rel.wasm".into()];
        assert_eq!(
            spec.entrypoint_path().as_deref(),
            Some(Path::new("/bundle/rootfs/work/rel.wasm"))
        );
        spec.args.clear();
        assert_eq!(spec.entrypoint_path(), None);
    }

    #[test]
    fn a_spec_without_limits_or_pod_has_none() {
        let spec = ContainerSpec::from_spec(
            &spec_from_json(r#"{"ociVersion": "1.1.0", "root": {"path": "/abs/root"}}"#),
            Path::new("/bundle"),
        );
        assert_eq!(spec.memory_limit, None);
        assert_eq!(spec.sandbox_id(), None);
        assert_eq!(spec.root, Path::new("/abs/root"));
        assert_eq!(spec.cwd, "/");
        assert_eq!(spec.network, NetworkNamespace::Host);
    }

    #[test]
    fn a_network_namespace_without_a_path_is_a_new_one() {
        let spec = ContainerSpec::from_spec(
            &spec_from_json(
                r#"{"ociVersion": "1.1.0", "linux": {"namespaces": [{"type": "network"}, {"type": "pid"}]}}"#,
            ),
            Path::new("/bundle"),
        );
        assert_eq!(spec.network, NetworkNamespace::New);
    }
}
