//! The shim's own logs: `tracing` records written to the `log` FIFO that containerd reads from
//! the shim's working directory and copies into its own log. The level is `warn` unless the
//! `SPORE_SHIM_LOG` environment variable (an `EnvFilter` directive such as `info` or
//! `spore_shim=debug`) or containerd's `-debug` flag says otherwise: logging on the request
//! path costs throughput.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

pub const LOG_ENV: &str = "SPORE_SHIM_LOG";
pub const DEFAULT_LEVEL: &str = "warn";

/// The filter directive in force: the environment's, else `debug` under `-debug`, else `warn`.
pub fn directive(env_value: Option<String>, debug: bool) -> String {
    match env_value.filter(|v| !v.trim().is_empty()) {
        Some(value) => value,
        None if debug => "debug".to_string(),
        None => DEFAULT_LEVEL.to_string(),
    }
}

/// Sends logs to `./log` (containerd's FIFO) when it exists, else to stderr.
pub fn init(debug: bool) {
    let filter = EnvFilter::try_new(directive(std::env::var(LOG_ENV).ok(), debug))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let result = match open_log_fifo() {
        Some(file) => builder.with_writer(Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    if let Err(err) = result {
        eprintln!("spore shim: logging already set up: {err}");
    }
}

fn open_log_fifo() -> Option<std::fs::File> {
    // Non-blocking open so a missing reader cannot hang the shim; then blocking writes, so
    // that a slow reader slows logging rather than losing lines.
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("log")
        .ok()?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&file);
    // SAFETY: `fd` is a valid open descriptor owned by `file`.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags >= 0 {
            libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
        }
    }
    Some(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warn_by_default_debug_on_flag_env_wins() {
        assert_eq!(directive(None, false), "warn");
        assert_eq!(directive(None, true), "debug");
        assert_eq!(directive(Some("info".into()), true), "info");
        assert_eq!(directive(Some("  ".into()), false), "warn");
    }
}
