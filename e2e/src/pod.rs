//! Pod and container configs built the way the kubelet builds them (labels, annotations, log
//! directory and paths, cgroup parent by QoS class and cgroup driver, namespace options,
//! resources), from small specs the tests fill in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;

/// The kubelet's cgroup driver; decides the form of the pod's cgroup parent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CgroupDriver {
    /// `/spore-e2e/kubepods/besteffort/pod<uid>` (the kubelet's layout below the harness root).
    #[default]
    Cgroupfs,
    /// `kubepods-besteffort-pod<uid>.slice` (needs systemd, which this machine has not).
    Systemd,
}

/// The pod's QoS class, which places its cgroup and sets the containers' OOM score.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    #[default]
    BestEffort,
}

impl QosClass {
    fn cgroup_segment(self) -> Option<&'static str> {
        match self {
            QosClass::Guaranteed => None,
            QosClass::Burstable => Some("burstable"),
            QosClass::BestEffort => Some("besteffort"),
        }
    }

    /// The OOM score the kubelet gives containers of this class (Burstable varies with the
    /// request; 500 stands for a middle one).
    pub fn oom_score_adj(self) -> i64 {
        match self {
            QosClass::Guaranteed => -997,
            QosClass::Burstable => 500,
            QosClass::BestEffort => 1000,
        }
    }
}

/// The cgroup root of the harness's pods: the kubelet's `/kubepods` tree lives below it, so that
/// a kubelet on the same machine (which removes pod cgroups it does not know from its own
/// `/kubepods`) never touches the tests' pods.
pub const HARNESS_CGROUP_ROOT: &str = "/spore-e2e";

/// The cgroup parent the kubelet sends for a pod (cgroupfs driver: below
/// [`HARNESS_CGROUP_ROOT`], as a kubelet started with `--cgroup-root=/spore-e2e` does).
pub fn cgroup_parent(driver: CgroupDriver, qos: QosClass, uid: &str) -> String {
    match driver {
        CgroupDriver::Cgroupfs => match qos.cgroup_segment() {
            Some(segment) => format!("{HARNESS_CGROUP_ROOT}/kubepods/{segment}/pod{uid}"),
            None => format!("{HARNESS_CGROUP_ROOT}/kubepods/pod{uid}"),
        },
        CgroupDriver::Systemd => {
            let uid = uid.replace('-', "_");
            match qos.cgroup_segment() {
                Some(segment) => format!("kubepods-{segment}-pod{uid}.slice"),
                None => format!("kubepods-pod{uid}.slice"),
            }
        }
    }
}

/// A random version-4 UUID, as pod uids are.
pub fn new_uid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            format!(
                "{:08x}-0000-4000-8000-{:012x}",
                std::process::id(),
                nanos & 0xffff_ffff_ffff
            )
        })
}

/// What a test says about a pod.
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub handler: String,
    pub driver: CgroupDriver,
    pub qos: QosClass,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
    pub port_mappings: Vec<cri::PortMapping>,
    /// Pod-level memory limit (the sum of the containers' limits, as the kubelet sends it).
    pub memory_limit: Option<i64>,
    /// The pod's DNS config, as the kubelet sends it (containerd writes the pod's resolv.conf
    /// from it): the cluster DNS, the search list of the pod's namespace, `ndots:5`.
    pub dns: cri::DnsConfig,
    /// `shareProcessNamespace: true`: the containers share the sandbox's PID namespace.
    pub share_process_namespace: bool,
}

