//! One request: a fresh store and instance from the container's `ProxyPre`, run as its own
//! tokio task under the per-request deadline, and the guest's outcome turned into a response.
//!
//! - the guest's response: passed through (its body streams while the guest runs on);
//! - a trap or a guest that returns without answering: 500 (the trap goes to the container's
//!   stderr, the server goes on);
//! - past the deadline: the guest is interrupted at its next epoch tick and the client gets 504;
//! - a body over the limit: 413, whether announced by `content-length` or found while streaming.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::Instant;
use wasmtime::Store;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, Scheme};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpView};

use crate::host::cputime::CpuAccounted;
use crate::host::stats::Usage;
use crate::host::stdio::GuestStdio;
use crate::spec::ContainerSpec;
use crate::wasm::http::body::LimitedBody;
use crate::wasm::http::config::HttpConfig;
use crate::wasm::http::output::SharedOutput;
use crate::wasm::http::state::HttpState;
use crate::wasm::limits::{GuestLimits, MemoryBusy, MemoryLimitExceeded};
use crate::wasm::names::ContainerNames;
use crate::wasm::wasi::{Preopen, builder_with_preopens, preopens};

/// `Retry-After` (seconds) of a request answered 503 because the requests in flight hold the
/// container's memory or all its instance slots.
const BUSY_RETRY_AFTER: &str = "1";

/// Serves the requests of one container; shared by all its connections.
pub struct RequestHandler {
    pre: ProxyPre<HttpState>,
    config: HttpConfig,
    spec: ContainerSpec,
    /// The container's directories, listed once (`crate::wasm::wasi::preopens`).
    preopens: Vec<Preopen>,
    stdout: SharedOutput,
    stderr: SharedOutput,
    usage: Arc<Usage>,
    names: Arc<ContainerNames>,
    /// Raised when the container ends: running guests stop at their next epoch tick.
    stop: watch::Sender<bool>,
    /// The container's share of the instance pool: one permit per request in flight.
    in_flight: Arc<Semaphore>,
}

/// How a request's guest task ended.
enum GuestEnd {
    Returned,
    Trapped(wasmtime::Error),
    TimedOut,
    Stopped,
}

impl RequestHandler {
    pub fn new(
        pre: ProxyPre<HttpState>,
        config: HttpConfig,
        spec: ContainerSpec,
        stdout: SharedOutput,
        stderr: SharedOutput,
        usage: Arc<Usage>,
        names: Arc<ContainerNames>,
    ) -> Self {
        RequestHandler {
            pre,
            preopens: preopens(&spec),
            spec,
            stdout,
            stderr,
            usage,
            names,
            stop: watch::channel(false).0,
            in_flight: Arc::new(Semaphore::new(config.max_requests)),
            config,
        }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// Interrupts every guest still running (SIGKILL, or the end of the grace period).
    pub fn stop_guests(&self) {
        self.stop.send_replace(true);
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<HyperOutgoingBody> {
        crate::host::heap::note_activity();
        // hyper refuses a head that does not fit its read buffer (sized from the same limit);
        // one that arrived in a single read is measured here.
        if head_size(&request) > self.config.max_header_bytes {
            return plain(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        }
        let limit = self.config.max_body_bytes;
        if declared_length(request.headers()).is_some_and(|len| len > limit) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE);
        }
        // Beyond its share of the pool, the container answers at once rather than queueing.
        let Ok(slot) = self.in_flight.clone().try_acquire_owned() else {
            return busy();
        };
        let exceeded = Arc::new(AtomicBool::new(false));
        let what = format!("{} {}", request.method(), request.uri().path());
        let request = request.map(|body| LimitedBody::new(body, limit, exceeded.clone()));
        let response = self.run_guest(request, &what, slot).await;
        if exceeded.load(Ordering::Relaxed) {
            return plain(StatusCode::PAYLOAD_TOO_LARGE);
        }
        response
    }

    async fn run_guest(
        &self,
        request: Request<LimitedBody<Incoming>>,
        what: &str,
        slot: OwnedSemaphorePermit,
    ) -> Response<HyperOutgoingBody> {
        let (sender, receiver) = oneshot::channel();
        let prepared = self.new_store().and_then(|mut store| {
            let http = store.data_mut();
            let request = http.http().new_incoming_request(Scheme::Http, request)?;
            let out = http.http().new_response_outparam(sender)?;
            Ok((store, request, out))
        });
        let (mut store, request, out) = match prepared {
            Ok(prepared) => prepared,
            Err(err) => {
                tracing::warn!(err = %format!("{err:#}"), "cannot set up a request's store");
                return plain(StatusCode::INTERNAL_SERVER_ERROR);
            }
        };
        let pre = self.pre.clone();
        let deadline = Instant::now() + self.config.request_timeout;
        let mut stop = self.stop.subscribe();
        let guest = CpuAccounted::new(
            async move {
                let proxy = pre.instantiate_async(&mut store).await?;
                proxy
                    .wasi_http_incoming_handler()
                    .call_handle(&mut store, request, out)
                    .await
            },
            self.usage.clone(),
        );
        // Its own task, so that the guest can go on writing the response body after the head
        // is sent; the deadline covers the whole of it.
        let task = tokio::spawn(async move {
            // The slot is the guest's until its task ends, body included.
            let _slot = slot;
            tokio::select! {
                ended = tokio::time::timeout_at(deadline, guest) => match ended {
                    Ok(Ok(())) => GuestEnd::Returned,
                    Ok(Err(err)) => GuestEnd::Trapped(err),
                    Err(_) => GuestEnd::TimedOut,
                },
                _ = stopped(&mut stop) => GuestEnd::Stopped,
            }
        });
        match receiver.await {
            Ok(Ok(response)) => response,
            Ok(Err(code)) => {
                tracing::debug!(?code, "the guest answered with an error code");
                plain(status_for_error_code(&code))
            }
            Err(_) => match task.await {
                Ok(GuestEnd::TimedOut) => {
                    let line = format!(
                        "spore: {what}: interrupted after the request timeout of {} ms",
                        self.config.request_timeout.as_millis()
                    );
                    self.stderr.write_line(&line).await;
                    plain(StatusCode::GATEWAY_TIMEOUT)
                }
                Ok(GuestEnd::Trapped(err)) if err.downcast_ref::<MemoryBusy>().is_some() => {
                    // The request fits the limit, not beside the others in flight: try again.
                    busy()
                }
                Ok(GuestEnd::Trapped(err)) => {
                    let reason = match err.downcast_ref::<MemoryLimitExceeded>() {
                        Some(limit) => limit.to_string(),
                        None => format!("{err:#}"),
                    };
                    self.stderr
                        .write_line(&format!("spore: {what}: guest trapped: {reason}"))
                        .await;
                    plain(StatusCode::INTERNAL_SERVER_ERROR)
                }
                Ok(GuestEnd::Returned) => {
                    self.stderr
                        .write_line(&format!(
                            "spore: {what}: the guest returned without setting a response"
                        ))
                        .await;
                    plain(StatusCode::INTERNAL_SERVER_ERROR)
                }
                Ok(GuestEnd::Stopped) => plain(StatusCode::SERVICE_UNAVAILABLE),
                Err(err) => {
                    tracing::warn!(%err, "a request's guest task failed");
                    plain(StatusCode::INTERNAL_SERVER_ERROR)
                }
            },
        }
    }

    fn new_store(&self) -> wasmtime::Result<Store<HttpState>> {
        let no_stdio = GuestStdio {
            stdin: None,
            stdout: None,
            stderr: None,
            stderr_tail: None,
        };
        let mut builder = builder_with_preopens(&self.spec, &self.preopens, no_stdio)?;
        builder.stdout(self.stdout.clone());
        builder.stderr(self.stderr.clone());
        let state = HttpState {
            wasi: builder.build(),
            http: WasiHttpCtx::new(),
            table: crate::wasm::limits::handle_table(),
            limits: GuestLimits::new(self.usage.memory.clone()),
            names: self.names.clone(),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // Yield to the scheduler at every epoch tick: the deadline and Kill take effect there.
        store.epoch_deadline_async_yield_and_update(1);
        Ok(store)
    }
}

/// Resolves once the container stops its guests (or the handler goes away).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// About the size of the request head on the wire: the request line and every header line.
/// 503 with `Retry-After`: the container is busy; the same request can succeed soon.
fn busy() -> Response<HyperOutgoingBody> {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE);
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from_static(BUSY_RETRY_AFTER),
    );
    response
}

