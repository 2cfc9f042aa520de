//! The contract Spore's parts share: what containerd, the kubelet and registries know Spore by,
//! what a Wasm binary starts with, and the media types of an OCI Wasm artifact. The shim, the
//! CLI, the node installer and the test harness all read these from here, so that a name or a
//! format is written once.

/// The containerd runtime type of the shim (`runtime_type` in containerd's config).
pub const RUNTIME_TYPE: &str = "io.containerd.spore.v1";
/// The shim's binary name: containerd finds `containerd-shim-spore-v1` on its `PATH` from
/// [`RUNTIME_TYPE`].
pub const SHIM_BINARY: &str = "containerd-shim-spore-v1";
/// The CRI runtime handler and the Kubernetes RuntimeClass.
pub const RUNTIME_HANDLER: &str = "spore";
/// The node label the installer sets once the shim is installed (value [`SHIM_READY`]).
pub const SHIM_LABEL: &str = "spore.dev/shim";
/// The value of [`SHIM_LABEL`] on a node that runs Spore pods.
pub const SHIM_READY: &str = "ready";

/// The first four bytes of every Wasm binary, core module or component.
pub const WASM_MAGIC: [u8; 4] = *b"\0asm";
/// The version field (bytes 4-8) of a core module.
pub const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
/// The version and layer fields (bytes 4-8) of a component.
pub const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];

/// The config media type of an OCI Wasm artifact (CNCF TAG Runtime layout).
pub const WASM_CONFIG_MEDIA_TYPE: &str = "application/vnd.wasm.config.v0+json";
/// The layer media type of an OCI Wasm artifact.
pub const WASM_LAYER_MEDIA_TYPE: &str = "application/wasm";
/// The layer media type `wkg` and runwasi-style images use for a component.
pub const COMPONENT_LAYER_MEDIA_TYPE: &str =
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm";
/// Every layer media type Spore takes as Wasm.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 2] = [WASM_LAYER_MEDIA_TYPE, COMPONENT_LAYER_MEDIA_TYPE];

/// What the 8-byte header of a binary says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryKind {
    CoreModule,
    Component,
    /// The Wasm magic with a version Spore does not know.
    UnknownWasmVersion([u8; 4]),
    /// An ELF file: native code (such as wasmtime's precompiled `.cwasm`), never Wasm.
    Elf,
    /// Not Wasm at all.
    NotWasm,
    /// Starts with the Wasm magic but ends inside the 8-byte header.
    Truncated,
}

/// Reads the header of `bytes` (at least the first 8 bytes of a file).
pub fn binary_kind(bytes: &[u8]) -> BinaryKind {
    if bytes.starts_with(b"\x7fELF") {
        return BinaryKind::Elf;
    }
    if !starts_with_wasm_magic(bytes) {
        return BinaryKind::NotWasm;
    }
    match bytes.get(4..8).and_then(|v| <[u8; 4]>::try_from(v).ok()) {
        Some(COMPONENT_VERSION) => BinaryKind::Component,
        Some(CORE_MODULE_VERSION) => BinaryKind::CoreModule,
        Some(other) => BinaryKind::UnknownWasmVersion(other),
        None => BinaryKind::Truncated,
    }
}

/// Whether `bytes` start with the Wasm magic (a prefix of a file is enough).
pub fn starts_with_wasm_magic(bytes: &[u8]) -> bool {
    bytes.len() >= 4 && bytes[..4] == WASM_MAGIC
}

/// Whether `media_type` names a Wasm layer.
pub fn is_wasm_layer(media_type: &str) -> bool {
    WASM_LAYER_MEDIA_TYPES.contains(&media_type)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_say_what_a_binary_is() {
        assert_eq!(binary_kind(b"\0asm\x01\0\0\0rest"), BinaryKind::CoreModule);
        assert_eq!(binary_kind(b"\0asm\x0d\0\x01\0"), BinaryKind::Component);
        assert_eq!(
            binary_kind(b"\0asm\x02\0\0\0"),
            BinaryKind::UnknownWasmVersion([2, 0, 0, 0])
        );
        assert_eq!(binary_kind(b"\x7fELF\x02\x01"), BinaryKind::Elf);
        assert_eq!(binary_kind(b"#!/bin/sh"), BinaryKind::NotWasm);
        assert_eq!(binary_kind(b"\0as"), BinaryKind::NotWasm);
        assert_eq!(binary_kind(b"\0asm\x01"), BinaryKind::Truncated);
    }

    #[test]
    fn both_wasm_layer_types_are_wasm() {
        assert!(is_wasm_layer("application/wasm"));
        assert!(is_wasm_layer(
            "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm"
        ));
        assert!(!is_wasm_layer(
            "application/vnd.oci.image.layer.v1.tar+gzip"
        ));
    }
}
