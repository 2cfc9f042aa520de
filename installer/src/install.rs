//! One installer pass (and the uninstall): shim, config, restart, label, in that order.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::containerd_config::{self, Layout, RUNTIME_NAME, RuntimeEntry, Unversioned};
use crate::host::HostRoot;
use crate::presets::{self, EditKind, Platform};
use crate::restart::{self, Expect, RestartStrategy, Restarter};
use crate::shim_copy::{self, SHIM_BINARY};
use crate::{Error, NodeInstallArgs, fs_atomic, go_template, node_label, state};

/// What k3s/rke2 get as a new template: their own base config, then Spore's table.
const BASE_TEMPLATE: &str = "{{ template \"base\" . }}\n";

/// Everything a pass needs, resolved from the arguments once.
pub struct Installer {
    host: HostRoot,
    platform: Platform,
    shim_source: PathBuf,
    shim_sha256: Option<String>,
    install_dir: PathBuf,
    config_override: Option<PathBuf>,
    restarter: Restarter,
    socket: PathBuf,
    restart_timeout: Duration,
    state_dir: PathBuf,
    node: Option<String>,
    client: Option<kube::Client>,
    started: std::time::SystemTime,
}

/// Which file to edit and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditPlan {
    /// Host path of the file.
    pub file: PathBuf,
    pub unversioned: Unversioned,
    /// A Go template (k3s, rke2): action lines are masked during the edit.
    pub template: bool,
    /// The text to start from when the file does not exist.
    pub when_absent: String,
    /// `SystemdCgroup` of the node's default runtime.
    pub systemd_cgroup: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub shim_changed: bool,
    pub config_changed: bool,
    pub restarted: bool,
    pub labelled: bool,
}

