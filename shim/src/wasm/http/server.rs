//! The HTTP/1.1 server of one container: accepts connections on `0.0.0.0:$PORT` in the shim's
//! network namespace, hands each to one of the container's serving threads, serves each request
//! with a fresh instance from the guest's `ProxyPre`, and
//! ends on the container's Kill: SIGKILL at once, any other signal after draining in-flight
//! requests (up to the grace period).

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::host::stats::Usage;
use crate::host::stdio::StdioPaths;
use crate::signal::Signal;
use crate::spec::ContainerSpec;
use crate::wasm::exit::ExitStatus;
use crate::wasm::http::config::HttpConfig;
use crate::wasm::http::output::{OutputWriter, SharedOutput};
use crate::wasm::http::overload::{self, Admission, ConnectionGate};
use crate::wasm::http::request::RequestHandler;
use crate::wasm::http::serving_threads::ServingThreads;
use crate::wasm::http::state::HttpState;
use crate::wasm::names::ContainerNames;
use wasmtime_wasi_http::io::TokioIo;
use wasmtime_wasi_http::p2::bindings::ProxyPre;

const SIGKILL: Signal = Signal::KILL;
/// Connections waiting to be accepted.
const LISTEN_BACKLOG: u32 = 1024;
/// How long the end of the container waits for queued guest output to reach its FIFO.
const OUTPUT_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// A `wasi:http/proxy` guest, linked and configured at task Create.
pub struct HttpGuest {
    pre: ProxyPre<HttpState>,
    config: HttpConfig,
    names: Arc<ContainerNames>,
}

impl HttpGuest {
    pub fn new(pre: ProxyPre<HttpState>, config: HttpConfig, names: Arc<ContainerNames>) -> Self {
        HttpGuest { pre, config, names }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Serves until Kill. Returns 0 after a graceful stop, 128+9 after SIGKILL, 1 when the
    /// server cannot start (its reason is written to the container's stderr).
    pub async fn serve(
        &self,
        spec: &ContainerSpec,
        stdio: &StdioPaths,
        usage: Arc<Usage>,
        mut kill: watch::Receiver<Option<Signal>>,
    ) -> ExitStatus {
        let (stdout, stdout_writer) = match SharedOutput::open("stdout", &stdio.stdout).await {
            Ok(opened) => opened,
            Err(e) => return ExitStatus::new(1, Some(e.to_string())),
        };
        let (stderr, stderr_writer) = match SharedOutput::open("stderr", &stdio.stderr).await {
            Ok(opened) => opened,
            Err(e) => return ExitStatus::new(1, Some(e.to_string())),
        };
        let threads = ServingThreads::new(self.config.threads, "spore-http");
        let status = match listen(self.config.port) {
            Ok(listener) => {
                let handler = Arc::new(RequestHandler::new(
                    self.pre.clone(),
                    self.config.clone(),
                    spec.clone(),
                    stdout,
                    stderr.clone(),
                    usage,
                    self.names.clone(),
                ));
                accept_until_killed(listener, handler, &threads, &self.config, &mut kill).await
            }
            Err(err) => ExitStatus::new(1, Some(err.to_string())),
        };
        if let Some(message) = &status.message
            && status.code != SIGKILL.exit_code()
        {
            stderr.write_line(message).await;
        }
        drop(stderr);
        finish_output([stdout_writer, stderr_writer]).await;
        status
    }
}

/// The server's port could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
struct ListenError {
    addr: SocketAddr,
    source: std::io::Error,
}

fn listen(port: u16) -> Result<TcpListener, ListenError> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let bind = || -> std::io::Result<TcpListener> {
        let socket = TcpSocket::new_v4()?;
        // Lets a restarted container bind while old connections sit in TIME_WAIT.
        socket.set_reuseaddr(true)?;
        socket.bind(addr)?;
        socket.listen(LISTEN_BACKLOG)
    };
    bind().map_err(|source| ListenError { addr, source })
}

