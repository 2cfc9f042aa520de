//! Faults the tests inject into a debug build of the shim, to check that Spore survives its own
//! bugs. Release builds have none of them: every function here is a no-op there.
//!
//! - `SPORE_FAULT=guest-panic` in a Wasm container's env: the task running its guest panics.
//! - `SPORE_FAULT=create-panic` in a container's env: handling its Create panics.
//! - `SPORE_FAULT=slow-kill-answer` in the shim's own environment (containerd's, which it
//!   inherits): a native process's Kill is answered 500 ms after its signal was sent, which
//!   makes the race between the Kill's answer and the process's exit come out the bad way.
//! - `SPORE_FAULT=slow-exit` in the shim's own environment: the serving process lingers 500 ms
//!   after its last Shutdown was answered, as a busy node may make it.
//! - `SPORE_FAULT=fork-refused` in the shim's own environment: `start` finds the fork server
//!   refusing, as when it cannot be started, and executes the binary instead.

/// The container env variable that asks for a fault.
pub const FAULT_ENV: &str = "SPORE_FAULT";

/// Whether a debug build's own environment (containerd's, which the shim inherits) asks for
/// `fault`.
fn shim_asks(fault: &str) -> bool {
    cfg!(debug_assertions) && std::env::var(FAULT_ENV).is_ok_and(|v| v == fault)
}

/// Whether a debug build's container env (`KEY`, `VALUE` pairs) asks for `fault`.
fn container_asks(env: &[(String, String)], fault: &str) -> bool {
    cfg!(debug_assertions) && env.iter().any(|(k, v)| k == FAULT_ENV && v == fault)
}

/// Panics when a debug build runs a container whose env asks for `guest-panic`.
pub fn guest_task(env: &[(String, String)]) {
    if container_asks(env, "guest-panic") {
        panic!("fault injected by {FAULT_ENV}=guest-panic");
    }
}

/// Panics when a debug build creates a container whose env asks for `create-panic`.
pub fn create_request(env: &[(String, String)]) {
    if container_asks(env, "create-panic") {
        panic!("fault injected by {FAULT_ENV}=create-panic");
    }
}

/// Delays a Kill's answer when a debug build's own environment asks for `slow-kill-answer`.
pub async fn kill_answer() {
    if shim_asks("slow-kill-answer") {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Delays the serving process's end when a debug build's own environment asks for `slow-exit`.
pub async fn exit_delay() {
    if shim_asks("slow-exit") {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Whether a debug build's own environment asks the fork server to refuse (`fork-refused`).
pub fn fork_refused() -> bool {
    shim_asks("fork-refused")
}