impl Installer {
    pub fn new(args: &NodeInstallArgs, client: Option<kube::Client>) -> Result<Installer, Error> {
        let host = HostRoot::new(&args.host_root);
        let platform = presets::platform(args.preset, &host);
        if !args.install_dir.is_absolute() {
            return Err(Error::Argument(format!(
                "--install-dir must be an absolute host path, got {}",
                args.install_dir.display()
            )));
        }
        if let Some(digest) = &args.shim_sha256
            && (digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()))
        {
            return Err(Error::Argument(format!(
                "--shim-sha256 must be 64 hex digits, got {digest:?}"
            )));
        }
        let host_socket = args
            .containerd_socket
            .clone()
            .unwrap_or_else(|| platform.socket.clone());
        let restarter = match (&args.restart_command, args.containerd_restart) {
            (Some(text), _) => match restart::parse_command(text) {
                Some(command) if command.is_empty() => Restarter::Nothing,
                Some(command) => Restarter::Command(command),
                None => {
                    return Err(Error::Argument(format!(
                        "--restart-command has unbalanced quotes: {text:?}"
                    )));
                }
            },
            (None, RestartStrategy::Systemd) => {
                let service = presets::service(&platform.services, &host).unwrap_or("containerd");
                Restarter::Systemd {
                    unit: service.to_owned(),
                }
            }
            // containerd bound its socket at the host path; under a scratch host root (tests,
            // a chroot) at the path inside it.
            (None, RestartStrategy::Signal) => Restarter::Signal {
                sockets: vec![host_socket.clone(), host.path(&host_socket)],
            },
            (None, RestartStrategy::None) => Restarter::Nothing,
        };
        Ok(Installer {
            socket: host.path(&host_socket),
            state_dir: host.path(&args.state_dir),
            host,
            platform,
            shim_source: args.shim_source.clone(),
            shim_sha256: args.shim_sha256.clone(),
            install_dir: args.install_dir.clone(),
            config_override: args.containerd_config.clone(),
            restarter,
            restart_timeout: Duration::from_secs(args.restart_timeout_seconds),
            node: args.node_name.clone(),
            client,
            started: std::time::SystemTime::now(),
        })
    }

    pub fn platform(&self) -> &Platform {
        &self.platform
    }

    fn shim_host_path(&self) -> PathBuf {
        self.install_dir.join(SHIM_BINARY)
    }

    fn read_text(&self, host_path: &Path) -> Result<Option<String>, Error> {
        let path = self.host.path(host_path);
        let bytes = fs_atomic::read_optional(&path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        bytes
            .map(|b| String::from_utf8(b).map_err(|_| Error::NotUtf8 { path: path.clone() }))
            .transpose()
    }

    fn parse(&self, host_path: &Path, text: &str) -> Result<toml_edit::DocumentMut, Error> {
        containerd_config::parse(text).map_err(|source| Error::Config {
            path: self.host.path(host_path),
            source,
        })
    }

    fn layout_of(&self, host_path: &Path, doc: &toml_edit::DocumentMut) -> Result<Layout, Error> {
        containerd_config::detect_layout(doc, Unversioned::LikeContainerd)
            .map(|(layout, _)| layout)
            .map_err(|source| Error::Config {
                path: self.host.path(host_path),
                source,
            })
    }

    /// Decides which file to edit, following `imports` for plain containerd configs.
    pub fn plan(&self) -> Result<EditPlan, Error> {
        match &self.platform.edit {
            EditKind::Config { file } => {
                let main = self.config_override.clone().unwrap_or_else(|| file.clone());
                self.plan_config(&main)
            }
            EditKind::Template { dir, rendered } => {
                let text = self
                    .read_text(rendered)?
                    .ok_or_else(|| Error::NotRendered {
                        path: self.host.path(rendered),
                    })?;
                let doc = self.parse(rendered, &text)?;
                let layout = self.layout_of(rendered, &doc)?;
                let file = self
                    .config_override
                    .clone()
                    .unwrap_or_else(|| dir.join(presets::template_name(layout.version())));
                Ok(EditPlan {
                    file,
                    unversioned: Unversioned::Fragment(layout),
                    template: true,
                    when_absent: BASE_TEMPLATE.to_owned(),
                    systemd_cgroup: containerd_config::default_runtime_systemd_cgroup(&doc, layout)
                        .unwrap_or(false),
                })
            }
            EditKind::DropIn { file, main } => {
                let (layout, systemd) = match self.read_text(main)? {
                    Some(text) => {
                        let doc = self.parse(main, &text)?;
                        let layout = self.layout_of(main, &doc)?;
                        (
                            layout,
                            containerd_config::default_runtime_systemd_cgroup(&doc, layout),
                        )
                    }
                    None => (Layout::V2, None),
                };
                Ok(EditPlan {
                    file: self.config_override.clone().unwrap_or_else(|| file.clone()),
                    unversioned: Unversioned::LikeContainerd,
                    template: false,
                    when_absent: format!("version = {}\n", layout.version()),
                    systemd_cgroup: systemd.unwrap_or(false),
                })
            }
        }
    }

    /// containerd merges `imports` after the main file and (1.x) replaces a whole plugin section
    /// with the imported one, so the runtime goes into the last file that defines the CRI
    /// plugin section; when none does, into the main file.
    fn plan_config(&self, main: &Path) -> Result<EditPlan, Error> {
        let mut plan = EditPlan {
            file: main.to_owned(),
            unversioned: Unversioned::LikeContainerd,
            template: false,
            when_absent: String::new(),
            systemd_cgroup: false,
        };
        let Some(text) = self.read_text(main)? else {
            return Ok(plan);
        };
        let doc = self.parse(main, &text)?;
        let layout = self.layout_of(main, &doc)?;
        let mut systemd = containerd_config::default_runtime_systemd_cgroup(&doc, layout);
        for imported in self.imported_files(main, &doc)? {
            let Some(text) = self.read_text(&imported)? else {
                continue;
            };
            let idoc = self.parse(&imported, &text)?;
            let ilayout = self.layout_of(&imported, &idoc)?;
            if containerd_config::defines_cri_plugin(&idoc, ilayout) {
                plan.file = imported.clone();
                systemd =
                    containerd_config::default_runtime_systemd_cgroup(&idoc, ilayout).or(systemd);
            }
        }
        plan.systemd_cgroup = systemd.unwrap_or(false);
        Ok(plan)
    }

    /// The files `imports` names (globs expanded, sorted), as host paths, in containerd's order.
    fn imported_files(
        &self,
        main: &Path,
        doc: &toml_edit::DocumentMut,
    ) -> Result<Vec<PathBuf>, Error> {
        let Some(imports) = doc.get("imports").and_then(toml_edit::Item::as_array) else {
            return Ok(Vec::new());
        };
        let base = main.parent().unwrap_or(Path::new("/"));
        let mut files = Vec::new();
        for pattern in imports.iter().filter_map(|v| v.as_str()) {
            let host_pattern = if Path::new(pattern).is_absolute() {
                PathBuf::from(pattern)
            } else {
                base.join(pattern)
            };
            let in_container = self.host.path(&host_pattern);
            let bad_pattern = |detail: String| Error::Import {
                pattern: pattern.to_owned(),
                detail,
            };
            let pattern_text = in_container
                .to_str()
                .ok_or_else(|| bad_pattern("not UTF-8".into()))?;
            let mut matched: Vec<PathBuf> = glob::glob(pattern_text)
                .map_err(|e| bad_pattern(e.to_string()))?
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            matched.sort();
            for path in matched {
                if let Ok(rest) = path.strip_prefix(self.host.root()) {
                    files.push(Path::new("/").join(rest));
                }
            }
        }
        Ok(files)
    }

    fn runtime_entry(&self, plan: &EditPlan) -> RuntimeEntry {
        RuntimeEntry {
            runtime_path: self.shim_host_path().to_string_lossy().into_owned(),
            systemd_cgroup: plan.systemd_cgroup,
        }
    }

    /// Applies `edit` to the file's text, masking Go template lines around it.
    fn edit_text(
        &self,
        plan: &EditPlan,
        text: &str,
        edit: impl FnOnce(&str) -> Result<containerd_config::Edited, containerd_config::ConfigError>,
    ) -> Result<containerd_config::Edited, Error> {
        let config_err = |source| Error::Config {
            path: self.host.path(&plan.file),
            source,
        };
        if !plan.template {
            return edit(text).map_err(config_err);
        }
        let masked = go_template::mask(text);
        let edited = edit(&masked.text).map_err(config_err)?;
        let unmasked =
            go_template::unmask(&edited.text, &masked).map_err(|source| Error::Template {
                path: self.host.path(&plan.file),
                source,
            })?;
        Ok(containerd_config::Edited {
            changed: unmasked != text,
            text: unmasked,
        })
    }

    fn has_runtime(&self, plan: &EditPlan, text: &str) -> Result<bool, Error> {
        let masked;
        let text = if plan.template {
            masked = go_template::mask(text);
            masked.text.as_str()
        } else {
            text
        };
        let doc = self.parse(&plan.file, text)?;
        let (layout, _) =
            containerd_config::detect_layout(&doc, plan.unversioned).map_err(|source| {
                Error::Config {
                    path: self.host.path(&plan.file),
                    source,
                }
            })?;
        Ok(containerd_config::has_runtime(&doc, layout))
    }

    fn write_or_remove(&self, host_path: &Path, text: Option<&str>) -> Result<(), Error> {
        let path = self.host.path(host_path);
        let result = match text {
            Some(text) => fs_atomic::replace(&path, text.as_bytes(), 0o644),
            None => fs_atomic::remove_optional(&path).map(|_| ()),
        };
        result.map_err(|source| Error::Write { path, source })
    }

    /// One install pass: copy the shim, patch the config, restart containerd if the config
    /// changed (or containerd runs without the runtime), label the node.
    pub async fn install_pass(&self) -> Result<PassReport, Error> {
        let mut report = PassReport::default();
        if state::uninstalled_since(&self.state_dir, self.started)? {
            tracing::info!(
                "Spore was uninstalled from this node after this installer started; staying idle"
            );
            return Ok(report);
        }
        let shim = shim_copy::install(
            &self.shim_source,
            &self.host.path(&self.shim_host_path()),
            self.shim_sha256.as_deref(),
        )?;
        report.shim_changed = shim.changed;
        if shim.changed {
            tracing::info!(path = %self.shim_host_path().display(), sha256 = %shim.sha256, "installed the shim");
        }

        let plan = self.plan()?;
        let current = self.read_text(&plan.file)?;
        let base = current.clone().unwrap_or_else(|| plan.when_absent.clone());
        let entry = self.runtime_entry(&plan);
        let edited = self.edit_text(&plan, &base, |text| {
            containerd_config::ensure_runtime(text, &entry, plan.unversioned)
        })?;
        let config_changed = edited.changed || current.is_none();

        if config_changed {
            self.record_backup(&plan, current.as_deref(), &edited.text)?;
            self.write_or_remove(&plan.file, Some(&edited.text))?;
            tracing::info!(file = %plan.file.display(), "added the `{RUNTIME_NAME}` runtime to containerd's config");
            report.config_changed = true;
            self.restart_or_restore(&plan, current.as_deref()).await?;
            report.restarted = self.restarter.restarts();
        } else if self.loaded_without_runtime().await {
            tracing::warn!(
                "containerd runs without the `{RUNTIME_NAME}` runtime its config has; restarting it"
            );
            self.restart_or_restore(&plan, Some(&edited.text)).await?;
            report.restarted = self.restarter.restarts();
        }

        if let (Some(node), Some(client)) = (&self.node, &self.client) {
            node_label::label_ready(client.clone(), node)
                .await
                .map_err(|source| Error::Label {
                    node: node.clone(),
                    source,
                })?;
            report.labelled = true;
        }
        Ok(report)
    }

    /// Keeps the newest text without Spore's runtime as the backup that uninstall restores.
    fn record_backup(
        &self,
        plan: &EditPlan,
        current: Option<&str>,
        written: &str,
    ) -> Result<(), Error> {
        let previous = state::load(&self.state_dir)?.filter(|r| r.config_file == plan.file);
        let original = match current {
            None => None,
            Some(text) if !self.has_runtime(plan, text)? => Some(text.to_owned()),
            Some(text) => match previous {
                Some(record) => record.original,
                None => Some(
                    self.edit_text(plan, text, containerd_config::remove_runtime)?
                        .text,
                ),
            },
        };
        state::save(
            &self.state_dir,
            &state::Record {
                config_file: plan.file.clone(),
                original,
                written_sha256: shim_copy::sha256_hex(written.as_bytes()),
            },
        )?;
        Ok(())
    }

    /// Whether containerd answers right now without the runtime (e.g. a pass died between
    /// writing the config and restarting). Not answering is not a reason to restart it.
    async fn loaded_without_runtime(&self) -> bool {
        match crate::cri_probe::status(&self.socket, Duration::from_secs(5)).await {
            Ok(status) => !status.has_runtime(RUNTIME_NAME),
            Err(err) => {
                tracing::warn!(error = %err, "containerd's CRI does not answer; not restarting it");
                false
            }
        }
    }

    async fn restart_and_wait(&self, expect: Expect) -> Result<(), restart::RestartError> {
        self.restarter.restart(self.restart_timeout).await?;
        restart::wait_for(&self.socket, expect, self.restart_timeout).await?;
        Ok(())
    }

    /// Restarts containerd and waits for the runtime; on failure puts `previous` back (absent
    /// when `None`), restarts again and reports both.
    async fn restart_or_restore(
        &self,
        plan: &EditPlan,
        previous: Option<&str>,
    ) -> Result<(), Error> {
        let Err(source) = self
            .restart_and_wait(Expect::RuntimeLoaded(RUNTIME_NAME))
            .await
        else {
            return Ok(());
        };
        tracing::error!(error = %source, "containerd did not come back with the runtime; restoring the previous config");
        self.write_or_remove(&plan.file, previous)?;
        match self.restart_and_wait(Expect::Answering).await {
            Ok(()) => Err(Error::RestartRestored {
                file: plan.file.clone(),
                source: Box::new(source),
            }),
            Err(again) => Err(Error::RestartNotRestored {
                file: plan.file.clone(),
                source: Box::new(source),
                again: Box::new(again),
            }),
        }
    }

    /// Removes the label, the runtime (restoring the recorded original when the file still has
    /// what Spore wrote) and the shim.
    pub async fn uninstall(&self) -> Result<PassReport, Error> {
        let mut report = PassReport::default();
        if let (Some(node), Some(client)) = (&self.node, &self.client) {
            node_label::unlabel(client.clone(), node)
                .await
                .map_err(|source| Error::Label {
                    node: node.clone(),
                    source,
                })?;
            report.labelled = true;
        }
        let record = state::load(&self.state_dir)?;
        let plan = match self.plan() {
            Ok(plan) => plan,
            // The platform's own files may be gone already; the record still says what to undo.
            Err(err) if record.is_some() => {
                tracing::warn!(error = %err, "cannot read the platform's config; using the install record");
                EditPlan {
                    file: PathBuf::new(),
                    unversioned: Unversioned::LikeContainerd,
                    template: false,
                    when_absent: String::new(),
                    systemd_cgroup: false,
                }
            }
            Err(err) => return Err(err),
        };
        let plan = match &record {
            Some(r) if r.config_file != plan.file => EditPlan {
                file: r.config_file.clone(),
                template: r.config_file.extension().is_some_and(|e| e == "tmpl"),
                ..plan
            },
            _ => plan,
        };
        if let Some(current) = self.read_text(&plan.file)? {
            let restored = match &record {
                Some(r) if r.written_sha256 == shim_copy::sha256_hex(current.as_bytes()) => {
                    Some(r.original.clone())
                }
                _ => {
                    let edited =
                        self.edit_text(&plan, &current, containerd_config::remove_runtime)?;
                    edited.changed.then_some(Some(edited.text))
                }
            };
            if let Some(text) = restored {
                self.write_or_remove(&plan.file, text.as_deref())?;
                tracing::info!(file = %plan.file.display(), "removed the `{RUNTIME_NAME}` runtime from containerd's config");
                report.config_changed = true;
                self.restart_and_wait(Expect::RuntimeGone(RUNTIME_NAME))
                    .await
                    .map_err(|source| Error::RestartUninstall {
                        file: plan.file.clone(),
                        source: Box::new(source),
                    })?;
                report.restarted = self.restarter.restarts();
            }
        }
        report.shim_changed = shim_copy::uninstall(&self.host.path(&self.shim_host_path()))?;
        state::clear(&self.state_dir)?;
        state::mark_uninstalled(&self.state_dir)?;
        Ok(report)
    }
}
