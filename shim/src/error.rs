//! The shim's error type and its mapping onto ttrpc status codes (which containerd turns into its
//! own `errdefs` kinds: not found, already exists, failed precondition, not implemented...).

use std::path::PathBuf;

use containerd_shim::protos::ttrpc::{self, Code};

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("container {0} not found in this shim")]
    NotFound(String),
    #[error("container {0}: the process already finished")]
    ProcessFinished(String),
    #[error("container {0} already exists in this shim")]
    AlreadyExists(String),
    #[error("container {id}: {what}")]
    FailedPrecondition { id: String, what: String },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{what} is not supported for Wasm containers (container {id})")]
    NotSupportedForWasm { id: String, what: &'static str },
    #[error("reading the OCI spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error("mounting the rootfs at {target}: {reason}")]
    Rootfs { target: PathBuf, reason: String },
    #[error("opening {stream} ({path}): {source}")]
    Stdio {
        stream: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Wasm(#[from] crate::wasm_kind::WasmError),
    #[error("preparing the guest's WASI context: {0}")]
    Wasi(String),
    #[error("{0}")]
    Other(String),
}

impl ShimError {
    fn code(&self) -> Code {
        match self {
            ShimError::NotFound(_) | ShimError::ProcessFinished(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition { .. } => Code::FAILED_PRECONDITION,
            ShimError::InvalidArgument(_) | ShimError::Spec { .. } | ShimError::Wasm(_) => {
                Code::INVALID_ARGUMENT
            }
            ShimError::NotSupportedForWasm { .. } => Code::UNIMPLEMENTED,
            ShimError::Rootfs { .. }
            | ShimError::Stdio { .. }
            | ShimError::Wasi(_)
            | ShimError::Other(_) => Code::INTERNAL,
        }
    }
}

impl From<ShimError> for ttrpc::Error {
    fn from(err: ShimError) -> Self {
        ttrpc::Error::RpcStatus(ttrpc::get_status(err.code(), err.to_string()))
    }
}

pub type Result<T, E = ShimError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_operations_map_to_unimplemented_with_the_reason() {
        let err: ttrpc::Error = ShimError::NotSupportedForWasm {
            id: "c1".into(),
            what: "exec",
        }
        .into();
        match err {
            ttrpc::Error::RpcStatus(status) => {
                assert_eq!(status.code(), Code::UNIMPLEMENTED);
                assert_eq!(
                    status.message(),
                    "exec is not supported for Wasm containers (container c1)"
                );
            }
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn missing_containers_map_to_not_found() {
        let err: ttrpc::Error = ShimError::NotFound("c2".into()).into();
        let ttrpc::Error::RpcStatus(status) = err else {
            panic!("not a status")
        };
        assert_eq!(status.code(), Code::NOT_FOUND);
    }
}
