//! OCI manifests and indexes as Spore reads them (pure: no I/O): which manifest of an index to
//! run, and whether a manifest is an OCI Wasm artifact, a plain image, or neither.

use serde::Deserialize;

use super::ContentError;

pub const MEDIA_TYPE_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MEDIA_TYPE_DOCKER_LIST: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
/// The config of an OCI Wasm artifact (CNCF TAG Runtime layout).
pub const MEDIA_TYPE_WASM_CONFIG: &str = spore_format::WASM_CONFIG_MEDIA_TYPE;
/// The Wasm layer of an artifact, and the name Bytecode Alliance tools (wkg) give it.
pub const WASM_LAYER_MEDIA_TYPES: [&str; 2] = spore_format::WASM_LAYER_MEDIA_TYPES;
/// Configs of ordinary container images, whose layers are unpacked into a rootfs.
pub const PLAIN_CONFIG_MEDIA_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];

/// An OCI content descriptor (the fields Spore uses).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

impl Platform {
    fn is_wasm(&self) -> bool {
        self.architecture == "wasm" || self.os.starts_with("wasi")
    }

    fn is_host(&self) -> bool {
        self.os == "linux" && self.architecture == host_architecture()
    }
}

/// The host's architecture as OCI names it.
fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Index {
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

pub fn is_index(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_INDEX || media_type == MEDIA_TYPE_DOCKER_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == MEDIA_TYPE_OCI_MANIFEST || media_type == MEDIA_TYPE_DOCKER_MANIFEST
}

pub fn parse_manifest(image: &str, bytes: &[u8]) -> Result<Manifest, ContentError> {
    serde_json::from_slice(bytes).map_err(|e| ContentError::Json {
        image: image.to_string(),
        what: "manifest",
        reason: e.to_string(),
    })
}

pub fn parse_index(image: &str, bytes: &[u8]) -> Result<Index, ContentError> {
    serde_json::from_slice(bytes).map_err(|e| ContentError::Json {
        image: image.to_string(),
        what: "index",
        reason: e.to_string(),
    })
}

/// The manifest of an index that Spore runs: the one for a Wasm platform (`wasm`/`wasi*`), else
/// the one for this host (`linux/<arch>`), else the only one.
pub fn select_manifest<'a>(image: &str, index: &'a Index) -> Result<&'a Descriptor, ContentError> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| is_manifest(&d.media_type) || is_index(&d.media_type))
        .collect();
    let by = |f: fn(&Platform) -> bool| {
        candidates
            .iter()
            .copied()
            .find(|d| d.platform.as_ref().is_some_and(f))
    };
    if let Some(found) = by(Platform::is_wasm).or_else(|| by(Platform::is_host)) {
        return Ok(found);
    }
    match candidates.as_slice() {
        [only] => Ok(only),
        _ => Err(ContentError::NoManifestForPlatform {
            image: image.to_string(),
            platforms: index
                .manifests
                .iter()
                .map(|d| match &d.platform {
                    Some(p) => format!("{}/{}", p.os, p.architecture),
                    None => format!("(no platform, {})", d.media_type),
                })
                .collect(),
        }),
    }
}

/// The Wasm layer of an OCI Wasm artifact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmLayer {
    /// The image as named in containerd.
    pub image: String,
    pub manifest_digest: String,
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    /// The image config, whose `config.Entrypoint`/`Cmd` say whether containerd's process args
    /// start with a program name (see [`config_names_a_command`]).
    pub config: Descriptor,
}

/// Whether an image config (OCI image config, or an artifact config with an OCI-style
/// `config` section, as `spore push` writes) names an `Entrypoint` or a `Cmd`. When it does,
/// containerd builds the process args from them and `args[0]` is a program name; when it does
/// not (artifacts from `wkg`, `oras`), every process arg is the pod's.
pub fn config_names_a_command(config: &[u8]) -> bool {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(config) else {
        return false;
    };
    let named = |key: &str| {
        value["config"][key]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    };
    named("Entrypoint") || named("Cmd")
}

/// What an image is, for the shim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageKind {
    /// An OCI Wasm artifact: the shim reads its layer from the content store.
    WasmArtifact(Box<WasmLayer>),
    /// An ordinary image: its layers are unpacked into the container's rootfs, where the
    /// entrypoint names the `.wasm`.
    Plain,
}

