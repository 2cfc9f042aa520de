//! Faults the tests inject into a debug build of the shim, to check that Spore survives its own
//! bugs. Release builds have none of them: every function here is a no-op there.
//!
//! - `SPORE_FAULT=guest-panic` in a Wasm container's env: the task running its guest panics.

/// The container env variable that asks for a fault.
pub const FAULT_ENV: &str = "SPORE_FAULT";

/// Panics when a debug build runs a container whose env asks for `guest-panic`.
pub fn guest_task(env: &[(String, String)]) {
    if cfg!(debug_assertions)
        && env
            .iter()
            .any(|(k, v)| k == FAULT_ENV && v == "guest-panic")
    {
        panic!("fault injected by {FAULT_ENV}=guest-panic");
    }
}
