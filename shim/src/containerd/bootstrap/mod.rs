//! What containerd runs the shim binary for, as containerd's shim protocol defines it:
//! - `start` ([`start`]): find or start the pod's serving process; print its address;
//! - `delete` ([`delete`]): clean up after a container whose shim is gone;
//! - `-info` ([`info`]): describe the runtime;
//! - `fork-server` ([`fork_server`]): the process `start` has serving processes forked from;
//! - with `-socket` ([`serve`]): the long-lived process that serves the Task API for a pod, on
//!   a runtime of few workers ([`workers`]).
//!
//! One bootstrap serves containerd 1.7 and 2.x: `start` answers the task API version containerd
//! asks for (`MAX_SHIM_VERSION`), and the Task service is registered under both the v2 and v3
//! names (their messages are the same).

pub mod delete;
pub mod fork_server;
pub mod info;
pub mod serve;
pub mod start;
pub mod workers;

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

/// The line the serving process prints on its stdout once its ttrpc server is listening.
pub const READY_LINE: &str = "spore-shim-ready";

/// The shim binary's `main`.
pub fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    let flags = match containerd_shim::parse(args.get(1..).unwrap_or_default()) {
        Ok(flags) => flags,
        Err(err) => return fail(&format!("parsing the command line: {err}")),
    };
    if flags.version {
        println!(
            "{}:\n  Version: {}\n  Runtime: {}",
            spore_format::SHIM_BINARY,
            env!("CARGO_PKG_VERSION"),
            spore_format::RUNTIME_TYPE
        );
        return ExitCode::SUCCESS;
    }
    if flags.info {
        return match info::write_runtime_info() {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err.to_string()),
        };
    }
    match flags.action.as_str() {
        "start" => match start::run(&flags) {
            Ok(address) => {
                let version =
                    start::task_api_version(std::env::var("MAX_SHIM_VERSION").ok().as_deref());
                let mut stdout = std::io::stdout();
                let written = stdout
                    .write_all(start::reply(&address, version).as_bytes())
                    .and_then(|()| stdout.flush());
                match written {
                    Ok(()) => ExitCode::SUCCESS,
                    Err(err) => fail(&format!("writing the start reply: {err}")),
                }
            }
            Err(err) => fail(&err.to_string()),
        },
        fork_server::ACTION => fork_server::run(&flags),
        "delete" => match delete::run(&flags) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => fail(&err.to_string()),
        },
        _ => serve::run(&flags),
    }
}

/// containerd shows a failed action's stderr in its error.
fn fail(message: &str) -> ExitCode {
    eprintln!("{}: {message}", spore_format::SHIM_BINARY);
    ExitCode::FAILURE
}
