//! How an HTTP container is served, read from the container's environment (the pod spec's `env`)
//! at task Create, so that a bad value fails Create with a message naming the variable.

use std::time::Duration;

/// The port variable Kubernetes users already set (Knative, Cloud Run and `wasmtime serve`
/// conventions).
pub const PORT_ENV: &str = "PORT";
/// Milliseconds a request may run before its guest is interrupted and the client gets 504.
pub const REQUEST_TIMEOUT_ENV: &str = "SPORE_HTTP_REQUEST_TIMEOUT_MS";
/// Largest request body, in bytes; a larger one gets 413.
pub const MAX_BODY_ENV: &str = "SPORE_HTTP_MAX_BODY_BYTES";
/// Largest request head (request line plus headers), in bytes; a larger one gets 431.
pub const MAX_HEADER_ENV: &str = "SPORE_HTTP_MAX_HEADER_BYTES";
/// Milliseconds in-flight requests may take to finish after SIGTERM.
pub const GRACE_PERIOD_ENV: &str = "SPORE_HTTP_GRACE_PERIOD_MS";
/// Open connections the container serves at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS_ENV: &str = "SPORE_HTTP_MAX_CONNECTIONS";
/// Requests the container runs at once (its share of the pod's instance pool); more are
/// answered 503 with `Retry-After`.
pub const MAX_REQUESTS_ENV: &str = "SPORE_HTTP_MAX_REQUESTS_IN_FLIGHT";
/// Threads serving the container's connections (`crate::wasm::http::serving_threads`).
pub const THREADS_ENV: &str = "SPORE_HTTP_THREADS";

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_BODY_BYTES: u64 = 16 * 1024 * 1024;
pub const DEFAULT_MAX_HEADER_BYTES: usize = 64 * 1024;
pub const DEFAULT_GRACE_PERIOD: Duration = Duration::from_secs(30);
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;
/// Half the shim's instance pool ([`crate::wasm::engine::POOL_INSTANCES`]): one busy container
/// cannot take the slots its neighbours in the pod need.
pub const DEFAULT_MAX_REQUESTS: usize = crate::wasm::engine::POOL_INSTANCES as usize / 2;
/// hyper's HTTP/1 reader cannot work with a smaller buffer than this.
pub const MIN_MAX_HEADER_BYTES: usize = 8192;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub port: u16,
    pub request_timeout: Duration,
    pub max_body_bytes: u64,
    pub max_header_bytes: usize,
    pub grace_period: Duration,
    pub max_connections: usize,
    pub max_requests: usize,
    /// Default: the CPUs the shim may run on (`std::thread::available_parallelism`, which
    /// follows the affinity mask and the cgroup's CPU quota).
    pub threads: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            port: DEFAULT_PORT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            grace_period: DEFAULT_GRACE_PERIOD,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_requests: DEFAULT_MAX_REQUESTS,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpConfigError {
    #[error("the container env {name}={value:?} is not a valid {what}")]
    NotANumber {
        name: &'static str,
        value: String,
        what: &'static str,
    },
    #[error("the container env {name}={value} is out of range: {why}")]
    OutOfRange {
        name: &'static str,
        value: String,
        why: &'static str,
    },
}

impl HttpConfig {
    /// Reads the configuration from a container's env (later entries win, as in a process
    /// environment); unset variables keep their defaults.
    pub fn from_env(env: &[(String, String)]) -> Result<Self, HttpConfigError> {
        let lookup = |name: &str| {
            env.iter()
                .rev()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.trim().to_string())
        };
        let mut config = HttpConfig::default();
        if let Some(value) = lookup(PORT_ENV) {
            let port: u16 = parse(PORT_ENV, &value, "TCP port (1-65535)")?;
            if port == 0 {
                return Err(HttpConfigError::OutOfRange {
                    name: PORT_ENV,
                    value,
                    why: "a server needs a fixed port, 1-65535",
                });
            }
            config.port = port;
        }
        if let Some(value) = lookup(REQUEST_TIMEOUT_ENV) {
            let ms: u64 = parse(REQUEST_TIMEOUT_ENV, &value, "number of milliseconds")?;
            if ms == 0 {
                return Err(HttpConfigError::OutOfRange {
                    name: REQUEST_TIMEOUT_ENV,
                    value,
                    why: "a request needs more than 0 ms",
                });
            }
            config.request_timeout = Duration::from_millis(ms);
        }
        if let Some(value) = lookup(MAX_BODY_ENV) {
            config.max_body_bytes = parse(MAX_BODY_ENV, &value, "number of bytes")?;
        }
        if let Some(value) = lookup(MAX_HEADER_ENV) {
            let bytes: usize = parse(MAX_HEADER_ENV, &value, "number of bytes")?;
            if bytes < MIN_MAX_HEADER_BYTES {
                return Err(HttpConfigError::OutOfRange {
                    name: MAX_HEADER_ENV,
                    value,
                    why: "the HTTP/1 reader needs at least 8192 bytes",
                });
            }
            config.max_header_bytes = bytes;
        }
        if let Some(value) = lookup(GRACE_PERIOD_ENV) {
            let ms: u64 = parse(GRACE_PERIOD_ENV, &value, "number of milliseconds")?;
            config.grace_period = Duration::from_millis(ms);
        }
        if let Some(value) = lookup(MAX_CONNECTIONS_ENV) {
            config.max_connections =
                at_least_one(MAX_CONNECTIONS_ENV, value, "number of connections")?;
        }
        if let Some(value) = lookup(MAX_REQUESTS_ENV) {
            config.max_requests = at_least_one(MAX_REQUESTS_ENV, value, "number of requests")?;
        }
        if let Some(value) = lookup(THREADS_ENV) {
            config.threads = at_least_one(THREADS_ENV, value, "number of threads")?;
        }
        Ok(config)
    }
}

