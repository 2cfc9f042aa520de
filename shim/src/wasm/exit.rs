//! How a guest's end becomes a container exit status.
//!
//! - `wasi:cli/run` returning `ok` is 0 and `err` is 1; `wasi:cli/exit` gives its code (WASI 0.2
//!   carries only success or failure; wasmtime 48 does not link the unstable `exit-with-code`);
//!   preview1's
//!   `proc_exit(n)` gives `n`.
//! - A trap ends the container with [`TRAP_EXIT_CODE`] (128 + SIGABRT, what a native program
//!   that aborts reports) and the trap's message.
//! - A Kill ends it with 128 + the signal, as for a native process killed by that signal.

use std::time::SystemTime;

use wasmtime_wasi::I32Exit;

use crate::signal::Signal;
use crate::wasm::limits::MemoryLimitExceeded;

/// Exit code of a guest that trapped.
pub const TRAP_EXIT_CODE: u32 = 134;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: u32,
    pub at: SystemTime,
    /// Why the guest ended, when it did not end by itself: the trap or the signal.
    pub message: Option<String>,
}

impl ExitStatus {
    pub fn new(code: u32, message: Option<String>) -> Self {
        ExitStatus {
            code,
            at: SystemTime::now(),
            message,
        }
    }

    pub fn killed(signal: Signal) -> Self {
        ExitStatus::new(
            signal.exit_code(),
            Some(format!("killed by signal {signal}")),
        )
    }

    /// The status of a guest whose entry point returned `result`: `Ok(true)` for success,
    /// `Ok(false)` for a `wasi:cli/run` that returned `err`, or the error it raised.
    pub fn from_guest(result: wasmtime::Result<bool>) -> Self {
        match result {
            Ok(true) => ExitStatus::new(0, None),
            Ok(false) => ExitStatus::new(1, None),
            Err(err) => {
                if let Some(exit) = err.downcast_ref::<I32Exit>() {
                    return ExitStatus::new(exit.0 as u32, None);
                }
                let reason = if let Some(limit) = err.downcast_ref::<MemoryLimitExceeded>() {
                    limit.to_string()
                } else {
                    format!("{err:?}")
                };
                ExitStatus::new(TRAP_EXIT_CODE, Some(format!("guest trapped: {reason}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_failure_and_exit_codes() {
        assert_eq!(ExitStatus::from_guest(Ok(true)).code, 0);
        assert_eq!(ExitStatus::from_guest(Ok(false)).code, 1);
        let exit3 = ExitStatus::from_guest(Err(I32Exit(3).into()));
        assert_eq!((exit3.code, exit3.message), (3, None));
    }

    #[test]
    fn traps_carry_their_message() {
        let status = ExitStatus::from_guest(Err(wasmtime::Trap::UnreachableCodeReached.into()));
        assert_eq!(status.code, TRAP_EXIT_CODE);
        let message = status.message.expect("message");
        assert!(message.starts_with("guest trapped:"), "{message}");
        assert!(message.contains("unreachable"), "{message}");
    }

    #[test]
    fn memory_limit_trap_says_so() {
        let err = MemoryLimitExceeded {
            limit: 10,
            requested: 20,
        };
        let status = ExitStatus::from_guest(Err(err.into()));
        assert!(
            status
                .message
                .expect("message")
                .contains("memory limit exceeded")
        );
    }

    #[test]
    fn killed_is_128_plus_signal() {
        assert_eq!(ExitStatus::killed(Signal::KILL).code, 137);
        assert_eq!(ExitStatus::killed(Signal::TERM).code, 143);
    }
}
