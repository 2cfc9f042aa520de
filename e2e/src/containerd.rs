//! A real containerd, private to one test: its own root, state dir, socket, config file, CNI
//! network and runc root, all inside a temporary directory. Dropping it stops containerd, kills
//! the shims and containers it left, unmounts everything under its directories and removes them.

use std::fmt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cgroup::{self, TrackedPodCgroups};
use crate::cleanup;
use crate::cni::{CNI_BIN_DIR, CniError, CniNetwork};
use crate::config;
use crate::tools::ContainerdVersion;

/// The containerd namespace the CRI plugin uses; every CRI pod and image lives here.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// The name under which the local pause image is imported and configured as sandbox image.
pub const PAUSE_IMAGE: &str = "localhost/spore/pause:3.10";

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("containerd is not unpacked at {path} (run `{setup}` in the repository root)")]
    NotInstalled { path: PathBuf, setup: &'static str },
    #[error("could not prepare containerd's directory {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error("could not start {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("containerd exited during startup ({status}); its log:\n{log}")]
    Exited { status: ExitStatus, log: String },
    #[error("containerd did not become ready within {secs} s ({what}); its log:\n{log}")]
    NotReady {
        secs: u64,
        what: String,
        log: String,
    },
    #[error("could not import the pause image: {0}")]
    PauseImage(Box<crate::image::ImageError>),
    #[error("`ctr {args}` failed ({status}): {stderr}")]
    Ctr {
        args: String,
        status: ExitStatus,
        stderr: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ContainerdError + '_ {
    move |source| ContainerdError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// How to start containerd.
#[derive(Clone, Debug)]
pub struct ContainerdOptions {
    /// Which containerd to run (2.x by default).
    pub version: ContainerdVersion,
    /// Prepended to containerd's `PATH`: where `containerd-shim-spore-v1` lives (e.g.
    /// `target/debug`). containerd finds runtime shims on its `PATH`.
    pub shim_dir: Option<PathBuf>,
    /// `SystemdCgroup` for the `runc` and `spore` runtime handlers.
    pub systemd_cgroup: bool,
    /// Extra entries of the `spore` handler's options table, as `(key, raw TOML value)`, e.g.
    /// `("LogLevel".into(), "\"debug\"".into())`.
    pub spore_options: Vec<(String, String)>,
    /// Other CRI runtime handlers, as `(handler name, runtime_type)`; their shims must be on
    /// containerd's `PATH` (e.g. runwasi's `containerd-shim-wasmtime-v1` for the HTTP bench).
    pub extra_runtimes: Vec<(String, String)>,
    /// Registries (`host:port`) containerd may reach over plain HTTP (a `hosts.toml` each).
    pub plain_http_registries: Vec<String>,
    /// containerd's log level (`debug`, `info`, `warn`).
    pub log_level: String,
    /// Extra environment for containerd, inherited by the shims it starts (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// How long to wait for containerd and its CRI plugin to answer.
    pub ready_timeout: Duration,
    /// Build the pause image and import it as [`PAUSE_IMAGE`] once containerd is up (needed
    /// for any CRI pod; costs a fraction of a second).
    pub import_pause_image: bool,
    /// Pods get addresses from a /21 (2,045 pods) instead of the usual /24 (253): the pod
    /// bench's 1,000 pods.
    pub wide_pod_network: bool,
}

impl Default for ContainerdOptions {
    fn default() -> Self {
        ContainerdOptions {
            version: ContainerdVersion::V2,
            shim_dir: None,
            systemd_cgroup: false,
            spore_options: Vec::new(),
            extra_runtimes: Vec::new(),
            plain_http_registries: Vec::new(),
            log_level: "info".into(),
            env: Vec::new(),
            ready_timeout: Duration::from_secs(30),
            import_pause_image: true,
            wide_pod_network: false,
        }
    }
}

impl ContainerdOptions {
    pub fn version(mut self, version: ContainerdVersion) -> Self {
        self.version = version;
        self
    }

    pub fn shim_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.shim_dir = Some(dir.into());
        self
    }

    /// Puts cargo's `target/debug` (where `cargo build -p spore-shim` writes
    /// `containerd-shim-spore-v1`) first on containerd's `PATH`; `SPORE_TEST_SHIM_DIR` names
    /// another directory (to run the tests against another build of the shim).
    pub fn spore_shim_from_target(self) -> Self {
        match std::env::var_os("SPORE_TEST_SHIM_DIR") {
            Some(dir) if !dir.is_empty() => self.shim_dir(PathBuf::from(dir)),
            _ => self.shim_dir(crate::tools::debug_bin_dir()),
        }
    }

    pub fn systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    pub fn spore_option(mut self, key: impl Into<String>, raw_toml: impl Into<String>) -> Self {
        self.spore_options.push((key.into(), raw_toml.into()));
        self
    }

    /// Adds the CRI runtime handler `handler` of type `runtime_type`.
    pub fn runtime(mut self, handler: impl Into<String>, runtime_type: impl Into<String>) -> Self {
        self.extra_runtimes
            .push((handler.into(), runtime_type.into()));
        self
    }

    pub fn plain_http_registry(mut self, host: impl Into<String>) -> Self {
        self.plain_http_registries.push(host.into());
        self
    }

    pub fn log_level(mut self, level: impl Into<String>) -> Self {
        self.log_level = level.into();
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn import_pause_image(mut self, on: bool) -> Self {
        self.import_pause_image = on;
        self
    }

    pub fn wide_pod_network(mut self, on: bool) -> Self {
        self.wide_pod_network = on;
        self
    }
}

/// The directories of one instance, all under one temporary directory.
#[derive(Clone, Debug)]
pub struct ContainerdPaths {
    pub base: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_ipam_dir: PathBuf,
    pub hosts_dir: PathBuf,
    pub runc_root: PathBuf,
    pub pod_logs: PathBuf,
    pub opt: PathBuf,
}

impl ContainerdPaths {
    #[cfg(test)]
    pub(crate) fn for_tests(base: &str) -> Self {
        Self::under(Path::new(base))
    }

    fn under(base: &Path) -> Self {
        ContainerdPaths {
            base: base.to_path_buf(),
            root: base.join("root"),
            state: base.join("state"),
            socket: base.join("containerd.sock"),
            config: base.join("config.toml"),
            log: base.join("containerd.log"),
            cni_conf_dir: base.join("cni/net.d"),
            cni_ipam_dir: base.join("cni/ipam"),
            hosts_dir: base.join("certs.d"),
            runc_root: base.join("state/runc"),
            pod_logs: base.join("pods"),
            opt: base.join("opt"),
        }
    }
}

/// What `ctr` printed.
#[derive(Debug)]
pub struct CtrOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CtrOutput {
    pub fn success(&self) -> bool {
        self.status.success()
    }
}

/// Things a containerd instance left behind: shims, runc containers, mounts.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// `(pid, command line)` of shim processes naming this instance's socket.
    pub shims: Vec<(i32, String)>,
    /// Containers (`<namespace>/<id>`) still known to the instance's runc roots.
    pub runc_containers: Vec<String>,
    /// Mount points under the instance's directories.
    pub mounts: Vec<PathBuf>,
    /// Cgroup directories of pods created but not torn down.
    pub pod_cgroups: Vec<PathBuf>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.shims.is_empty()
            && self.runc_containers.is_empty()
            && self.mounts.is_empty()
            && self.pod_cgroups.is_empty()
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing left behind");
        }
        for (pid, cmdline) in &self.shims {
            writeln!(f, "shim process {pid}: {cmdline}")?;
        }
        for id in &self.runc_containers {
            writeln!(f, "runc container {id}")?;
        }
        for mount in &self.mounts {
            writeln!(f, "mount {}", mount.display())?;
        }
        for dir in &self.pod_cgroups {
            writeln!(f, "pod cgroup {}", dir.display())?;
        }
        Ok(())
    }
}

