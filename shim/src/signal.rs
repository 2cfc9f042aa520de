//! A signal number from a Kill request, checked once: 1 to 64 (Linux's standard and real-time
//! signals), so that `128 + signal` exit codes stay within 129-192 and nothing overflows.

use crate::error::ShimError;

/// The highest signal number on Linux (`SIGRTMAX`).
pub const MAX_SIGNAL: u32 = 64;

/// Signals whose default action does not end a process: a Kill with one of them leaves a Wasm
/// guest running, as it would a native process without a handler.
const IGNORED_BY_DEFAULT: [u32; 4] = [
    libc::SIGCHLD as u32,
    libc::SIGCONT as u32,
    libc::SIGURG as u32,
    libc::SIGWINCH as u32,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signal(u32);

impl Signal {
    pub const KILL: Signal = Signal(libc::SIGKILL as u32);
    pub const TERM: Signal = Signal(libc::SIGTERM as u32);

    /// The signal of a Kill request. 0 is accepted (it only asks whether the process exists).
    pub fn from_request(number: u32) -> Result<Signal, ShimError> {
        if number > MAX_SIGNAL {
            return Err(ShimError::InvalidArgument(format!(
                "signal {number} is not a signal: Linux signals are 1 to {MAX_SIGNAL}"
            )));
        }
        Ok(Signal(number))
    }

    pub fn number(self) -> u32 {
        self.0
    }

    /// Whether delivering it only checks that the process exists (signal 0).
    pub fn is_probe(self) -> bool {
        self.0 == 0
    }

    /// Whether a process without a handler goes on running when it gets this signal.
    pub fn leaves_running(self) -> bool {
        self.is_probe() || IGNORED_BY_DEFAULT.contains(&self.0)
    }

    /// The exit code of a process this signal ended: 128 + the signal.
    pub fn exit_code(self) -> u32 {
        128 + self.0
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_number_up_to_64_is_a_signal_and_no_other() {
        for n in 0..=MAX_SIGNAL {
            let signal = Signal::from_request(n).expect("a signal");
            assert!(signal.exit_code() <= 255);
        }
        for n in [65, 1000, u32::MAX] {
            let err = Signal::from_request(n).expect_err("not a signal");
            assert!(matches!(err, ShimError::InvalidArgument(_)), "{err}");
            assert!(err.to_string().contains("not a signal"), "{err}");
        }
    }

    #[test]
    fn kill_and_term_end_a_process_winch_does_not() {
        assert_eq!(Signal::KILL.exit_code(), 137);
        assert_eq!(Signal::TERM.exit_code(), 143);
        assert!(!Signal::KILL.leaves_running());
        assert!(Signal::from_request(28).expect("winch").leaves_running());
        assert!(Signal::from_request(0).expect("probe").is_probe());
    }
}
