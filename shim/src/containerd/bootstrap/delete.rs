//! `containerd-shim-spore-v1 delete`: containerd runs it in the bundle of a container whose shim
//! is gone (killed, or crashed) and reads a `DeleteResponse` from stdout. It releases what the
//! container held on the host.

use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use containerd_shim::Flags;
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

/// Exit status reported for a container whose shim died (as if SIGKILLed).
pub const DEAD_SHIM_EXIT_CODE: u32 = 137;

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("encoding the delete response: {0}")]
    Encode(String),
    #[error("writing the delete response: {0}")]
    Stdout(std::io::Error),
}

pub fn run(_flags: &Flags) -> Result<(), DeleteError> {
    if let Err(err) = crate::host::rootfs::unmount(&Path::new(".").join("rootfs")) {
        eprintln!("{}: delete: {err}", spore_format::SHIM_BINARY);
    }
    let response = DeleteResponse {
        exit_status: DEAD_SHIM_EXIT_CODE,
        exited_at: Some(Timestamp::from(SystemTime::now())).into(),
        ..Default::default()
    };
    let bytes = response
        .write_to_bytes()
        .map_err(|e| DeleteError::Encode(e.to_string()))?;
    let mut stdout = std::io::stdout();
    stdout
        .write_all(&bytes)
        .and_then(|()| stdout.flush())
        .map_err(DeleteError::Stdout)
}
