//! A scratch "host" for the installer: a temporary root file system with a containerd config in
//! it, and a real containerd (from `.tools/`, see hack/setup.sh) started on that config with a
//! private root, state dir and socket below the scratch root. containerd is started and
//! restarted by a shell script that plays systemd, so the installer's restart path runs for real.

#![allow(dead_code)]

pub mod kube_mock;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use spore_node_install::NodeInstallArgs;
use spore_node_install::cri_probe::{self, CriStatus};
use toml_edit::DocumentMut;

/// Which containerd build to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Containerd {
    /// 1.7 from Debian trixie: config version 2.
    V1_7,
    /// 2.1 from Debian sid: config version 3.
    V2,
}

impl Containerd {
    pub fn binary(self) -> PathBuf {
        let suite = match self {
            Containerd::V1_7 => "containerd-trixie",
            Containerd::V2 => "containerd-sid",
        };
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../.tools")
            .join(suite)
            .join("usr/bin/containerd");
        assert!(
            path.is_file(),
            "{} is missing: run `bash hack/setup.sh` and `SPORE_CONTAINERD=1.7 bash hack/setup.sh`",
            path.display()
        );
        path
    }

    /// containerd's own `config default`, the file a node would have.
    pub fn default_config(self) -> String {
        let out = Command::new(self.binary())
            .args(["config", "default"])
            .output()
            .expect("containerd config default");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    }

    pub fn cri_plugin(self) -> &'static str {
        match self {
            Containerd::V1_7 => "io.containerd.grpc.v1.cri",
            Containerd::V2 => "io.containerd.cri.v1.runtime",
        }
    }
}

/// Where the fake host keeps containerd's pieces (host paths).
pub const SOCKET: &str = "/run/containerd/containerd.sock";

/// A scratch host root plus the containerd running "on" it.
pub struct ScratchHost {
    pub dir: tempfile::TempDir,
    pub containerd: Containerd,
    /// containerd's socket, as a host path.
    pub socket: &'static str,
    /// The file containerd is started with (inside the scratch root).
    pub config: PathBuf,
    pub script: PathBuf,
}

impl ScratchHost {
    pub fn new(containerd: Containerd) -> ScratchHost {
        ScratchHost::with_paths(containerd, "/etc/containerd/config.toml", SOCKET)
    }

    /// A host whose containerd reads `config` and listens on `socket` (host paths).
    pub fn with_paths(containerd: Containerd, config: &str, socket: &'static str) -> ScratchHost {
        let dir = tempfile::Builder::new()
            .prefix("spore-ni-")
            .tempdir()
            .expect("tempdir");
        let host = ScratchHost {
            config: dir.path().join("host").join(config.trim_start_matches('/')),
            socket,
            script: dir.path().join("restart-containerd.sh"),
            dir,
            containerd,
        };
        let socket_dir = host
            .on_host(socket)
            .parent()
            .map(Path::to_path_buf)
            .expect("socket dir");
        std::fs::create_dir_all(socket_dir).expect("mkdir");
        std::fs::write(
            host.dir.path().join("shim"),
            b"#!/bin/sh\necho not a real shim\nexit 1\n",
        )
        .expect("fake shim");
        host
    }

    pub fn host_root(&self) -> PathBuf {
        self.dir.path().join("host")
    }

    pub fn on_host(&self, host_path: &str) -> PathBuf {
        self.host_root().join(host_path.trim_start_matches('/'))
    }

    /// Settings that make a node config runnable here: private paths, and what this VM needs.
    pub fn localize(&self, doc: &mut DocumentMut, with_cri_settings: bool) {
        let root = self.host_root();
        doc["root"] = toml_edit::value(root.join("var/lib/containerd").to_string_lossy().as_ref());
        doc["state"] = toml_edit::value(root.join("run/containerd").to_string_lossy().as_ref());
        doc["grpc"]["address"] =
            toml_edit::value(self.on_host(self.socket).to_string_lossy().as_ref());
        if doc.get("ttrpc").is_some() {
            doc["ttrpc"]["address"] = toml_edit::value("");
        }
        if doc.get("debug").is_some() {
            doc["debug"]["address"] = toml_edit::value("");
        }
        if let Some(plugins) = doc.get_mut("plugins").and_then(|p| p.as_table_like_mut()) {
            // Another containerd on this machine may own NRI's fixed socket.
            if let Some(nri) = plugins.get_mut("io.containerd.nri.v1.nri") {
                nri["disable"] = toml_edit::value(true);
            }
            if !with_cri_settings {
                plugins.remove(self.containerd.cri_plugin());
            }
        }
        if with_cri_settings {
            // runc here cannot give a process a negative OOM score (see docs/DESIGN facts).
            doc["plugins"][self.containerd.cri_plugin()]["restrict_oom_score_adj"] =
                toml_edit::value(true);
        }
    }

    /// Writes the node's config: containerd's default, made runnable here.
    pub fn write_default_config(&self) -> String {
        let mut doc: DocumentMut = self
            .containerd
            .default_config()
            .parse()
            .expect("default config");
        self.localize(&mut doc, true);
        let text = doc.to_string();
        std::fs::create_dir_all(self.config.parent().expect("dir")).expect("mkdir");
        std::fs::write(&self.config, &text).expect("write config");
        text
    }