/// A running private containerd.
pub struct Containerd {
    child: Option<Child>,
    /// How containerd was started, to start it again ([`Containerd::restart`]).
    launch: Launch,
    paths: ContainerdPaths,
    version: ContainerdVersion,
    network: Option<CniNetwork>,
    pod_cgroups: TrackedPodCgroups,
    _dir: Option<tempfile::TempDir>,
}

/// containerd's command line and environment.
#[derive(Debug, Clone)]
struct Launch {
    binary: PathBuf,
    path_var: std::ffi::OsString,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
}

impl Containerd {
    /// Writes the config, the CNI network and the registry hosts, starts containerd and waits
    /// until it and its CRI plugin answer.
    pub fn start(options: ContainerdOptions) -> Result<Self, ContainerdError> {
        let bin_dir = options.version.bin_dir();
        let binary = bin_dir.join("containerd");
        if !binary.is_file() {
            return Err(ContainerdError::NotInstalled {
                path: binary,
                setup: options.version.setup_command(),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("spore-ctd-")
            .tempdir_in("/tmp")
            .map_err(io_error(Path::new("/tmp")))?;
        let paths = ContainerdPaths::under(dir.path());
        for d in [
            &paths.root,
            &paths.state,
            &paths.hosts_dir,
            &paths.pod_logs,
            &paths.opt,
        ] {
            std::fs::create_dir_all(d).map_err(io_error(d))?;
        }
        let network = CniNetwork::create(
            &paths.cni_conf_dir,
            &paths.cni_ipam_dir,
            options.wide_pod_network,
        )?;
        let config = config::render(&config::ConfigInput {
            version: options.version,
            paths: &paths,
            cni_bin_dir: Path::new(CNI_BIN_DIR),
            sandbox_image: PAUSE_IMAGE,
            systemd_cgroup: options.systemd_cgroup,
            spore_options: &options.spore_options,
            extra_runtimes: &options.extra_runtimes,
            log_level: &options.log_level,
        });
        std::fs::write(&paths.config, config).map_err(io_error(&paths.config))?;

        let mut path_dirs: Vec<PathBuf> = Vec::new();
        if let Some(shim_dir) = &options.shim_dir {
            path_dirs.push(shim_dir.clone());
        }
        path_dirs.push(bin_dir.clone());
        if let Some(path) = std::env::var_os("PATH") {
            path_dirs.extend(std::env::split_paths(&path));
        }
        let path_var = std::env::join_paths(path_dirs).map_err(|e| ContainerdError::Io {
            path: bin_dir.clone(),
            source: std::io::Error::other(e),
        })?;
        let mut containerd = Containerd {
            child: None,
            launch: Launch {
                binary,
                path_var,
                env: options.env.clone(),
                ready_timeout: options.ready_timeout,
            },
            paths,
            version: options.version,
            network: Some(network),
            pod_cgroups: TrackedPodCgroups::default(),
            _dir: Some(dir),
        };
        for host in &options.plain_http_registries {
            containerd.allow_plain_http(host)?;
        }
        containerd.spawn()?;
        if options.import_pause_image {
            crate::image::pause()
                .and_then(|builder| builder.build())
                .and_then(|image| image.import_into(&containerd, PAUSE_IMAGE))
                .map_err(|e| ContainerdError::PauseImage(Box::new(e)))?;
        }
        Ok(containerd)
    }

    /// Starts the containerd process (its log is appended to) and waits until it answers.
    fn spawn(&mut self) -> Result<(), ContainerdError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.paths.log)
            .map_err(io_error(&self.paths.log))?;
        let log_err = log.try_clone().map_err(io_error(&self.paths.log))?;
        let mut command = Command::new(&self.launch.binary);
        command
            .arg("--config")
            .arg(&self.paths.config)
            .env("PATH", &self.launch.path_var)
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command.spawn().map_err(|source| ContainerdError::Spawn {
            binary: self.launch.binary.clone(),
            source,
        })?;
        tracing::info!(pid = child.id(), socket = %self.paths.socket.display(), "containerd started");
        self.child = Some(child);
        self.wait_ready(self.launch.ready_timeout)
    }

    /// Restarts containerd as `systemctl restart containerd` does (SIGTERM to containerd
    /// alone; its shims and containers keep running), and waits until it answers again.
    pub fn restart(&mut self) -> Result<(), ContainerdError> {
        self.restart_after(Duration::ZERO)
    }

    /// [`Containerd::restart`] with containerd down for `down` in between (containers that
    /// end meanwhile must have their exits reported once it is back).
    pub fn restart_after(&mut self, down: Duration) -> Result<(), ContainerdError> {
        self.stop_containerd();
        std::thread::sleep(down);
        self.spawn()
    }

    fn wait_ready(&mut self, limit: Duration) -> Result<(), ContainerdError> {
        let start = Instant::now();
        let mut what = String::from("socket not answering");
        while start.elapsed() < limit {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(ContainerdError::Exited {
                    status,
                    log: self.log(),
                });
            }
            if UnixStream::connect(&self.paths.socket).is_ok() {
                match self.ctr(&["plugins", "ls"]) {
                    Ok(out) if out.success() => {
                        let cri_ok = out.stdout.lines().any(|line| {
                            let fields: Vec<&str> = line.split_whitespace().collect();
                            fields.len() >= 4
                                && fields[0] == "io.containerd.grpc.v1"
                                && fields[1] == "cri"
                                && fields[fields.len() - 1] == "ok"
                        });
                        if cri_ok {
                            return Ok(());
                        }
                        what = "the CRI plugin is not loaded yet".into();
                    }
                    Ok(out) => what = format!("ctr plugins ls: {}", out.stderr.trim()),
                    Err(e) => what = e.to_string(),
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(ContainerdError::NotReady {
            secs: limit.as_secs(),
            what,
            log: self.log(),
        })
    }

    /// containerd's gRPC socket.
    pub fn socket(&self) -> &Path {
        &self.paths.socket
    }

    /// The CRI namespace, `k8s.io`, which `ctr` commands use.
    pub fn namespace(&self) -> &'static str {
        CRI_NAMESPACE
    }

    pub fn version(&self) -> ContainerdVersion {
        self.version
    }

    pub fn paths(&self) -> &ContainerdPaths {
        &self.paths
    }

    pub fn log_path(&self) -> &Path {
        &self.paths.log
    }

    /// containerd's log so far (shim logs land here too).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    /// Where pod log directories go (the kubelet's `/var/log/pods`).
    pub fn pod_log_root(&self) -> &Path {
        &self.paths.pod_logs
    }

    /// The `Root` option of the `runc` handler; the shim keeps runc's state for namespace NS
    /// in `<root>/<NS>` (so `runc --root <root>/k8s.io list` shows the CRI containers).
    pub fn runc_root(&self) -> &Path {
        &self.paths.runc_root
    }

    /// The instance's CNI network.
    pub fn network(&self) -> &CniNetwork {
        match &self.network {
            Some(network) => network,
            None => unreachable!("the network lives until drop"),
        }
    }

    /// The pod cgroups of this instance's pods that are not torn down yet (CRI clients made
    /// with [`crate::CriClient::for_containerd`] record them); drop kills and removes them.
    pub fn pod_cgroups(&self) -> &TrackedPodCgroups {
        &self.pod_cgroups
    }

    /// Lets containerd reach `host` (`host:port`) over plain HTTP, for pulls through CRI and
    /// through the transfer service.
    pub fn allow_plain_http(&self, host: &str) -> Result<(), ContainerdError> {
        let dir = self.paths.hosts_dir.join(host);
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        let file = dir.join("hosts.toml");
        std::fs::write(&file, config::hosts_toml(host)).map_err(io_error(&file))
    }

    /// Runs the unpacked `ctr --address SOCKET --namespace k8s.io ARGS...`.
    pub fn ctr(&self, args: &[&str]) -> Result<CtrOutput, ContainerdError> {
        self.ctr_in(CRI_NAMESPACE, args)
    }

    /// Runs `ctr --address SOCKET --namespace NAMESPACE ARGS...` (e.g. `default` for
    /// `ctr run` tests outside CRI).
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> Result<CtrOutput, ContainerdError> {
        let binary = self.version.bin_dir().join("ctr");
        let output = Command::new(&binary)
            .arg("--address")
            .arg(&self.paths.socket)
            .arg("--namespace")
            .arg(namespace)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|source| ContainerdError::Spawn { binary, source })?;
        Ok(CtrOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// Like [`Containerd::ctr`], but a non-zero exit is an error.
    pub fn ctr_ok(&self, args: &[&str]) -> Result<String, ContainerdError> {
        let out = self.ctr(args)?;
        if out.success() {
            Ok(out.stdout)
        } else {
            Err(ContainerdError::Ctr {
                args: args.join(" "),
                status: out.status,
                stderr: out.stderr,
            })
        }
    }

    /// `ctr images pull --plain-http REFERENCE` into `namespace` (unpacked for the default
    /// snapshotter), for tests that run containers with `ctr run` rather than CRI.
    pub fn ctr_pull(&self, namespace: &str, reference: &str) -> Result<(), ContainerdError> {
        let args = ["images", "pull", "--plain-http", reference];
        let out = self.ctr_in(namespace, &args)?;
        if out.success() {
            Ok(())
        } else {
            Err(ContainerdError::Ctr {
                args: args.join(" "),
                status: out.status,
                stderr: out.stderr,
            })
        }
    }

    /// containerd's pid while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Shim processes whose command line names this instance's socket.
    pub fn shim_processes(&self) -> Vec<(i32, String)> {
        cleanup::processes_naming(&self.paths.socket.to_string_lossy())
    }

    /// The shim processes that serve a socket of their own (a pod's, a container's): not
    /// Spore's fork server, which serves none.
    pub fn serving_shims(&self) -> Vec<(i32, String)> {
        self.shim_processes()
            .into_iter()
            .filter(|(_, cmdline)| cmdline.contains(" -socket "))
            .collect()
    }

    /// Mount points under this instance's directory.
    pub fn mounts(&self) -> Vec<PathBuf> {
        cleanup::mounts_under(&self.paths.base)
    }

    /// Containers still in the `runc` handler's runc roots (every namespace).
    pub fn runc_containers(&self) -> Vec<String> {
        cleanup::runc_containers(&self.paths.runc_root)
    }

    /// Everything this instance has running or mounted right now besides containerd itself.
    /// Waits up to `limit` for [`Self::leftovers`] to be empty (a shim exits a moment after
    /// containerd's last Shutdown); returns what is left then.
    pub fn leftovers_after(&self, limit: std::time::Duration) -> Leftovers {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let left = self.leftovers();
            if left.is_empty() || std::time::Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    pub fn leftovers(&self) -> Leftovers {
        Leftovers {
            shims: self.shim_processes(),
            runc_containers: self.runc_containers(),
            mounts: self.mounts(),
            pod_cgroups: self
                .pod_cgroups
                .list()
                .iter()
                .flat_map(|parent| cgroup::existing_dirs(parent).unwrap_or_default())
                .collect(),
        }
    }

    /// Stops containerd, then removes what it left (see [`Containerd::leftovers`]) and returns
    /// what had to be cleaned up by force. An empty result means containerd and its shims shut
    /// down cleanly.
    pub fn shutdown(mut self) -> Leftovers {
        // A shim exits as soon as it has answered containerd's last Shutdown; wait for that
        // exit (bounded) before calling anything left over.
        let leftovers = self.leftovers_after(Duration::from_secs(5));
        self.stop_containerd();
        self.force_cleanup();
        leftovers
    }

    fn stop_containerd(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => break,
            }
        }
        tracing::warn!(
            pid = child.id(),
            "containerd ignored SIGTERM for 10 s; killing it"
        );
        let _ = child.kill();
        let _ = child.wait();
    }

    fn force_cleanup(&mut self) {
        cleanup::kill_runc_containers(&self.paths.runc_root);
        cleanup::kill_processes(&self.shim_processes());
        for parent in self.pod_cgroups.list() {
            match cgroup::kill_and_remove(&parent) {
                Ok(killed) if !killed.is_empty() => {
                    tracing::warn!(%parent, ?killed, "killed processes left in a pod cgroup");
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%parent, %error, "could not remove a pod cgroup"),
            }
            self.pod_cgroups.remove(&parent);
        }
        cleanup::unmount_under(&self.paths.base);
        if let Some(network) = self.network.take() {
            drop(network);
        }
        if let Some(dir) = self._dir.take()
            && let Err(error) = dir.close()
        {
            tracing::warn!(%error, "could not remove containerd's directory");
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop_containerd();
        self.force_cleanup();
    }
}

impl fmt::Debug for Containerd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Containerd")
            .field("version", &self.version)
            .field("socket", &self.paths.socket)
            .field("pid", &self.pid())
            .finish()
    }
}
