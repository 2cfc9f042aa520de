//! The OCI Wasm artifact (CNCF TAG Runtime "Wasm OCI Artifact layout"): its media types, its
//! config (`application/vnd.wasm.config.v0+json`, recording the component's world) and its
//! manifest with one `application/wasm` layer. Building them is pure: no I/O, no clock.

use std::collections::BTreeMap;

use oci_client::client::{Config, ImageLayer};
use oci_client::manifest::OciImageManifest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::world::{WasmKind, WasmWorld};

/// The config media type that marks an OCI Wasm artifact.
pub const WASM_CONFIG_MEDIA_TYPE: &str = spore_format::WASM_CONFIG_MEDIA_TYPE;
/// The layer media type of the Wasm OCI artifact layout.
pub const WASM_LAYER_MEDIA_TYPE: &str = spore_format::WASM_LAYER_MEDIA_TYPE;
/// The older layer media type used by runwasi's tooling, also accepted by Spore.
pub const COMPONENT_LAYER_MEDIA_TYPE: &str = spore_format::COMPONENT_LAYER_MEDIA_TYPE;
/// Layer media types that Spore takes as Wasm.
pub const SPORE_WASM_LAYER_MEDIA_TYPES: [&str; 2] =
    [WASM_LAYER_MEDIA_TYPE, COMPONENT_LAYER_MEDIA_TYPE];
/// The OCI image manifest media type.
pub const OCI_MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The layer annotation naming the file a layer came from (as ORAS does).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

pub const WASM_ARCHITECTURE: &str = "wasm";
/// `os` of a component artifact.
pub const OS_WASIP2: &str = "wasip2";
/// `os` of a core module artifact.
pub const OS_WASIP1: &str = "wasip1";

/// The artifact's config blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WasmConfig {
    /// RFC 3339 time of creation.
    pub created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    /// The manifest's layer digests in order, so that the config (and so its digest) is unique
    /// to its layers.
    pub layer_digests: Vec<String>,
    /// The component's world; present when `os` is `wasip2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<ComponentConfig>,
    /// An OCI image config's `config` section with an `Entrypoint`: containerd's CRI reads the
    /// config blob as an image config and refuses a container without a command, so a pod of
    /// an artifact would otherwise have to name one. Spore ignores it when it runs the layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RuntimeDefaults>,
}

