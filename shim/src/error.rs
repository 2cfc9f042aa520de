//! The shim's error type and its mapping onto ttrpc status codes (which containerd turns into its
//! own `errdefs` kinds: not found, already exists, failed precondition, not implemented...). Each
//! module's failures keep their own typed error; this enum wraps them and decides the code.

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
    #[error("{what} is not supported by Spore (container {id})")]
    NotSupported { id: String, what: &'static str },
    #[error("the shim is shutting down: it takes no new containers")]
    ShuttingDown,
    #[error("reading the OCI spec {path}: {reason}")]
    Spec { path: PathBuf, reason: String },
    #[error(transparent)]
    Options(#[from] crate::containerd::options::OptionsError),
    #[error("mounting the rootfs at {target}: {reason}")]
    Rootfs { target: PathBuf, reason: String },
    #[error("opening {stream} ({path}): {source}")]
    Stdio {
        stream: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Entrypoint(#[from] crate::host::entrypoint::EntrypointError),
    #[error(transparent)]
    Wasm(#[from] crate::wasm::compile::WasmError),
    #[error("{path}: {source}")]
    HttpConfig {
        path: PathBuf,
        source: crate::wasm::http::HttpConfigError,
    },
    #[error(transparent)]
    Artifact(crate::wasm::content::ArtifactError),
    #[error(transparent)]
    Content(crate::wasm::content::ContentError),
    #[error("containerd's address is unknown to the shim (no -address)")]
    NoContainerdAddress,
    #[error("opening the compile cache: {0}")]
    CompileCache(crate::wasm::cache::CacheError),
    #[error("preparing the guest's WASI context: {0}")]
    Wasi(String),
    #[error(transparent)]
    Runc(#[from] crate::container::runc::RuncError),
    #[error(transparent)]
    Console(#[from] crate::container::console::ConsoleError),
    #[error("signalling {process}: {source}")]
    Signal {
        process: String,
        source: std::io::Error,
    },
    #[error("encoding {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("the shim's {0} lock is poisoned")]
    Poisoned(&'static str),
    #[error("a task of the shim failed: {0}")]
    TaskFailed(String),
    #[error(
        "the shim panicked handling {request}: {message} (a bug in Spore: the shim's log has where)"
    )]
    Panicked {
        request: &'static str,
        message: String,
    },
}

impl ShimError {
    pub fn code(&self) -> Code {
        use crate::wasm::content::ContentError;
        match self {
            ShimError::NotFound(_) | ShimError::ProcessFinished(_) => Code::NOT_FOUND,
            ShimError::AlreadyExists(_) => Code::ALREADY_EXISTS,
            ShimError::FailedPrecondition { .. } | ShimError::ShuttingDown => {
                Code::FAILED_PRECONDITION
            }
            ShimError::InvalidArgument(_)
            | ShimError::Spec { .. }
            | ShimError::Options(_)
            | ShimError::Entrypoint(_)
            | ShimError::Wasm(_)
            | ShimError::HttpConfig { .. }
            | ShimError::Artifact(_) => Code::INVALID_ARGUMENT,
            ShimError::Content(ContentError::NeitherWasmNorImage { .. })
            | ShimError::Content(ContentError::ContainerdTooOld { .. }) => Code::INVALID_ARGUMENT,
            ShimError::NotSupportedForWasm { .. } | ShimError::NotSupported { .. } => {
                Code::UNIMPLEMENTED
            }
            ShimError::Content(_)
            | ShimError::NoContainerdAddress
            | ShimError::CompileCache(_)
            | ShimError::Rootfs { .. }
            | ShimError::Stdio { .. }
            | ShimError::Wasi(_)
            | ShimError::Runc(_)
            | ShimError::Console(_)
            | ShimError::Signal { .. }
            | ShimError::Encode { .. }
            | ShimError::Poisoned(_)
            | ShimError::TaskFailed(_)
            | ShimError::Panicked { .. } => Code::INTERNAL,
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

    fn status(err: ShimError) -> ttrpc::Status {
        match ttrpc::Error::from(err) {
            ttrpc::Error::RpcStatus(status) => status,
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn unsupported_operations_map_to_unimplemented_with_the_reason() {
        let status = status(ShimError::NotSupportedForWasm {
            id: "c1".into(),
            what: "exec",
        });
        assert_eq!(status.code(), Code::UNIMPLEMENTED);
        assert_eq!(
            status.message(),
            "exec is not supported for Wasm containers (container c1)"
        );
    }

    #[test]
    fn missing_containers_map_to_not_found() {
        assert_eq!(
            status(ShimError::NotFound("c2".into())).code(),
            Code::NOT_FOUND
        );
    }

    #[test]
    fn a_bad_entrypoint_is_the_users_and_a_runc_failure_is_internal() {
        let entrypoint = ShimError::from(crate::host::entrypoint::EntrypointError::NotFound {
            path: "/app.wasm".into(),
        });
        assert_eq!(status(entrypoint).code(), Code::INVALID_ARGUMENT);
        let runc = ShimError::from(crate::container::runc::RuncError::NoPid("/x".into()));
        assert_eq!(status(runc).code(), Code::INTERNAL);
    }
}
