//! Where each Kubernetes distribution keeps containerd's config, socket and service.
//! All paths are as seen on the host (`/etc/...`), not below the mounted host root.

use std::path::{Path, PathBuf};

use crate::host::HostRoot;

/// The `--preset` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Detect the distribution from the files on the host.
    Auto,
    /// containerd installed on its own: `/etc/containerd/config.toml`.
    Containerd,
    /// k3s: `config.toml.tmpl` (or `config-v3.toml.tmpl`) beside the config k3s renders.
    K3s,
    /// rke2: like k3s, under `/var/lib/rancher/rke2`.
    Rke2,
    /// MicroK8s: the snap's `args/containerd-template.toml`.
    Microk8s,
    /// k0s: a drop-in in `/etc/k0s/containerd.d/`, which k0s imports.
    K0s,
}

/// How the file Spore edits relates to what containerd reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EditKind {
    /// A containerd config file; its `imports` are followed to the file that holds the CRI
    /// plugin section.
    Config { file: PathBuf },
    /// A Go template the platform renders into `rendered` when it starts containerd (k3s, rke2).
    Template { dir: PathBuf, rendered: PathBuf },
    /// A drop-in file that the platform's config imports (k0s); `main` tells the layout.
    DropIn { file: PathBuf, main: PathBuf },
}

/// A distribution's containerd, resolved from a preset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub preset: Preset,
    pub edit: EditKind,
    /// containerd's socket.
    pub socket: PathBuf,
    /// systemd units that may run containerd, most likely first; the first that exists is used.
    pub services: Vec<&'static str>,
}

const K3S_DIR: &str = "/var/lib/rancher/k3s/agent/etc/containerd";
const RKE2_DIR: &str = "/var/lib/rancher/rke2/agent/etc/containerd";
const MICROK8S_TEMPLATE: &str = "/var/snap/microk8s/current/args/containerd-template.toml";
const K0S_MAIN: &str = "/etc/k0s/containerd.toml";
const K0S_DROP_IN: &str = "/etc/k0s/containerd.d/spore.toml";
const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";

/// The platform for `preset`; `Auto` looks at which distribution's files exist on the host.
pub fn platform(preset: Preset, host: &HostRoot) -> Platform {
    let preset = match preset {
        Preset::Auto => detect(host),
        chosen => chosen,
    };
    let k3s_like = |dir: &str| EditKind::Template {
        dir: PathBuf::from(dir),
        rendered: Path::new(dir).join("config.toml"),
    };
    match preset {
        Preset::K3s => Platform {
            preset,
            edit: k3s_like(K3S_DIR),
            socket: "/run/k3s/containerd/containerd.sock".into(),
            services: vec!["k3s", "k3s-agent"],
        },
        Preset::Rke2 => Platform {
            preset,
            edit: k3s_like(RKE2_DIR),
            socket: "/run/k3s/containerd/containerd.sock".into(),
            services: vec!["rke2-server", "rke2-agent"],
        },
        Preset::Microk8s => Platform {
            preset,
            edit: EditKind::Config {
                file: MICROK8S_TEMPLATE.into(),
            },
            socket: "/var/snap/microk8s/common/run/containerd.sock".into(),
            services: vec!["snap.microk8s.daemon-containerd"],
        },
        Preset::K0s => Platform {
            preset,
            edit: EditKind::DropIn {
                file: K0S_DROP_IN.into(),
                main: K0S_MAIN.into(),
            },
            socket: "/run/k0s/containerd.sock".into(),
            services: vec!["k0sworker", "k0scontroller"],
        },
        Preset::Containerd | Preset::Auto => Platform {
            preset: Preset::Containerd,
            edit: EditKind::Config {
                file: CONTAINERD_CONFIG.into(),
            },
            socket: "/run/containerd/containerd.sock".into(),
            services: vec!["containerd"],
        },
    }
}

/// Which distribution's containerd files exist on the host.
pub fn detect(host: &HostRoot) -> Preset {
    let exists = |p: &str| host.path(Path::new(p)).exists();
    if exists(&format!("{K3S_DIR}/config.toml")) {
        Preset::K3s
    } else if exists(&format!("{RKE2_DIR}/config.toml")) {
        Preset::Rke2
    } else if exists(MICROK8S_TEMPLATE) {
        Preset::Microk8s
    } else if exists(K0S_MAIN) {
        Preset::K0s
    } else {
        Preset::Containerd
    }
}

/// The first of `services` whose systemd unit file exists on the host (else the first one).
pub fn service<'a>(services: &[&'a str], host: &HostRoot) -> Option<&'a str> {
    const UNIT_DIRS: [&str; 4] = [
        "/etc/systemd/system",
        "/run/systemd/system",
        "/usr/lib/systemd/system",
        "/lib/systemd/system",
    ];
    services
        .iter()
        .find(|name| {
            UNIT_DIRS.iter().any(|dir| {
                host.path(&Path::new(dir).join(format!("{name}.service")))
                    .exists()
            })
        })
        .or(services.first())
        .copied()
}

/// k3s and rke2 read `config-v3.toml.tmpl` for containerd 2.x configs, `config.toml.tmpl` else.
pub fn template_name(rendered_version: i64) -> &'static str {
    if rendered_version >= 3 {
        "config-v3.toml.tmpl"
    } else {
        "config.toml.tmpl"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_with(files: &[&str]) -> (tempfile::TempDir, HostRoot) {
        let dir = tempfile::tempdir().expect("tempdir");
        for f in files {
            let p = dir.path().join(f.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(&p, "").expect("write");
        }
        let host = HostRoot::new(dir.path());
        (dir, host)
    }

    #[test]
    fn auto_detects_each_distribution() {
        let cases = [
            (
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                Preset::K3s,
            ),
            (
                "/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
                Preset::Rke2,
            ),
            (MICROK8S_TEMPLATE, Preset::Microk8s),
            (K0S_MAIN, Preset::K0s),
            ("/etc/containerd/config.toml", Preset::Containerd),
        ];
        for (file, want) in cases {
            let (_dir, host) = host_with(&[file]);
            assert_eq!(detect(&host), want, "{file}");
            assert_eq!(platform(Preset::Auto, &host).preset, want);
        }
        let (_dir, host) = host_with(&[]);
        assert_eq!(detect(&host), Preset::Containerd);
    }

    #[test]
    fn k3s_edits_a_template_and_restarts_the_agent_unit_that_exists() {
        let (_dir, host) = host_with(&["/etc/systemd/system/k3s-agent.service"]);
        let p = platform(Preset::K3s, &host);
        assert_eq!(
            p.edit,
            EditKind::Template {
                dir: K3S_DIR.into(),
                rendered: format!("{K3S_DIR}/config.toml").into()
            }
        );
        assert_eq!(service(&p.services, &host), Some("k3s-agent"));
        let (_dir, bare) = host_with(&[]);
        assert_eq!(service(&p.services, &bare), Some("k3s"));
    }

    #[test]
    fn template_names_follow_the_config_version() {
        assert_eq!(template_name(2), "config.toml.tmpl");
        assert_eq!(template_name(3), "config-v3.toml.tmpl");
    }

    #[test]
    fn k0s_uses_a_drop_in() {
        let (_dir, host) = host_with(&[]);
        let p = platform(Preset::K0s, &host);
        assert!(matches!(p.edit, EditKind::DropIn { .. }));
        assert_eq!(p.socket, PathBuf::from("/run/k0s/containerd.sock"));
    }
}
