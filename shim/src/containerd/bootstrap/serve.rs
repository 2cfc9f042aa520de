//! The serving process: started by `start` with `-socket`, it joins its pod, serves containerd's
//! Task API for every container of the pod, and exits once containerd's last Shutdown has been
//! answered and no container is left.
//!
//! Order matters at the start: the pod's network namespace is joined before any thread exists
//! (a namespace is per thread), the inherited listener is taken before anything could inherit it,
//! and the ready line goes out only once the ttrpc server listens with the Task service in place.

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use containerd_shim::Flags;
use containerd_shim::protos::shim_async::{Task, create_task};
use containerd_shim::protos::ttrpc::r#async::Server;
use containerd_shim::protos::ttrpc::r#async::transport::Listener;

use super::READY_LINE;
use super::workers::{WORKERS_ENV, WorkersSetting};
use crate::container::factory::Factory;
use crate::containerd::events::ForwardedEvents;
use crate::containerd::panic_answer::PanicAnswered;
use crate::containerd::shutdown::Shutdown;
use crate::containerd::socket::{self, SocketError};
use crate::containerd::task_service::TaskService;

const TASK_V3: &str = "containerd.task.v3.Task";
const TASK_V2: &str = "containerd.task.v2.Task";

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("the shim socket is not set (-socket)")]
    NoSocket,
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error("joining the pod: {0}")]
    Pod(#[from] crate::host::netns::NetnsError),
    #[error("starting the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the TTRPC_ADDRESS environment variable is not set")]
    NoTtrpcAddress,
    #[error(transparent)]
    Events(#[from] crate::containerd::events::EventsError),
    #[error("preparing the Wasm runtime: {0}")]
    Factory(#[from] crate::container::factory::FactoryError),
    #[error("the ttrpc server: {0}")]
    Server(String),
}

pub fn run(flags: &Flags) -> ExitCode {
    match run_until_shutdown(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Before the ready line, `start` passes this on to containerd; after it, the shim's
            // log is the place.
            tracing::error!("{err}");
            eprintln!("{}: {err}", spore_format::SHIM_BINARY);
            ExitCode::FAILURE
        }
    }
}

fn run_until_shutdown(flags: &Flags) -> Result<(), ServeError> {
    if flags.socket.is_empty() {
        return Err(ServeError::NoSocket);
    }
    // Before any thread: the namespace is per thread, and the descriptor must not leak.
    crate::host::netns::enter_for_bundle(Path::new("."))?;
    let listener = match socket::take_inherited()? {
        Some(listener) => listener,
        None => socket::bind_for_serving(&flags.socket)?,
    };
    crate::host::reaper::become_subreaper();
    // Also before any thread: the sandbox's init is forked from this small, single-threaded
    // process (the shim was started for the pod's first container, its sandbox).
    // And the shim joins its pod's cgroup now, while a `tasks` write moves the whole process.
    let mut join_failures = Vec::new();
    if let Ok(spec) = crate::spec::ContainerSpec::load(Path::new(".")) {
        crate::host::pod_init::prepare_template(&spec);
        join_failures = crate::host::shim_cgroup::join_pod_at_start(&spec);
    }
    crate::host::heap::limit_arenas();
    // After the cgroup join: the pod's CPU quota counts among the usable CPUs.
    let workers_setting = WorkersSetting::from_env();
    let workers = workers_setting.workers(super::workers::usable_cpus());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .on_thread_park(crate::host::idle_stacks::on_park)
        .build()
        .map_err(ServeError::Runtime)?;
    let result = runtime.block_on(serve(flags, listener, join_failures, workers_setting));
    socket::remove(&flags.socket);
    result
}

async fn serve(
    flags: &Flags,
    listener: UnixListener,
    join_failures: crate::host::shim_cgroup::JoinFailures,
    workers_setting: WorkersSetting,
) -> Result<(), ServeError> {
    crate::host::logging::init(flags.debug);
    crate::host::panic_log::install();
    crate::host::shim_cgroup::log_failures(&join_failures);
    tracing::debug!(cgroups = ?crate::host::shim_cgroup::joined_leaves(), "shim joined its pod's cgroup");
    if let Ok(reason) = std::env::var(super::fork_server::FALLBACK_ENV) {
        tracing::warn!(
            %reason,
            "this shim was started by executing the binary, not forked by the fork server: its \
             copy of the binary's relocated pages (about 1 MiB) is not shared with other pods' shims"
        );
    }
    if let WorkersSetting::Invalid(value) = workers_setting {
        tracing::warn!(
            %value,
            "{WORKERS_ENV} is not a number of workers (a whole number, at least 1): the shim uses its default"
        );
    }
    crate::host::reaper::reap_children();
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").map_err(|_| ServeError::NoTtrpcAddress)?;
    let events = Arc::new(ForwardedEvents::connect(&ttrpc_address, flags.namespace.clone()).await?);
    let factory = Factory::new(&flags.address, &flags.namespace).await?;
    let shutdown = Arc::new(Shutdown::default());
    let service: Arc<dyn Task + Send + Sync> = Arc::new(PanicAnswered(TaskService::new(
        factory,
        events.clone(),
        shutdown.clone(),
    )));
    let mut services = create_task(service.clone());
    if let Some(v3) = create_task(service).remove(TASK_V3) {
        services.insert(TASK_V2.to_string(), v3);
    }
    let listener = Listener::try_from(listener).map_err(|e| ServeError::Server(e.to_string()))?;
    let mut server = Server::new()
        .add_listener(listener)
        .register_service(services);
    server
        .start()
        .await
        .map_err(|e| ServeError::Server(e.to_string()))?;
    signal_ready();
    tracing::info!(socket = %flags.socket, "serving");
    let trimmer = tokio::spawn(crate::host::heap::trim_when_quiet());
    shutdown.requested().await;
    crate::faults::exit_delay().await;
    // Stops accepting, waits for the requests already received to be answered, then closes.
    let _ = server.shutdown().await;
    // The last TaskExit and TaskDelete reach containerd before the shim goes.
    events.flushed().await;
    trimmer.abort();
    crate::host::shim_cgroup::leave_pod();
    tracing::info!("no containers left: the shim exits");
    Ok(())
}

/// Tells `start` that the server listens, then lets go of the pipes it reads: from here on,
/// stdout and stderr are `/dev/null` (the shim's own log is containerd's `log` FIFO).
fn signal_ready() {
    use std::io::Write;
    let mut stdout = std::io::stdout();
    let _ = writeln!(stdout, "{READY_LINE}").and_then(|()| stdout.flush());
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
        // SAFETY: dup2 onto the standard descriptors of this process.
        unsafe {
            libc::dup2(fd, libc::STDOUT_FILENO);
            libc::dup2(fd, libc::STDERR_FILENO);
        }
    }
}