impl PodSpec {
    pub fn new(name: &str, namespace: &str, handler: &str) -> Self {
        PodSpec {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            uid: new_uid(),
            attempt: 0,
            handler: handler.to_owned(),
            driver: CgroupDriver::Cgroupfs,
            qos: QosClass::BestEffort,
            labels: HashMap::new(),
            annotations: HashMap::new(),
            port_mappings: Vec::new(),
            memory_limit: None,
            dns: cri::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec![
                    format!("{namespace}.svc.cluster.local"),
                    "svc.cluster.local".into(),
                    "cluster.local".into(),
                ],
                options: vec!["ndots:5".into()],
            },
            share_process_namespace: false,
        }
    }

    /// The PID namespace mode the kubelet sends for the sandbox and every container.
    pub fn pid_mode(&self) -> i32 {
        if self.share_process_namespace {
            cri::NamespaceMode::Pod as i32
        } else {
            cri::NamespaceMode::Container as i32
        }
    }

    pub fn cgroup_parent(&self) -> String {
        cgroup_parent(self.driver, self.qos, &self.uid)
    }

    /// `<root>/<namespace>_<name>_<uid>`, the kubelet's `/var/log/pods/...` layout.
    pub fn log_directory(&self, log_root: &Path) -> PathBuf {
        log_root.join(format!("{}_{}_{}", self.namespace, self.name, self.uid))
    }

    /// The PodSandboxConfig the kubelet would send.
    pub fn sandbox_config(&self, log_root: &Path) -> cri::PodSandboxConfig {
        let mut labels = self.labels.clone();
        labels.insert("io.kubernetes.pod.name".into(), self.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), self.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), self.uid.clone());
        let mut annotations = self.annotations.clone();
        annotations.insert("kubernetes.io/config.source".into(), "api".into());
        annotations.insert(
            "kubernetes.io/config.seen".into(),
            "2026-11-22T00:00:00.000000000Z".into(),
        );
        cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: self.attempt,
            }),
            hostname: self.name.clone(),
            log_directory: self.log_directory(log_root).to_string_lossy().into_owned(),
            dns_config: Some(self.dns.clone()),
            port_mappings: self.port_mappings.clone(),
            labels,
            annotations,
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: self.cgroup_parent(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: self.pid_mode(),
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
                sysctls: HashMap::new(),
                overhead: Some(cri::LinuxContainerResources::default()),
                resources: Some(cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    memory_limit_in_bytes: self.memory_limit.unwrap_or(0),
                    ..Default::default()
                }),
            }),
            windows: None,
        }
    }
}

/// What a test says about a container.
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    /// The restart count; the log goes to `<name>/<attempt>.log`.
    pub attempt: u32,
    pub mounts: Vec<cri::Mount>,
    pub memory_limit: Option<i64>,
    /// CPU limit in millicores (quota over a 100 ms period).
    pub cpu_millis: Option<i64>,
    pub annotations: HashMap<String, String>,
    pub labels: HashMap<String, String>,
    pub stdin: bool,
    pub tty: bool,
}

