//! A panic in the serving process goes to the shim's log.
//!
//! Once the ready line is out, the shim's stderr is `/dev/null`: the default hook's message
//! would be lost, and a panic in a request's task looks from containerd like a request that is
//! never answered. The hook installed here logs the panic (thread, location, message and a
//! backtrace) as an error in the shim's log, which containerd copies into its own, then runs
//! the hook it replaced.

use std::any::Any;
use std::backtrace::Backtrace;
use std::panic::PanicHookInfo;

/// Installs the logging hook in front of the current one.
pub fn install() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(
            thread = std::thread::current().name().unwrap_or("unnamed"),
            location = %location(info),
            backtrace = %Backtrace::force_capture(),
            "panic: {}",
            message(info)
        );
        previous(info);
    }));
}

/// The panic's message.
fn message(info: &PanicHookInfo<'_>) -> String {
    payload_text(info.payload())
}

/// A panic's payload as text when it is a string (as `panic!` and `expect` make it).
pub fn payload_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not a string)".to_string())
}

fn location(info: &PanicHookInfo<'_>) -> String {
    info.location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_hook_sees_the_message_and_location_of_a_panic() {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let record = seen.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut seen) = record.lock() {
                seen.push(format!(
                    "{} at {}",
                    super::message(info),
                    super::location(info)
                ));
            }
        }));
        let joined = std::thread::spawn(|| panic!("the answer is {}", 42)).join();
        std::panic::set_hook(previous);
        assert!(joined.is_err());
        let seen = seen.lock().expect("lock").clone();
        assert!(
            seen.iter()
                .any(|s| s.starts_with("the answer is 42 at ") && s.contains("panic_log.rs")),
            "{seen:?}"
        );
    }
}
