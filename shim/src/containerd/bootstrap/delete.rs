//! `containerd-shim-spore-v1 delete`: containerd runs it in the bundle of a container whose shim
//! is gone (killed, OOM-killed, crashed) and reads a `DeleteResponse` from stdout. It releases
//! what the container held on the host, as its host record (written at Create) describes: a
//! native container is deleted with runc, a Wasm container's cgroup leaves and the compile
//! cache's temporary files of the dead shim are removed, the rootfs is unmounted. Containers of
//! the same dead shim (same pid and start time) in sibling bundles are released too, whether or
//! not containerd asks for each, and the dead shim's socket file is removed.

use std::io::Write;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::time::SystemTime;

use containerd_shim::Flags;
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::container::host_record::HostRecord;
use crate::containerd::socket;
use crate::spec::ContainerSpec;

/// Exit status reported for a container whose shim died (as if SIGKILLed).
pub const DEAD_SHIM_EXIT_CODE: u32 = 137;

#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("encoding the delete response: {0}")]
    Encode(containerd_shim::protos::protobuf::Error),
    #[error("writing the delete response: {0}")]
    Stdout(std::io::Error),
}

pub fn run(flags: &Flags) -> Result<(), DeleteError> {
    let bundle = Path::new(".");
    let record = release_bundle(bundle);
    if let Some(record) = record.filter(|r| !r.shim_alive()) {
        release_siblings(bundle, &record);
    }
    remove_dead_socket(flags, bundle);
    let response = DeleteResponse {
        exit_status: DEAD_SHIM_EXIT_CODE,
        exited_at: Some(Timestamp::from(SystemTime::now())).into(),
        ..Default::default()
    };
    let bytes = response.write_to_bytes().map_err(DeleteError::Encode)?;
    let mut stdout = std::io::stdout();
    stdout
        .write_all(&bytes)
        .and_then(|()| stdout.flush())
        .map_err(DeleteError::Stdout)
}

/// Releases the container of `bundle`; its record, if it has one.
fn release_bundle(bundle: &Path) -> Option<HostRecord> {
    let record = match HostRecord::read(bundle) {
        Ok(record) => record,
        Err(err) => {
            complain(&err.to_string());
            None
        }
    };
    if let Some(record) = &record {
        for err in record.release() {
            complain(&err.to_string());
        }
    }
    if let Err(err) = crate::host::rootfs::unmount(&bundle.join("rootfs")) {
        complain(&err.to_string());
    }
    record
}

/// The other containers of the dead shim (bundles beside this one with the same shim pid):
/// containerd does not always run `delete` for each container of a pod's shim.
fn release_siblings(bundle: &Path, dead: &HostRecord) {
    let Ok(here) = std::fs::canonicalize(bundle) else {
        return;
    };
    let Some(entries) = here.parent().and_then(|p| std::fs::read_dir(p).ok()) else {
        return;
    };
    for entry in entries.flatten() {
        let sibling = entry.path();
        if sibling == here {
            continue;
        }
        let same_shim = HostRecord::read(&sibling)
            .ok()
            .flatten()
            .is_some_and(|r| r.same_shim(dead) && r.id != dead.id);
        if same_shim {
            release_bundle(&sibling);
        }
    }
}

/// Removes the pod's shim socket when nothing listens on it any more.
fn remove_dead_socket(flags: &Flags, bundle: &Path) {
    let grouping = ContainerSpec::load(bundle)
        .ok()
        .and_then(|spec| spec.sandbox_id().map(str::to_string))
        .unwrap_or_else(|| flags.id.clone());
    let address = socket::address(&flags.address, &flags.namespace, &grouping);
    let Ok(path) = socket::path_of(&address) else {
        return;
    };
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    let refused = std::os::unix::net::UnixStream::connect(path)
        .err()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused);
    if is_socket && refused {
        socket::remove(&address);
    }
}

fn complain(message: &str) {
    eprintln!("{}: delete: {message}", spore_format::SHIM_BINARY);
}
