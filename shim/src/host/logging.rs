//! The shim's own logs: `tracing` records written to the `log` FIFO that containerd reads from
//! the shim's working directory and copies into its own log. The level is `warn` unless the
//! `SPORE_SHIM_LOG` environment variable (an `EnvFilter` directive such as `info` or
//! `spore_shim=debug`) or containerd's `-debug` flag says otherwise: logging on the request
//! path costs throughput. At `debug` every span's start is logged (`new`), and its close with its
//! time (`time.busy`, `time.idle`): how long the shim took for each task request (`create`,
//! `start`, ...) and each container's steps, apart from containerd's time around them
//! (`docs/troubleshooting.md`); a span that started and never closed is where a request waits.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{DefaultFields, FmtSpan, Format};
use tracing_subscriber::fmt::{MakeWriter, Subscriber};
use tracing_subscriber::util::SubscriberInitExt;

/// The shim's subscriber writing to `W`.
type ShimSubscriber<W> = Subscriber<DefaultFields, Format, EnvFilter, W>;

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
    let result = match open_log_fifo() {
        Some(file) => subscriber(filter, Mutex::new(file)).try_init(),
        None => subscriber(filter, std::io::stderr).try_init(),
    };
    if let Err(err) = result {
        eprintln!("spore shim: logging already set up: {err}");
    }
}

/// The shim's log format: plain text, no targets, a line when a span starts and one with its time
/// when it closes.
fn subscriber<W>(filter: EnvFilter, writer: W) -> ShimSubscriber<W>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false)
        .with_span_events(FmtSpan::NEW | FmtSpan::CLOSE)
        .with_writer(writer)
        .finish()
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

    /// Lines written to a shared buffer, as the log FIFO would receive them.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'w> MakeWriter<'w> for Lines {
        type Writer = Lines;
        fn make_writer(&'w self) -> Lines {
            self.clone()
        }
    }

    fn logged(level: &str, during: impl FnOnce()) -> String {
        let lines = Lines::default();
        let subscriber = subscriber(EnvFilter::new(level), lines.clone());
        tracing::subscriber::with_default(subscriber, during);
        let bytes = lines.0.lock().expect("lock").clone();
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn at_debug_a_closing_span_says_how_long_it_took() {
        let text = logged("debug", || {
            let _create = tracing::debug_span!("create", id = "c1").entered();
            std::thread::sleep(std::time::Duration::from_millis(2));
        });
        let close = text
            .lines()
            .find(|line| line.contains("create{id=\"c1\"}") && line.contains("close"))
            .unwrap_or_else(|| panic!("no close line in {text:?}"));
        assert!(
            close.contains("time.busy=") && close.contains("time.idle="),
            "{close}"
        );
    }

    #[test]
    fn at_debug_a_span_that_never_closes_is_seen_starting() {
        let text = logged("debug", || {
            let create = tracing::debug_span!("create", id = "c1");
            std::mem::forget(create.entered());
        });
        assert!(
            text.lines()
                .any(|line| line.contains("create{id=\"c1\"}") && line.contains("new")),
            "{text:?}"
        );
        assert!(!text.contains("close"), "{text:?}");
    }

    #[test]
    fn at_warn_debug_spans_log_nothing() {
        let text = logged("warn", || {
            let _create = tracing::debug_span!("create", id = "c1").entered();
        });
        assert_eq!(text, "");
    }
}
