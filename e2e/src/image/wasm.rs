//! OCI Wasm artifacts (CNCF TAG Runtime layout).

use super::{
    Blob, BuiltImage, MEDIA_TYPE_IMAGE_CONFIG, MEDIA_TYPE_WASM_COMPONENT_LAYER,
    MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_LAYER,
};

/// The component's world as recorded in a Wasm artifact's config.
#[derive(Clone, Debug, Default)]
pub struct ComponentInfo {
    pub exports: Vec<String>,
    pub imports: Vec<String>,
}

/// An OCI Wasm artifact: config `application/vnd.wasm.config.v0+json`, one layer holding the
/// raw wasm bytes (`application/wasm` unless another layer media type is chosen).
#[derive(Clone, Debug)]
pub struct WasmArtifact {
    pub wasm: Vec<u8>,
    pub os: String,
    pub component: Option<ComponentInfo>,
    pub layer_media_type: String,
    /// An OCI-image-style `config.Entrypoint`, as `spore push` records one.
    pub entrypoint: Option<Vec<String>>,
}

impl WasmArtifact {
    /// A `wasip2` artifact with an `application/wasm` layer.
    pub fn new(wasm: impl Into<Vec<u8>>) -> Self {
        WasmArtifact {
            wasm: wasm.into(),
            os: "wasip2".into(),
            component: None,
            layer_media_type: MEDIA_TYPE_WASM_LAYER.into(),
            entrypoint: None,
        }
    }

    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.entrypoint = Some(args.into_iter().map(Into::into).collect());
        self
    }

    pub fn component(mut self, info: ComponentInfo) -> Self {
        self.component = Some(info);
        self
    }

    pub fn os(mut self, os: impl Into<String>) -> Self {
        self.os = os.into();
        self
    }

    pub fn layer_media_type(mut self, media_type: impl Into<String>) -> Self {
        self.layer_media_type = media_type.into();
        self
    }

    pub fn build(&self) -> BuiltImage {
        let layer = Blob::new(&self.layer_media_type, self.wasm.clone());
        let mut config = serde_json::json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": "wasm",
            "os": self.os,
            "layerDigests": [layer.digest],
        });
        if let Some(component) = &self.component {
            config["component"] = serde_json::json!({
                "exports": component.exports,
                "imports": component.imports,
            });
        }
        if let Some(entrypoint) = &self.entrypoint {
            config["config"] = serde_json::json!({ "Entrypoint": entrypoint });
        }
        let config = Blob::new(MEDIA_TYPE_WASM_CONFIG, config.to_string().into_bytes());
        BuiltImage::assemble(config, vec![layer], None)
    }
}

/// A container image whose one layer is a Wasm component (the layout runwasi's tools make): an
/// ordinary OCI image config with an `Entrypoint`, and a
/// `application/vnd.bytecodealliance.wasm.component.layer.v0+wasm` layer. The config says
/// `linux/amd64`, so that `ctr images pull` unpacks it for this host; its rootfs lists no layer
/// (containerd unpacks none of a Wasm layer, and refuses a config whose `diff_ids` say otherwise:
/// "mismatched image rootfs and manifest layers").
pub fn wasm_layer_image(wasm: impl Into<Vec<u8>>, entrypoint: &[&str]) -> BuiltImage {
    let layer = Blob::new(MEDIA_TYPE_WASM_COMPONENT_LAYER, wasm.into());
    let config = serde_json::json!({
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": {"Entrypoint": entrypoint},
        "rootfs": {"type": "layers", "diff_ids": []},
    });
    let config = Blob::new(MEDIA_TYPE_IMAGE_CONFIG, config.to_string().into_bytes());
    BuiltImage::assemble(config, vec![layer], None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasm_artifacts_follow_the_tag_runtime_layout() {
        let artifact = WasmArtifact::new(b"\0asm\x0d\0\x01\0".to_vec())
            .component(ComponentInfo {
                exports: vec!["wasi:cli/run@0.2.0".into()],
                imports: vec!["wasi:io/streams@0.2.0".into()],
            })
            .build();
        let manifest: serde_json::Value =
            serde_json::from_slice(&artifact.manifest.data).expect("json");
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_WASM_CONFIG);
        assert_eq!(manifest["layers"].as_array().expect("layers").len(), 1);
        assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_WASM_LAYER);
        assert_eq!(artifact.layers[0].data, b"\0asm\x0d\0\x01\0");
        let config: serde_json::Value =
            serde_json::from_slice(&artifact.config.data).expect("json");
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"][0], artifact.layers[0].digest);
        assert_eq!(config["component"]["exports"][0], "wasi:cli/run@0.2.0");
    }
}
