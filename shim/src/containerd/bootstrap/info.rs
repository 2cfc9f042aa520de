//! `containerd-shim-spore-v1 -info`: containerd asks a runtime to describe itself (containerd
//! 2.x's introspection, `ctr plugins` and CRI's runtime handler features). The options it sends
//! on stdin are read and not needed: Spore's features do not depend on them.

use std::io::{Read, Write};

use containerd_shim::protos::protobuf::Message;
use containerd_shim::protos::types::introspection::{RuntimeInfo, RuntimeVersion};

#[derive(Debug, thiserror::Error)]
pub enum InfoError {
    #[error("reading the runtime options from stdin: {0}")]
    Stdin(std::io::Error),
    #[error("encoding the runtime info: {0}")]
    Encode(String),
    #[error("writing the runtime info: {0}")]
    Stdout(std::io::Error),
}

/// The runtime's description.
pub fn runtime_info() -> RuntimeInfo {
    RuntimeInfo {
        name: spore_format::RUNTIME_TYPE.to_string(),
        version: Some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").to_string(),
            ..Default::default()
        })
        .into(),
        ..Default::default()
    }
}

pub fn write_runtime_info() -> Result<(), InfoError> {
    let mut options = Vec::new();
    std::io::stdin()
        .take(10 << 20)
        .read_to_end(&mut options)
        .map_err(InfoError::Stdin)?;
    let bytes = runtime_info()
        .write_to_bytes()
        .map_err(|e| InfoError::Encode(e.to_string()))?;
    let mut stdout = std::io::stdout();
    stdout
        .write_all(&bytes)
        .and_then(|()| stdout.flush())
        .map_err(InfoError::Stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_runtime_names_itself_and_its_version() {
        let info = RuntimeInfo::parse_from_bytes(&runtime_info().write_to_bytes().expect("encode"))
            .expect("decode");
        assert_eq!(info.name, "io.containerd.spore.v1");
        assert_eq!(info.version.version, env!("CARGO_PKG_VERSION"));
    }
}