fn head_size<B>(request: &Request<B>) -> usize {
    let line = request.method().as_str().len()
        + request
            .uri()
            .path_and_query()
            .map_or(1, |p| p.as_str().len())
        + " HTTP/1.1\r\n".len()
        + 1;
    request.headers().iter().fold(line, |size, (name, value)| {
        size + name.as_str().len() + value.len() + ": \r\n".len()
    })
}

/// The request's `content-length`, when it has one that parses.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// The status for a guest that set its response to an error code: a failed upstream call
/// it passed on is the gateway's fault (502), anything else the server's (500).
fn status_for_error_code(code: &ErrorCode) -> StatusCode {
    match code {
        ErrorCode::HttpRequestBodySize(_) => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::ConnectionRefused
        | ErrorCode::ConnectionTerminated
        | ErrorCode::ConnectionTimeout
        | ErrorCode::DestinationNotFound
        | ErrorCode::DestinationUnavailable
        | ErrorCode::HttpResponseIncomplete => StatusCode::BAD_GATEWAY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A short text response the host makes itself.
fn plain(status: StatusCode) -> Response<HyperOutgoingBody> {
    let text = format!(
        "{} {}\n",
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    );
    let mut response = Response::new(
        Full::new(Bytes::from(text))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_length_reads_content_length() {
        let mut headers = HeaderMap::new();
        assert_eq!(declared_length(&headers), None);
        headers.insert(header::CONTENT_LENGTH, "42".parse().expect("value"));
        assert_eq!(declared_length(&headers), Some(42));
        headers.insert(header::CONTENT_LENGTH, "x".parse().expect("value"));
        assert_eq!(declared_length(&headers), None);
    }

    #[test]
    fn head_size_counts_the_request_line_and_headers() {
        let request = Request::get("/abc?x=1")
            .header("x-a", "12345")
            .body(())
            .expect("request");
        // "GET /abc?x=1 HTTP/1.1\r\n" is 23 bytes, "x-a: 12345\r\n" 12.
        assert_eq!(head_size(&request), 23 + 12);
    }

    #[test]
    fn upstream_failures_are_bad_gateway() {
        assert_eq!(
            status_for_error_code(&ErrorCode::ConnectionRefused),
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            status_for_error_code(&ErrorCode::InternalError(None)),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn host_responses_carry_their_status() {
        let response = plain(StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(
            response
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.as_bytes()),
            Some(&b"text/plain; charset=utf-8"[..])
        );
    }
}