    /// Writes the restart script. `render` is shell run before containerd starts (k3s renders
    /// its template there).
    pub fn write_script(&self, render: &str) {
        let d = self.dir.path().display();
        let script = format!(
            r#"#!/bin/sh
# Plays systemd for the test's containerd: stop it, then start it again on its config.
set -eu
dir='{d}'
echo restart >> "$dir/restarts.log"
# Only the containerd this script started on this config: a pid file can outlive its process,
# and on a busy machine the pid may already belong to another test's process.
if [ -f "$dir/containerd.pid" ] && tr '\0' ' ' < "/proc/$(cat "$dir/containerd.pid")/cmdline" 2>/dev/null | grep -qF -- '{config}'; then
  pid=$(cat "$dir/containerd.pid")
  kill "$pid" 2>/dev/null || true
  i=0
  while kill -0 "$pid" 2>/dev/null && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -ge 200 ]; then kill -9 "$pid" 2>/dev/null || true; break; fi
    sleep 0.1
  done
fi
{render}
setsid '{bin}' --config '{config}' >> "$dir/containerd.log" 2>&1 < /dev/null &
echo $! > "$dir/containerd.pid"
"#,
            bin = self.containerd.binary().display(),
            config = self.config.display(),
        );
        std::fs::write(&self.script, script).expect("script");
        let status = Command::new("chmod")
            .arg("+x")
            .arg(&self.script)
            .status()
            .expect("chmod");
        assert!(status.success());
    }

    /// Starts containerd under a supervisor loop (as a non-systemd init would run it): whenever
    /// it exits, the loop starts it again and counts a restart. The loop ends with the guard.
    pub async fn start_supervised(&self) -> Supervisor {
        let d = self.dir.path().display();
        let script = format!(
            r#"while :; do
  echo restart >> '{d}/restarts.log'
  '{bin}' --config '{config}' >> '{d}/containerd.log' 2>&1 < /dev/null &
  echo $! > '{d}/containerd.pid'
  wait $!
  sleep 0.2
done"#,
            bin = self.containerd.binary().display(),
            config = self.config.display(),
        );
        let child = Command::new("setsid")
            .args(["sh", "-c", &script])
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("supervisor");
        self.wait_for(|_| true).await;
        Supervisor { child }
    }

    /// The pid of the containerd started last, from its pid file.
    fn recorded_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("containerd.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// The pid of the containerd running now (from the pid file).
    pub fn containerd_pid(&self) -> i32 {
        self.recorded_pid().expect("containerd.pid")
    }

    /// Starts containerd (through the script) and waits for CRI to answer.
    pub async fn start(&self) -> CriStatus {
        let status = Command::new(&self.script).status().expect("run script");
        assert!(status.success(), "restart script failed");
        self.wait_for(|_| true).await
    }

    /// How many times the script ran.
    pub fn restarts(&self) -> usize {
        std::fs::read_to_string(self.dir.path().join("restarts.log"))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// Polls CRI Status until `pred` holds (30 s at most).
    pub async fn wait_for(&self, pred: impl Fn(&CriStatus) -> bool) -> CriStatus {
        let socket = self.on_host(self.socket);
        let mut last = String::new();
        for _ in 0..120 {
            match cri_probe::status(&socket, Duration::from_secs(5)).await {
                Ok(status) if pred(&status) => return status,
                Ok(status) => last = format!("{status:?}"),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("containerd never got there: {last}\nlog:\n{}", self.log());
    }

    pub async fn cri(&self) -> CriStatus {
        cri_probe::status(&self.on_host(self.socket), Duration::from_secs(10))
            .await
            .expect("CRI status")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("containerd.log")).unwrap_or_default()
    }

    /// Installer arguments for this host: restart through the script, given preset.
    pub fn args(&self, preset: &str, extra: &[&str]) -> NodeInstallArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: NodeInstallArgs,
        }
        let base = [
            (
                "--host-root",
                self.host_root().to_string_lossy().into_owned(),
            ),
            (
                "--shim-source",
                self.dir.path().join("shim").to_string_lossy().into_owned(),
            ),
            ("--preset", preset.to_owned()),
            ("--restart-timeout-seconds", "30".to_owned()),
            ("--restart-command", format!("'{}'", self.script.display())),
        ];
        let mut argv = vec!["node-install".to_owned(), "--once".to_owned()];
        for (flag, value) in base {
            // A flag given in `extra` replaces the default here.
            let strategy_given =
                flag == "--restart-command" && extra.contains(&"--containerd-restart");
            if !extra.contains(&flag) && !strategy_given {
                argv.push(flag.to_owned());
                argv.push(value);
            }
        }
        argv.extend(extra.iter().map(|s| (*s).to_owned()));
        Cli::try_parse_from(argv).expect("args").args
    }
}

impl Drop for ScratchHost {
    fn drop(&mut self) {
        let Some(pid) = self.recorded_pid() else {
            return;
        };
        // The pid file can outlive its containerd, and the pid be reused by another test's
        // process: only signal the containerd running on this host's config.
        let config = self.config.display().to_string();
        let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).contains(&config))
            .unwrap_or(false);
        if !ours {
            return;
        }
        let alive = || {
            std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map(|s| {
                    !s.lines()
                        .any(|l| l.starts_with("State:") && l.contains('Z'))
                })
                .unwrap_or(false)
        };
        // SAFETY: kill(2) on the containerd this test started; no memory is shared.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        for _ in 0..100 {
            if !alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// `containerd.runtimes.spore` in the effective config CRI reports.
pub fn spore_entry(status: &CriStatus) -> serde_json::Value {
    status
        .runtime_config("spore")
        .cloned()
        .unwrap_or_else(|| panic!("no spore runtime in CRI config: {status:?}"))
}

/// `containerd.runtimes.runc` in the effective config CRI reports.
pub fn runc_entry(status: &CriStatus) -> serde_json::Value {
    status
        .runtime_config("runc")
        .cloned()
        .unwrap_or_else(|| panic!("no runc runtime in CRI config: {status:?}"))
}

/// The supervisor loop of [`ScratchHost::start_supervised`]: killed first on drop, so that the
/// host's drop stops its containerd for good.
pub struct Supervisor {
    child: std::process::Child,
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
