//! `spore-operator`: `run` reconciles WasmApps; `crd` prints the CustomResourceDefinition;
//! `node-install` prepares a node; `wait-daemonset` and `idle` serve the uninstall hook (the
//! images hold nothing but this binary and the shim, so the hook needs no other image).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use spore_operator::controller::{self, Context};
use spore_operator::leader::{LeaderElector, LeaseConfig};
use spore_operator::metrics::{self, Health, Metrics};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "spore-operator",
    version,
    about = "Runs WebAssembly apps on Kubernetes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Reconcile WasmApps in the cluster (in-cluster config or the kubeconfig).
    Run(RunArgs),
    /// Print the WasmApp CustomResourceDefinition as YAML.
    Crd,
    /// Install the Spore shim on this node and register it with containerd (run by the
    /// node-installer DaemonSet with the host's root mounted); `--uninstall` undoes it.
    NodeInstall(spore_node_install::NodeInstallArgs),
    /// Wait until a DaemonSet's pods are ready on every node it covers (the uninstall hook's
    /// Job); when time is up, fail naming each node that has not answered.
    WaitDaemonset(WaitDaemonsetArgs),
    /// Run a command in the mount, UTS, IPC and network namespaces of the host's PID 1 (what
    /// `nsenter -t 1 -m -u -i -n` does; the image has no nsenter), e.g. in a
    /// `--restart-command`: `spore-operator host-exec -- rc-service containerd restart`.
    HostExec {
        /// The program and its arguments, looked up on the host's PATH.
        #[arg(required = true, trailing_var_arg = true)]
        command: Vec<String>,
    },
    /// Do nothing until SIGTERM (the uninstall DaemonSet's container, ready once its init
    /// container has restored the node).
    Idle,
}

#[derive(Args)]
struct WaitDaemonsetArgs {
    /// Name of the DaemonSet.
    name: String,
    /// Its namespace.
    #[arg(long, env = "POD_NAMESPACE", default_value = "spore-system")]
    namespace: String,
    /// Seconds to wait before failing.
    #[arg(long, default_value_t = 300)]
    timeout_seconds: u64,
}

#[derive(Args)]
struct RunArgs {
    /// Address of the /metrics, /healthz and /readyz server.
    #[arg(long, env = "SPORE_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Cluster DNS domain used in the URLs written to status.
    #[arg(long, env = "SPORE_CLUSTER_DOMAIN", default_value = "cluster.local")]
    cluster_domain: String,
    /// Elect a leader on a Lease, so that several replicas are safe.
    #[arg(long, env = "SPORE_LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Namespace of the leader Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "spore-system")]
    lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "spore-operator")]
    lease_name: String,
    /// This replica's identity in the Lease and in events (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    lease_duration_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => {
            print!("{}", spore_operator::crd::crd_yaml()?);
            Ok(())
        }
        Command::NodeInstall(args) => {
            init_logs();
            spore_node_install::run(args).await?;
            Ok(())
        }
        Command::WaitDaemonset(args) => {
            init_logs();
            let client = kube::Client::try_default()
                .await
                .context("connect to the Kubernetes API (in-cluster config or kubeconfig)")?;
            let result = spore_node_install::rollout_wait::wait_for_daemonset(
                client,
                &args.namespace,
                &args.name,
                Duration::from_secs(args.timeout_seconds),
                Duration::from_secs(2),
            )
            .await;
            if let Err(error) = &result {
                // Where `kubectl describe pod` shows it; only inside a pod, where the kubelet
                // mounted the file (never created elsewhere).
                if let Ok(mut file) = std::fs::OpenOptions::new()
                    .write(true)
                    .open("/dev/termination-log")
                {
                    let _ = std::io::Write::write_all(&mut file, error.to_string().as_bytes());
                }
            }
            result?;
            Ok(())
        }
        Command::HostExec { command } => {
            let Some((program, args)) = command.split_first() else {
                anyhow::bail!("host-exec needs a command");
            };
            let host = spore_node_install::host_namespaces::Namespaces::of(
                std::path::Path::new("/proc"),
                1,
            )?;
            let status = host
                .command(program, args)
                .status()
                .await
                .with_context(|| format!("run {program} in the host's namespaces"))?;
            std::process::exit(status.code().unwrap_or(1));
        }
        Command::Idle => {
            termination_signal().await;
            Ok(())
        }
        Command::Run(args) => {
            init_logs();
            run(args).await
        }
    }
}

fn init_logs() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
}

/// Resolves when SIGTERM or Ctrl-C arrives, or at once if the handler cannot be installed.
async fn termination_signal() {
    let mut sigterm = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
    {
        Ok(s) => s,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupt: shutting down"),
    }
}

/// A future that completes once `rx` turns true.
async fn shutdown_requested(mut rx: watch::Receiver<bool>) {
    // an error means the sender is gone, which also means shutdown
    let _ = rx.wait_for(|stop| *stop).await;
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connect to the Kubernetes API (in-cluster config or kubeconfig)")?;
    let identity = args.identity.clone().unwrap_or_else(|| {
        std::env::var("HOSTNAME")
            .unwrap_or_else(|_| format!("spore-operator-{}", std::process::id()))
    });
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        termination_signal().await;
        let _ = stop_tx.send(true);
    });

    let metrics = Arc::new(Metrics::default());
    let health = Arc::new(Health::default());
    let server = tokio::spawn(metrics::serve(
        args.metrics_addr,
        metrics.clone(),
        health.clone(),
        shutdown_requested(stop_rx.clone()),
    ));

    let ctx = Arc::new(Context::new(
        client.clone(),
        metrics,
        args.cluster_domain.clone(),
        Some(identity.clone()),
    ));

    let result = if args.leader_election {
        let elector = LeaderElector::new(
            client,
            LeaseConfig {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                identity,
                lease_duration: Duration::from_secs(args.lease_duration_seconds),
                retry_period: Duration::from_secs((args.lease_duration_seconds / 5).max(1)),
            },
        );
        // a standby replica is healthy and ready: it only waits for the lease
        health.set_ready(true);
        let acquired = tokio::select! {
            () = elector.acquire() => true,
            () = shutdown_requested(stop_rx.clone()) => false,
        };
        if acquired {
            let outcome = tokio::select! {
                () = controller::run(ctx, shutdown_requested(stop_rx.clone())) => Ok(()),
                lost = elector.hold() => Err(lost),
            };
            if let Err(error) = elector.release().await {
                tracing::warn!(%error, "could not release the lease");
            }
            outcome.map_err(anyhow::Error::from)
        } else {
            Ok(())
        }
    } else {
        health.set_ready(true);
        controller::run(ctx, shutdown_requested(stop_rx.clone())).await;
        Ok(())
    };

    server.abort();
    tracing::info!("stopped");
    result
}
