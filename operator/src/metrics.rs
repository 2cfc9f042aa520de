//! Prometheus metrics of the reconciler, and the small HTTP server that serves them next to
//! `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Error;

/// Label of the failure counter: what kind of error ended the reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// Short error kind, e.g. `kube`.
    pub error: String,
}

/// The reconciler's metrics.
pub struct Metrics {
    registry: Registry,
    /// Reconciles started.
    pub reconciles: Counter,
    /// Reconciles that ended in an error, by error kind.
    pub failures: Family<ErrorLabels, Counter>,
    /// Reconciles that found a spec that cannot work.
    pub spec_errors: Counter,
    /// Time a reconcile took.
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("spore_operator");
        let reconciles = Counter::default();
        let failures = Family::<ErrorLabels, Counter>::default();
        let spec_errors = Counter::default();
        let duration = Histogram::new(exponential_buckets(0.005, 2.0, 12));
        registry.register(
            "reconciles",
            "WasmApp reconciles started",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_failures",
            "WasmApp reconciles that failed, by error kind",
            failures.clone(),
        );
        registry.register(
            "spec_errors",
            "WasmApp reconciles that found a spec that cannot work",
            spec_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time a WasmApp reconcile took",
            duration.clone(),
        );
        Metrics {
            registry,
            reconciles,
            failures,
            spec_errors,
            duration,
        }
    }
}

impl Metrics {
    /// Counts a failed reconcile.
    pub fn record_failure(&self, error: &Error) {
        self.failures
            .get_or_create(&ErrorLabels {
                error: error.metric_label().to_string(),
            })
            .inc();
    }

    /// Records one reconcile's duration.
    pub fn observe_duration(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// What the health endpoints report.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
}

impl Health {
    /// Marks the operator ready (it reached the API server and is leading or standing by).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether `/readyz` answers 200.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct ServerState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// The router: `/metrics`, `/healthz`, `/readyz`.
pub fn router(metrics: Arc<Metrics>, health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(serve_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(serve_readyz))
        .with_state(ServerState { metrics, health })
}

async fn serve_metrics(State(state): State<ServerState>) -> impl IntoResponse {
    match state.metrics.render() {
        Ok(body) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "metrics encoding failed").into_response(),
    }
}

async fn serve_readyz(State(state): State<ServerState>) -> impl IntoResponse {
    if state.health.is_ready() {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// Serves the router on `addr` until `shutdown` completes.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::MetricsServer { addr, source })?;
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    axum::serve(listener, router(metrics, health))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::MetricsServer { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_path(addr: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        response
    }

    #[test]
    fn renders_counters_and_histogram() {
        let metrics = Metrics::default();
        metrics.reconciles.inc();
        metrics.reconciles.inc();
        metrics.spec_errors.inc();
        metrics.record_failure(&Error::MissingNamespace("x".into()));
        metrics.observe_duration(Duration::from_millis(20));
        let text = metrics.render().expect("render");
        assert!(text.contains("spore_operator_reconciles_total 2"), "{text}");
        assert!(
            text.contains("spore_operator_spec_errors_total 1"),
            "{text}"
        );
        assert!(
            text.contains("spore_operator_reconcile_failures_total{error=\"missing_namespace\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("spore_operator_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn serves_health_readiness_and_metrics() {
        let metrics = Arc::new(Metrics::default());
        metrics.reconciles.inc();
        let health = Arc::new(Health::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = router(metrics, health.clone());
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        assert!(get_path(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get_path(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        health.set_ready(true);
        assert!(get_path(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        let metrics_response = get_path(addr, "/metrics").await;
        assert!(metrics_response.starts_with("HTTP/1.1 200"));
        assert!(metrics_response.contains("spore_operator_reconciles_total 1"));
        assert!(get_path(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        server.abort();
    }
}
