//! The global allocator of musl builds (the node-installer image's static shim): mimalloc.
//!
//! musl's own malloc takes one lock for every thread, and the shim allocates on every request
//! from several tokio workers. Measured with `hack/bench-http.sh`'s method (hello-http, wrk 10 s
//! x 3, medians, 2 cores): musl's malloc served 0.85x, 0.67x and 0.72x the glibc build's
//! requests at 1, 16 and 50 connections. glibc builds keep glibc's allocator.

#[cfg(target_env = "musl")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