fn at_least_one(
    name: &'static str,
    value: String,
    what: &'static str,
) -> Result<usize, HttpConfigError> {
    let n: usize = parse(name, &value, what)?;
    if n == 0 {
        return Err(HttpConfigError::OutOfRange {
            name,
            value,
            why: "at least 1 is needed to serve anything",
        });
    }
    Ok(n)
}

fn parse<T: std::str::FromStr>(
    name: &'static str,
    value: &str,
    what: &'static str,
) -> Result<T, HttpConfigError> {
    value.parse().map_err(|_| HttpConfigError::NotANumber {
        name,
        value: value.to_string(),
        what,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let config = HttpConfig::from_env(&env(&[("HOME", "/")])).expect("defaults");
        assert_eq!(config, HttpConfig::default());
        assert_eq!(config.port, 8080);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
    }

    #[test]
    fn every_variable_is_read_and_the_last_entry_wins() {
        let config = HttpConfig::from_env(&env(&[
            ("PORT", "9000"),
            ("PORT", "9001"),
            ("SPORE_HTTP_REQUEST_TIMEOUT_MS", "1500"),
            ("SPORE_HTTP_MAX_BODY_BYTES", "1024"),
            ("SPORE_HTTP_MAX_HEADER_BYTES", "16384"),
            ("SPORE_HTTP_GRACE_PERIOD_MS", "0"),
            ("SPORE_HTTP_MAX_CONNECTIONS", "64"),
            ("SPORE_HTTP_MAX_REQUESTS_IN_FLIGHT", "8"),
            ("SPORE_HTTP_THREADS", "3"),
        ]))
        .expect("valid");
        assert_eq!(
            config,
            HttpConfig {
                port: 9001,
                request_timeout: Duration::from_millis(1500),
                max_body_bytes: 1024,
                max_header_bytes: 16384,
                grace_period: Duration::ZERO,
                max_connections: 64,
                max_requests: 8,
                threads: 3,
            }
        );
    }

    #[test]
    fn caps_of_zero_are_refused_by_name() {
        for name in [MAX_CONNECTIONS_ENV, MAX_REQUESTS_ENV, THREADS_ENV] {
            let err = HttpConfig::from_env(&env(&[(name, "0")])).expect_err("zero");
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = HttpConfig::from_env(&env(&[("PORT", "http")])).expect_err("not a port");
        assert_eq!(
            err.to_string(),
            "the container env PORT=\"http\" is not a valid TCP port (1-65535)"
        );
        let err = HttpConfig::from_env(&env(&[("PORT", "70000")])).expect_err("too big");
        assert!(matches!(
            err,
            HttpConfigError::NotANumber { name: "PORT", .. }
        ));
        let err = HttpConfig::from_env(&env(&[("PORT", "0")])).expect_err("zero");
        assert!(matches!(
            err,
            HttpConfigError::OutOfRange { name: "PORT", .. }
        ));
        let err = HttpConfig::from_env(&env(&[("SPORE_HTTP_REQUEST_TIMEOUT_MS", "0")]))
            .expect_err("zero timeout");
        assert!(
            err.to_string().contains("SPORE_HTTP_REQUEST_TIMEOUT_MS=0"),
            "{err}"
        );
        let err = HttpConfig::from_env(&env(&[("SPORE_HTTP_MAX_HEADER_BYTES", "100")]))
            .expect_err("too small");
        assert!(err.to_string().contains("at least 8192"), "{err}");
        let err = HttpConfig::from_env(&env(&[("SPORE_HTTP_MAX_BODY_BYTES", "-1")]))
            .expect_err("negative");
        assert!(
            err.to_string().contains("SPORE_HTTP_MAX_BODY_BYTES"),
            "{err}"
        );
    }
}