/// The part of an OCI image config that containerd uses to make a container's command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeDefaults {
    #[serde(rename = "Entrypoint")]
    pub entrypoint: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentConfig {
    #[serde(default)]
    pub exports: Vec<String>,
    #[serde(default)]
    pub imports: Vec<String>,
    /// The WASI world the component targets, e.g. `wasi:cli/command@0.2.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// What goes into an artifact besides the Wasm bytes.
#[derive(Debug, Clone, Default)]
pub struct ArtifactMetadata {
    /// RFC 3339 time of creation.
    pub created: String,
    pub author: Option<String>,
    /// The file name recorded in the layer's `org.opencontainers.image.title`.
    pub title: Option<String>,
    /// Manifest annotations.
    pub annotations: BTreeMap<String, String>,
}

/// Everything `oci_client::Client::push` needs, plus the config as a value.
#[derive(Clone)]
pub struct WasmArtifact {
    pub config: WasmConfig,
    pub config_blob: Config,
    pub layer: ImageLayer,
    pub manifest: OciImageManifest,
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Builds the artifact for a Wasm binary whose world has already been read.
pub fn build_artifact(
    wasm: Vec<u8>,
    world: &WasmWorld,
    metadata: ArtifactMetadata,
) -> Result<WasmArtifact, serde_json::Error> {
    let layer_digest = sha256_digest(&wasm);
    let config = WasmConfig {
        created: metadata.created,
        author: metadata.author,
        architecture: WASM_ARCHITECTURE.to_string(),
        os: match world.kind {
            WasmKind::Component => OS_WASIP2,
            WasmKind::CoreModule => OS_WASIP1,
        }
        .to_string(),
        layer_digests: vec![layer_digest],
        component: match world.kind {
            WasmKind::Component => Some(ComponentConfig {
                exports: world.exports.clone(),
                imports: world.imports.clone(),
                target: world.target_world(),
            }),
            WasmKind::CoreModule => None,
        },
        config: Some(RuntimeDefaults {
            entrypoint: vec![format!(
                "/{}",
                metadata.title.as_deref().unwrap_or("component.wasm")
            )],
        }),
    };
    let config_blob = Config::new(
        serde_json::to_vec(&config)?,
        WASM_CONFIG_MEDIA_TYPE.to_string(),
        None,
    );
    let layer_annotations = metadata
        .title
        .map(|title| BTreeMap::from([(TITLE_ANNOTATION.to_string(), title)]));
    let layer = ImageLayer::new(wasm, WASM_LAYER_MEDIA_TYPE.to_string(), layer_annotations);
    let annotations = (!metadata.annotations.is_empty()).then_some(metadata.annotations);
    let mut manifest =
        OciImageManifest::build(std::slice::from_ref(&layer), &config_blob, annotations);
    manifest.media_type = Some(OCI_MANIFEST_MEDIA_TYPE.to_string());
    manifest.artifact_type = Some(WASM_CONFIG_MEDIA_TYPE.to_string());
    Ok(WasmArtifact {
        config,
        config_blob,
        layer,
        manifest,
    })
}

/// An annotation that is not `KEY=VALUE` with a non-empty key; holds the text as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid annotation {0:?}: expected KEY=VALUE with a non-empty KEY")]
pub struct MalformedAnnotation(pub String);

/// Parses `KEY=VALUE` annotations; the error is the first malformed one.
pub fn parse_annotations(
    pairs: &[String],
) -> Result<BTreeMap<String, String>, MalformedAnnotation> {
    let mut annotations = BTreeMap::new();
    for pair in pairs {
        match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                annotations.insert(key.trim().to_string(), value.to_string());
            }
            _ => return Err(MalformedAnnotation(pair.clone())),
        }
    }
    Ok(annotations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn component_world() -> WasmWorld {
        WasmWorld {
            kind: WasmKind::Component,
            imports: vec!["wasi:cli/stdout@0.2.3".into()],
            exports: vec!["wasi:cli/run@0.2.3".into()],
            fit: None,
        }
    }

    fn metadata() -> ArtifactMetadata {
        ArtifactMetadata {
            created: "2026-11-22T04:00:00Z".into(),
            author: None,
            title: Some("app.wasm".into()),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn a_component_artifact_follows_the_wasm_oci_layout() {
        let wasm = b"\0asm\x0d\0\x01\0".to_vec();
        let artifact =
            build_artifact(wasm.clone(), &component_world(), metadata()).expect("builds");

        let manifest = &artifact.manifest;
        assert_eq!(manifest.schema_version, 2);
        assert_eq!(
            manifest.media_type.as_deref(),
            Some(OCI_MANIFEST_MEDIA_TYPE)
        );
        assert_eq!(
            manifest.artifact_type.as_deref(),
            Some(WASM_CONFIG_MEDIA_TYPE)
        );
        assert_eq!(manifest.config.media_type, WASM_CONFIG_MEDIA_TYPE);
        assert_eq!(
            manifest.config.digest,
            sha256_digest(&artifact.config_blob.data)
        );
        assert_eq!(
            manifest.config.size as usize,
            artifact.config_blob.data.len()
        );
        assert_eq!(manifest.layers.len(), 1);
        assert_eq!(manifest.layers[0].media_type, WASM_LAYER_MEDIA_TYPE);
        assert_eq!(manifest.layers[0].digest, sha256_digest(&wasm));
        assert_eq!(manifest.layers[0].size as usize, wasm.len());
        assert_eq!(
            manifest.layers[0]
                .annotations
                .as_ref()
                .and_then(|a| a.get(TITLE_ANNOTATION))
                .map(String::as_str),
            Some("app.wasm")
        );
        assert_eq!(manifest.annotations, None);

        let config: serde_json::Value =
            serde_json::from_slice(&artifact.config_blob.data).expect("config is JSON");
        assert_eq!(
            config,
            serde_json::json!({
                "created": "2026-11-22T04:00:00Z",
                "architecture": "wasm",
                "os": "wasip2",
                "layerDigests": [sha256_digest(&wasm)],
                "component": {
                    "exports": ["wasi:cli/run@0.2.3"],
                    "imports": ["wasi:cli/stdout@0.2.3"],
                    "target": "wasi:cli/command@0.2.3"
                },
                "config": {"Entrypoint": ["/app.wasm"]}
            })
        );
    }

    #[test]
    fn a_module_artifact_is_wasip1_without_a_component_section() {
        let world = WasmWorld {
            kind: WasmKind::CoreModule,
            imports: vec!["wasi_snapshot_preview1::fd_write".into()],
            exports: vec!["_start".into()],
            fit: None,
        };
        let mut meta = metadata();
        meta.author = Some("dev@example.com".into());
        let artifact = build_artifact(b"\0asm\x01\0\0\0".to_vec(), &world, meta).expect("builds");
        assert_eq!(artifact.config.os, OS_WASIP1);
        assert_eq!(artifact.config.component, None);
        let config: serde_json::Value =
            serde_json::from_slice(&artifact.config_blob.data).expect("config is JSON");
        assert_eq!(config["author"], "dev@example.com");
        assert!(config.get("component").is_none(), "{config}");
    }

    #[test]
    fn annotations_go_on_the_manifest() {
        let mut meta = metadata();
        meta.annotations = parse_annotations(&[
            "org.opencontainers.image.source=https://example.com/app".into(),
            "note=a=b".into(),
        ])
        .expect("parses");
        let artifact = build_artifact(b"\0asm".to_vec(), &component_world(), meta).expect("builds");
        let annotations = artifact.manifest.annotations.expect("annotations");
        assert_eq!(
            annotations["org.opencontainers.image.source"],
            "https://example.com/app"
        );
        assert_eq!(annotations["note"], "a=b");
    }

    #[test]
    fn malformed_annotations_are_named() {
        assert_eq!(
            parse_annotations(&["novalue".into()]),
            Err(MalformedAnnotation("novalue".into()))
        );
        assert_eq!(
            parse_annotations(&["=v".into()]),
            Err(MalformedAnnotation("=v".into()))
        );
    }

    #[test]
    fn the_config_reads_back_and_tolerates_missing_optional_fields() {
        let config: WasmConfig = serde_json::from_str(
            r#"{"created":"2024-01-01T00:00:00Z","architecture":"wasm","os":"wasip2",
                "layerDigests":["sha256:00"],"component":{"exports":["wasi:cli/run@0.2.0"]}}"#,
        )
        .expect("parses");
        let component = config.component.expect("component");
        assert_eq!(component.exports, vec!["wasi:cli/run@0.2.0"]);
        assert!(component.imports.is_empty());
        assert_eq!(component.target, None);
    }
}