async fn accept_until_killed(
    listener: TcpListener,
    handler: Arc<RequestHandler>,
    threads: &ServingThreads,
    config: &HttpConfig,
    kill: &mut watch::Receiver<Option<Signal>>,
) -> ExitStatus {
    let (draining, drain) = watch::channel(false);
    let mut connections = JoinSet::new();
    let gate = ConnectionGate::new(config.max_connections);
    let signal = loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match gate.admit().await {
                    Admission::Serve(place) => {
                        // The socket moves to the serving thread's own reactor.
                        let socket = match stream.into_std() {
                            Ok(socket) => socket,
                            Err(err) => {
                                tracing::debug!(%err, "an accepted connection could not be handed over");
                                continue;
                            }
                        };
                        // A thread that cannot be started leaves the connection on the
                        // shim's own runtime: served all the same.
                        let thread = match threads.next() {
                            Ok(thread) => thread,
                            Err(err) => {
                                tracing::warn!(%err, "starting an HTTP serving thread failed");
                                tokio::runtime::Handle::current()
                            }
                        };
                        let (handler, drain) = (handler.clone(), drain.clone());
                        connections.spawn_on(async move {
                            match TcpStream::from_std(socket) {
                                Ok(stream) => serve_connection(stream, handler, drain).await,
                                Err(err) => tracing::debug!(%err, "a connection could not be registered"),
                            }
                            drop(place);
                        }, &thread);
                    }
                    Admission::Refuse(slot) => {
                        connections.spawn(overload::refuse(stream, slot));
                    }
                },
                Err(err) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(%err, "accepting an HTTP connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            signal = first_signal(kill) => break signal,
        }
    };
    drop(listener);
    if signal == SIGKILL {
        handler.stop_guests();
        connections.abort_all();
        return ExitStatus::killed(SIGKILL);
    }
    tracing::debug!(%signal, "draining HTTP connections");
    draining.send_replace(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    let status = tokio::select! {
        finished = tokio::time::timeout(config.grace_period, drained) => {
            if finished.is_err() {
                tracing::warn!(grace_period = ?config.grace_period, "in-flight requests outlived the grace period; stopping them");
            }
            ExitStatus::new(0, None)
        }
        _ = sigkill(kill) => ExitStatus::killed(SIGKILL),
    };
    handler.stop_guests();
    if status.code == 0 {
        // Requests that outlived the grace period get their 503 written before their
        // connections go (aborting at once raced the serving threads writing it).
        let answered = async { while connections.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(STOPPED_ANSWER_WAIT, answered).await;
    }
    connections.abort_all();
    status
}

/// How long requests stopped at the end of the grace period have to write their 503.
const STOPPED_ANSWER_WAIT: Duration = Duration::from_millis(100);

async fn serve_connection(
    stream: TcpStream,
    handler: Arc<RequestHandler>,
    mut drain: watch::Receiver<bool>,
) {
    // Responses are written whole by hyper; waiting for more to coalesce only adds latency.
    let _ = stream.set_nodelay(true);
    let max_header_bytes = handler.config().max_header_bytes;
    let service = hyper::service::service_fn(move |request| {
        let handler = handler.clone();
        async move { Ok::<_, Infallible>(handler.handle(request).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_buf_size(max_header_bytes)
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = draining(&mut drain) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(err) = result {
        tracing::debug!(%err, "HTTP connection ended with an error");
    }
}

/// Resolves once the server starts draining (or goes away).
async fn draining(drain: &mut watch::Receiver<bool>) {
    let _ = drain.wait_for(|draining| *draining).await;
}

/// The first signal sent; never resolves if the sender goes away without one.
async fn first_signal(kill: &mut watch::Receiver<Option<Signal>>) -> Signal {
    let signal = kill.wait_for(Option::is_some).await.map(|signal| *signal);
    match signal {
        Ok(signal) => signal.unwrap_or(SIGKILL),
        Err(_) => std::future::pending().await,
    }
}

/// Resolves once SIGKILL is sent.
async fn sigkill(kill: &mut watch::Receiver<Option<Signal>>) {
    let killed = kill.wait_for(|s| *s == Some(SIGKILL)).await.is_ok();
    if !killed {
        std::future::pending::<()>().await;
    }
}

async fn finish_output(writers: [OutputWriter; 2]) {
    let finished = async {
        for writer in writers {
            writer.finish().await;
        }
    };
    if tokio::time::timeout(OUTPUT_FLUSH_TIMEOUT, finished)
        .await
        .is_err()
    {
        tracing::warn!("guest output was still queued when the container ended");
    }
}
