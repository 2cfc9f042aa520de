//! Serving components that export `wasi:http/incoming-handler`: an HTTP/1.1 server per
//! container (hyper, keep-alive) on `0.0.0.0:$PORT`, a fresh instance per request from an
//! `InstancePre`, as `wasmtime serve` does. See `docs/http.md` for the design and the numbers.
//!
//! - [`config`]: the container env variables that tune it (port, timeout, sizes, grace period);
//! - [`server`]: listening, connections, and the container's end on Kill; [`overload`]: the
//!   connection cap (requests in flight are capped in [`request`]); [`serving_threads`]: the
//!   single-threaded runtimes the connections are served on;
//! - [`request`]: one request's store, instance, deadline and response;
//! - [`state`]: the store data and the linker; [`output`]: the container's shared stdout/stderr;
//!   [`body`]: the request body size limit.

pub mod body;
pub mod config;
pub mod output;
pub mod overload;
pub mod request;
pub mod server;
pub mod serving_threads;
pub mod state;

pub use config::{HttpConfig, HttpConfigError};
pub use server::HttpGuest;
pub use state::{HttpState, linker};