/// Classifies `manifest` (whose digest is `manifest_digest`) of `image`.
pub fn classify(
    image: &str,
    manifest_digest: &str,
    manifest: &Manifest,
) -> Result<ImageKind, ContentError> {
    let config_type = manifest.config.media_type.as_str();
    let wasm_layers: Vec<&Descriptor> = manifest
        .layers
        .iter()
        .filter(|l| WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
        .collect();
    let layer_types = || {
        manifest
            .layers
            .iter()
            .map(|l| l.media_type.clone())
            .collect::<Vec<_>>()
    };
    match wasm_layers.as_slice() {
        // A container image whose layers are all unpacked into a rootfs.
        [] if PLAIN_CONFIG_MEDIA_TYPES.contains(&config_type) => Ok(ImageKind::Plain),
        // An OCI Wasm artifact, or a container image whose layer is Wasm (runwasi's layout).
        [layer] => Ok(ImageKind::WasmArtifact(Box::new(WasmLayer {
            image: image.to_string(),
            manifest_digest: manifest_digest.to_string(),
            digest: layer.digest.clone(),
            media_type: layer.media_type.clone(),
            size: u64::try_from(layer.size).unwrap_or(0),
            config: manifest.config.clone(),
        }))),
        [] if config_type == MEDIA_TYPE_WASM_CONFIG => Err(ContentError::NoWasmLayer {
            image: image.to_string(),
            layer_media_types: layer_types(),
        }),
        [] => Err(ContentError::NeitherWasmNorImage {
            image: image.to_string(),
            config_media_type: config_type.to_string(),
            layer_media_types: layer_types(),
        }),
        several => Err(ContentError::SeveralWasmLayers {
            image: image.to_string(),
            count: several.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn manifest(config: &str, layers: &[&str]) -> Manifest {
        let json = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_OCI_MANIFEST,
            "config": {"mediaType": config, "digest": D1, "size": 10},
            "layers": layers.iter().map(|t| serde_json::json!({"mediaType": t, "digest": D2, "size": 42})).collect::<Vec<_>>(),
        });
        parse_manifest("img", json.to_string().as_bytes()).expect("manifest")
    }

    #[test]
    fn a_tag_runtime_artifact_is_wasm() {
        for layer_type in WASM_LAYER_MEDIA_TYPES {
            let kind = classify("img", D1, &manifest(MEDIA_TYPE_WASM_CONFIG, &[layer_type]))
                .expect("classified");
            let ImageKind::WasmArtifact(layer) = kind else {
                panic!("not an artifact")
            };
            assert_eq!(layer.digest, D2);
            assert_eq!(layer.size, 42);
            assert_eq!(layer.media_type, layer_type);
        }
    }

    #[test]
    fn a_container_image_with_a_wasm_layer_is_wasm() {
        for layer_type in WASM_LAYER_MEDIA_TYPES {
            let kind = classify(
                "img",
                D1,
                &manifest(PLAIN_CONFIG_MEDIA_TYPES[0], &[layer_type]),
            )
            .expect("classified");
            assert!(matches!(kind, ImageKind::WasmArtifact(_)), "{layer_type}");
        }
    }

    #[test]
    fn a_command_is_named_by_entrypoint_or_cmd() {
        assert!(config_names_a_command(
            br#"{"config":{"Entrypoint":["/app.wasm"]}}"#
        ));
        assert!(config_names_a_command(
            br#"{"config":{"Cmd":["/app.wasm"]}}"#
        ));
        assert!(!config_names_a_command(br#"{"config":{"Entrypoint":[]}}"#));
        assert!(!config_names_a_command(
            br#"{"architecture":"wasm","os":"wasip2","layerDigests":[]}"#
        ));
        assert!(!config_names_a_command(b"not json"));
    }

    #[test]
    fn a_container_image_is_plain() {
        let m = manifest(
            PLAIN_CONFIG_MEDIA_TYPES[0],
            &["application/vnd.oci.image.layer.v1.tar+gzip"],
        );
        assert_eq!(
            classify("img", D1, &m).expect("classified"),
            ImageKind::Plain
        );
    }

    #[test]
    fn something_else_names_the_image_and_its_media_types() {
        let m = manifest(
            "application/vnd.cncf.helm.config.v1+json",
            &["application/x-tar"],
        );
        let err = classify("example.com/chart:1", D1, &m).expect_err("neither");
        let text = err.to_string();
        assert!(text.contains("example.com/chart:1"), "{text}");
        assert!(
            text.contains("application/vnd.cncf.helm.config.v1+json"),
            "{text}"
        );
        assert!(text.contains("application/x-tar"), "{text}");
    }

    #[test]
    fn a_wasm_config_without_a_wasm_layer_is_an_error() {
        let m = manifest(MEDIA_TYPE_WASM_CONFIG, &["application/octet-stream"]);
        let err = classify("img", D1, &m).expect_err("no layer");
        assert!(
            err.to_string().contains("application/octet-stream"),
            "{err}"
        );
        let m = manifest(
            MEDIA_TYPE_WASM_CONFIG,
            &["application/wasm", "application/wasm"],
        );
        assert!(matches!(
            classify("img", D1, &m),
            Err(ContentError::SeveralWasmLayers { count: 2, .. })
        ));
    }

    fn index(platforms: &[(&str, &str)]) -> Index {
        let json = serde_json::json!({
            "schemaVersion": 2,
            "manifests": platforms.iter().enumerate().map(|(i, (os, arch))| serde_json::json!({
                "mediaType": MEDIA_TYPE_OCI_MANIFEST,
                "digest": format!("sha256:{}", format!("{i}").repeat(64)),
                "size": 1,
                "platform": {"os": os, "architecture": arch},
            })).collect::<Vec<_>>(),
        });
        parse_index("img", json.to_string().as_bytes()).expect("index")
    }

    #[test]
    fn an_index_yields_its_wasm_manifest_first() {
        let i = index(&[("linux", "amd64"), ("wasip2", "wasm")]);
        let chosen = select_manifest("img", &i).expect("chosen");
        assert_eq!(chosen.platform.as_ref().expect("platform").os, "wasip2");
    }

    #[test]
    fn an_index_without_wasm_yields_the_hosts_manifest_or_its_only_one() {
        let i = index(&[("linux", "s390x"), ("linux", host_architecture())]);
        let chosen = select_manifest("img", &i).expect("chosen");
        assert_eq!(
            chosen.platform.as_ref().expect("platform").architecture,
            host_architecture()
        );
        let i = index(&[("plan9", "mips")]);
        assert!(select_manifest("img", &i).is_ok());
        let i = index(&[("plan9", "mips"), ("linux", "s390x")]);
        let err = select_manifest("img", &i).expect_err("no match");
        assert!(err.to_string().contains("plan9/mips, linux/s390x"), "{err}");
    }
}
