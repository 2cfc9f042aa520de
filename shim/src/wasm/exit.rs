//! How a guest's end becomes a container exit status, and the short message the kubelet shows
//! for an abnormal end (`kubectl describe pod`: the container's termination message).
//!
//! - `wasi:cli/run` returning `ok` is 0 and `err` is 1; `wasi:cli/exit` gives its code (WASI 0.2
//!   carries only success or failure; wasmtime 48 does not link the unstable `exit-with-code`);
//!   preview1's `proc_exit(n)` gives `n`.
//! - A trap ends the container with [`TRAP_EXIT_CODE`] (128 + SIGABRT, what a native program
//!   that aborts reports): the trap's kind and the innermost Wasm frames, with function names
//!   when the module has a name section.
//! - A Kill ends it with 128 + the signal, as for a native process killed by that signal.

use std::fmt::Write;
use std::time::SystemTime;

use wasmtime_wasi::I32Exit;

use crate::signal::Signal;
use crate::wasm::limits::{HANDLES_FULL, MAX_GUEST_HANDLES, MemoryLimitExceeded};

/// Exit code of a guest that trapped.
pub const TRAP_EXIT_CODE: u32 = 134;
/// Wasm frames a trap's message shows, innermost first.
const TRAP_FRAMES: usize = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: u32,
    pub at: SystemTime,
    /// Why the guest ended, when it did not end by itself with 0: the trap, the signal, the
    /// exit code. It goes to the container's stderr (traps), the shim's log and the
    /// termination message.
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
            Ok(false) => ExitStatus::new(
                1,
                Some("the guest's wasi:cli/run returned an error (exit code 1)".into()),
            ),
            Err(err) => {
                if let Some(exit) = err.downcast_ref::<I32Exit>() {
                    let code = exit.0 as u32;
                    let message = (code != 0).then(|| format!("the guest exited with code {code}"));
                    return ExitStatus::new(code, message);
                }
                ExitStatus::new(TRAP_EXIT_CODE, Some(trap_message(&err)))
            }
        }
    }

    /// The termination message the kubelet shows: `None` for a normal exit.
    pub fn termination_message(&self) -> Option<&str> {
        match self.code {
            0 => None,
            _ => self.message.as_deref(),
        }
    }
}

/// `guest trapped: <what>` and, for a Wasm trap, the innermost frames.
pub fn trap_message(err: &wasmtime::Error) -> String {
    if let Some(limit) = err.downcast_ref::<MemoryLimitExceeded>() {
        return format!("guest trapped: {limit}");
    }
    let what = match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => {
            let text = trap.to_string();
            text.strip_prefix("wasm trap: ")
                .unwrap_or(&text)
                .to_string()
        }
        None => err.root_cause().to_string(),
    };
    if what == HANDLES_FULL {
        return format!(
            "guest trapped: it held {MAX_GUEST_HANDLES} handles at once (open files, sockets, \
             streams), Spore's limit per instance"
        );
    }
    let mut message = format!("guest trapped: {what}");
    if let Some(backtrace) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = backtrace
            .frames()
            .iter()
            .map(|frame| match frame.func_name() {
                Some(name) => format!("{:#}", rustc_demangle::demangle(name)),
                None => format!("<function {}>", frame.func_index()),
            })
            .collect();
        // The guest's own frames: the panic and abort machinery of its language's runtime
        // says nothing about where it failed.
        let own: Vec<&String> = frames.iter().filter(|f| !is_runtime_frame(f)).collect();
        let shown: Vec<&String> = if own.is_empty() {
            frames.iter().collect()
        } else {
            own
        };
        for frame in shown.into_iter().take(TRAP_FRAMES) {
            let _ = write!(message, "\n  at {frame}");
        }
    }
    message
}

/// Frames of a language runtime's panic, abort and formatting machinery.
fn is_runtime_frame(name: &str) -> bool {
    const RUNTIME: [&str; 9] = [
        "std::",
        "core::",
        "alloc::",
        "<std::",
        "<core::",
        "<alloc::",
        "__rust",
        "rust_panic",
        "panic_abort",
    ];
    name == "abort" || RUNTIME.iter().any(|prefix| name.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_failure_and_exit_codes() {
        assert_eq!(ExitStatus::from_guest(Ok(true)).code, 0);
        assert_eq!(ExitStatus::from_guest(Ok(true)).termination_message(), None);
        let failed = ExitStatus::from_guest(Ok(false));
        assert_eq!(failed.code, 1);
        assert!(
            failed
                .termination_message()
                .is_some_and(|m| m.contains("returned an error"))
        );
        let exit3 = ExitStatus::from_guest(Err(I32Exit(3).into()));
        assert_eq!(exit3.code, 3);
        assert_eq!(
            exit3.termination_message(),
            Some("the guest exited with code 3")
        );
        let exit0 = ExitStatus::from_guest(Err(I32Exit(0).into()));
        assert_eq!((exit0.code, exit0.termination_message()), (0, None));
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
    fn panic_machinery_is_left_out_of_the_frames() {
        assert!(is_runtime_frame("std::panicking::begin_panic_handler"));
        assert!(is_runtime_frame(
            "<core::fmt::Arguments as core::fmt::Display>::fmt"
        ));
        assert!(is_runtime_frame("abort"));
        assert!(!is_runtime_frame("trap::main"));
        assert!(!is_runtime_frame("my_app::handler"));
    }

    #[test]
    fn memory_limit_trap_says_so() {
        let err = MemoryLimitExceeded {
            limit: 10,
            requested: 20,
        };
        let status = ExitStatus::from_guest(Err(err.into()));
        assert_eq!(
            status.message.expect("message"),
            "guest trapped: memory limit exceeded: the container's memory limit is 10 bytes and the guest asked for 20 bytes of linear memory"
        );
    }

    #[test]
    fn killed_is_128_plus_signal() {
        assert_eq!(ExitStatus::killed(Signal::KILL).code, 137);
        assert_eq!(ExitStatus::killed(Signal::TERM).code, 143);
        assert_eq!(
            ExitStatus::killed(Signal::TERM).termination_message(),
            Some("killed by signal 15")
        );
    }
}
