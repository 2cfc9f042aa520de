//! The command line of `spore-operator node-install`.

use std::path::PathBuf;

use crate::presets::Preset;
use crate::restart::RestartStrategy;

/// Install (or with `--uninstall`, remove) Spore's shim and containerd runtime on this node.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeInstallArgs {
    /// Where the node's root file system is mounted in this container.
    #[arg(long, env = "SPORE_HOST_ROOT", default_value = "/host")]
    pub host_root: PathBuf,

    /// The shim binary to install (a path in this container, i.e. in the installer image).
    #[arg(
        long,
        env = "SPORE_SHIM_SOURCE",
        default_value = "/usr/local/bin/containerd-shim-spore-v1"
    )]
    pub shim_source: PathBuf,

    /// Expected sha256 (hex) of the shim binary; refuse to install anything else.
    #[arg(long, env = "SPORE_SHIM_SHA256")]
    pub shim_sha256: Option<String>,

    /// Directory on the host for the shim; containerd gets its absolute path as `runtime_path`.
    #[arg(long, env = "SPORE_INSTALL_DIR", default_value = "/opt/spore/bin")]
    pub install_dir: PathBuf,

    /// containerd config file to edit (host path), instead of the preset's.
    #[arg(long, env = "SPORE_CONTAINERD_CONFIG")]
    pub containerd_config: Option<PathBuf>,

    /// containerd's socket (host path), instead of the preset's.
    #[arg(long, env = "SPORE_CONTAINERD_SOCKET")]
    pub containerd_socket: Option<PathBuf>,

    /// Which distribution's containerd layout to use.
    #[arg(long, env = "SPORE_PRESET", value_enum, default_value = "auto")]
    pub preset: Preset,

    /// Remove the runtime, the shim and the node label, restoring containerd's config.
    #[arg(long)]
    pub uninstall: bool,

    /// Install once and exit, instead of checking again every `--interval-seconds`.
    #[arg(long)]
    pub once: bool,

    /// Seconds between checks for drift (a config reverted by the platform, a changed shim).
    #[arg(long, env = "SPORE_INTERVAL_SECONDS", default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub interval_seconds: u64,

    /// This node's name (the DaemonSet passes it from the downward API); without it the node is
    /// not labelled.
    #[arg(long, env = "NODE_NAME")]
    pub node_name: Option<String>,

    /// How to restart containerd after its config changed: `systemd` (`systemctl restart
    /// <the preset's unit>` through the host's PID 1), `signal` (SIGTERM to the process serving
    /// containerd's socket; whatever supervises it starts it again), `none`.
    #[arg(
        long,
        env = "SPORE_CONTAINERD_RESTART",
        value_enum,
        default_value = "systemd"
    )]
    pub containerd_restart: RestartStrategy,

    /// Command that restarts containerd, shell-quoted; `none` to never restart. Given, it
    /// replaces `--containerd-restart` and runs in the installer's container. Without it,
    /// `systemd` runs `systemctl restart <the preset's service>` in the mount, UTS, IPC and
    /// network namespaces of the host's PID 1 (what `nsenter -t 1 -m -u -i -n` does).
    #[arg(long, env = "SPORE_RESTART_COMMAND")]
    pub restart_command: Option<String>,

    /// Seconds to wait for containerd to answer after a restart.
    #[arg(long, env = "SPORE_RESTART_TIMEOUT_SECONDS", default_value_t = 90)]
    pub restart_timeout_seconds: u64,

    /// Directory on the host for the installer's record and config backup.
    #[arg(
        long,
        env = "SPORE_STATE_DIR",
        default_value = "/var/lib/spore/node-install"
    )]
    pub state_dir: PathBuf,
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: NodeInstallArgs,
    }

    #[test]
    fn defaults_match_the_daemonset() {
        let cli = Cli::try_parse_from(["node-install"]).expect("parse");
        assert_eq!(cli.args.host_root, PathBuf::from("/host"));
        assert_eq!(cli.args.install_dir, PathBuf::from("/opt/spore/bin"));
        assert_eq!(cli.args.preset, Preset::Auto);
        assert_eq!(cli.args.interval_seconds, 300);
        assert!(!cli.args.uninstall && !cli.args.once);
        assert_eq!(cli.args.containerd_restart, RestartStrategy::Systemd);
        let signal =
            Cli::try_parse_from(["node-install", "--containerd-restart", "signal"]).expect("parse");
        assert_eq!(signal.args.containerd_restart, RestartStrategy::Signal);
        assert!(Cli::try_parse_from(["node-install", "--containerd-restart", "kill"]).is_err());
    }

    #[test]
    fn presets_and_flags_parse() {
        let cli = Cli::try_parse_from([
            "node-install",
            "--preset",
            "k3s",
            "--uninstall",
            "--once",
            "--interval-seconds",
            "30",
            "--restart-command",
            "none",
        ])
        .expect("parse");
        assert_eq!(cli.args.preset, Preset::K3s);
        assert!(cli.args.uninstall && cli.args.once);
        assert_eq!(cli.args.restart_command.as_deref(), Some("none"));
        assert!(Cli::try_parse_from(["node-install", "--preset", "docker"]).is_err());
        assert!(Cli::try_parse_from(["node-install", "--interval-seconds", "0"]).is_err());
    }
}