impl ContainerSpec {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerSpec {
            name: name.to_owned(),
            image: image.to_owned(),
            ..Default::default()
        }
    }

    pub fn command<S: Into<String>>(mut self, command: impl IntoIterator<Item = S>) -> Self {
        self.command = command.into_iter().map(Into::into).collect();
        self
    }

    pub fn args<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// A bind mount, as the kubelet sends one for a volume or its own files (`/etc/hosts`).
    pub fn mount(mut self, container_path: &str, host_path: &Path, readonly: bool) -> Self {
        self.mounts.push(cri::Mount {
            container_path: container_path.to_owned(),
            host_path: host_path.to_string_lossy().into_owned(),
            readonly,
            ..Default::default()
        });
        self
    }

    pub fn memory_limit(mut self, bytes: i64) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// `<name>/<attempt>.log`, relative to the pod's log directory (what the kubelet sends).
    pub fn relative_log_path(&self) -> String {
        format!("{}/{}.log", self.name, self.attempt)
    }

    /// The ContainerConfig the kubelet would send for this container in `pod`.
    pub fn container_config(&self, pod: &PodSpec) -> cri::ContainerConfig {
        let mut labels = self.labels.clone();
        labels.insert("io.kubernetes.container.name".into(), self.name.clone());
        labels.insert("io.kubernetes.pod.name".into(), pod.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), pod.uid.clone());
        let mut annotations = self.annotations.clone();
        annotations.insert(
            "io.kubernetes.container.restartCount".into(),
            self.attempt.to_string(),
        );
        annotations.insert(
            "io.kubernetes.container.terminationMessagePath".into(),
            "/dev/termination-log".into(),
        );
        annotations.insert(
            "io.kubernetes.container.terminationMessagePolicy".into(),
            "File".into(),
        );
        annotations.insert(
            "io.kubernetes.pod.terminationGracePeriod".into(),
            "30".into(),
        );
        let (cpu_quota, cpu_shares) = match self.cpu_millis {
            Some(millis) => (millis * 100, (millis * 1024 / 1000).max(2)),
            None => (0, 2),
        };
        cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata {
                name: self.name.clone(),
                attempt: self.attempt,
            }),
            image: Some(cri::ImageSpec {
                image: self.image.clone(),
                user_specified_image: self.image.clone(),
                ..Default::default()
            }),
            command: self.command.clone(),
            args: self.args.clone(),
            working_dir: self.working_dir.clone().unwrap_or_default(),
            envs: self
                .env
                .iter()
                .map(|(key, value)| cri::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            mounts: self.mounts.clone(),
            labels,
            annotations,
            log_path: self.relative_log_path(),
            stdin: self.stdin,
            stdin_once: self.stdin,
            tty: self.tty,
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_quota,
                    cpu_shares,
                    memory_limit_in_bytes: self.memory_limit.unwrap_or(0),
                    oom_score_adj: pod.qos.oom_score_adj(),
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(cri::NamespaceOption {
                        network: cri::NamespaceMode::Pod as i32,
                        pid: pod.pid_mode(),
                        ipc: cri::NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                    seccomp: Some(cri::SecurityProfile {
                        profile_type: cri::security_profile::ProfileType::Unconfined as i32,
                        localhost_ref: String::new(),
                    }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_parents_follow_the_kubelet_below_the_harness_root() {
        let uid = "1234-abcd";
        assert_eq!(
            cgroup_parent(CgroupDriver::Cgroupfs, QosClass::BestEffort, uid),
            "/spore-e2e/kubepods/besteffort/pod1234-abcd"
        );
        assert_eq!(
            cgroup_parent(CgroupDriver::Cgroupfs, QosClass::Guaranteed, uid),
            "/spore-e2e/kubepods/pod1234-abcd"
        );
        assert_eq!(
            cgroup_parent(CgroupDriver::Systemd, QosClass::Burstable, uid),
            "kubepods-burstable-pod1234_abcd.slice"
        );
        assert_eq!(
            cgroup_parent(CgroupDriver::Systemd, QosClass::Guaranteed, uid),
            "kubepods-pod1234_abcd.slice"
        );
    }

    #[test]
    fn uids_are_unique_uuids() {
        let (a, b) = (new_uid(), new_uid());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }

    #[test]
    fn sandbox_config_carries_what_the_kubelet_sends() {
        let pod = PodSpec::new("web", "default", "spore");
        let config = pod.sandbox_config(Path::new("/var/log/pods"));
        let metadata = config.metadata.as_ref().expect("metadata");
        assert_eq!(
            (metadata.name.as_str(), metadata.namespace.as_str()),
            ("web", "default")
        );
        assert_eq!(
            config.log_directory,
            format!("/var/log/pods/default_web_{}", pod.uid)
        );
        assert_eq!(config.labels["io.kubernetes.pod.uid"], pod.uid);
        let linux = config.linux.as_ref().expect("linux");
        assert_eq!(
            linux.cgroup_parent,
            format!("/spore-e2e/kubepods/besteffort/pod{}", pod.uid)
        );
        let ns = linux
            .security_context
            .as_ref()
            .and_then(|s| s.namespace_options.as_ref())
            .expect("namespaces");
        assert_eq!(ns.network, cri::NamespaceMode::Pod as i32);
        assert_eq!(ns.pid, cri::NamespaceMode::Container as i32);
    }

    #[test]
    fn container_config_logs_under_name_and_attempt() {
        let pod = PodSpec::new("web", "default", "runc");
        let spec = ContainerSpec::new("app", "127.0.0.1:5000/busybox:1")
            .command(["echo", "hello"])
            .attempt(2);
        let config = spec.container_config(&pod);
        assert_eq!(config.log_path, "app/2.log");
        assert_eq!(config.metadata.as_ref().map(|m| m.attempt), Some(2));
        assert_eq!(config.command, ["echo", "hello"]);
        assert_eq!(config.labels["io.kubernetes.container.name"], "app");
        assert_eq!(
            config.annotations["io.kubernetes.container.restartCount"],
            "2"
        );
        let resources = config
            .linux
            .as_ref()
            .and_then(|l| l.resources.as_ref())
            .expect("resources");
        assert_eq!(resources.oom_score_adj, 1000);
        assert_eq!(resources.cpu_shares, 2);
    }
}
