//! OCI Wasm artifacts in containerd's content store. containerd's CRI pulls an artifact (config
//! `application/vnd.wasm.config.v0+json`, one `application/wasm` layer) but does not unpack it,
//! so the shim reads the layer itself over containerd's gRPC API:
//! image name (from the CRI annotation) → image target → index → manifest → Wasm layer → bytes,
//! each blob checked against its digest.

pub mod guest;
pub mod manifest;
pub mod store;
pub mod version;

use std::collections::HashMap;
use std::path::PathBuf;

pub use guest::{ArtifactError, artifact_guest};
pub use manifest::{ImageKind, WasmLayer};
pub use store::{ContainerImage, ContentStore};
pub use version::check_artifact_support;

/// The annotation containerd's CRI (1.7 and 2.x, `DefaultCRIAnnotations`) puts on every
/// ordinary container's OCI spec: the image as the pod spec named it (the kubelet's
/// `UserSpecifiedImage`), or else the name containerd resolved it to.
pub const IMAGE_NAME_ANNOTATION: &str = "io.kubernetes.cri.image-name";
/// The same for the pod's sandbox container (containerd 2.x only).
pub const SANDBOX_IMAGE_NAME_ANNOTATION: &str = "io.kubernetes.cri.podsandbox.image-name";

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("connecting to containerd at {address}: {reason}")]
    Connect { address: PathBuf, reason: String },
    #[error("{0:?} is not a valid containerd namespace")]
    BadNamespace(String),
    #[error("containerd {call} ({what}): {message} ({code:?})")]
    Rpc {
        call: &'static str,
        what: String,
        code: tonic::Code,
        message: String,
    },
    #[error(
        "the container's OCI spec has no {IMAGE_NAME_ANNOTATION} annotation: Spore finds OCI Wasm \
         artifacts by the image name that containerd's CRI records there"
    )]
    NoImageAnnotation,
    #[error("image {image} is not in containerd's namespace {namespace} (tried {})", tried.join(", "))]
    ImageNotFound {
        image: String,
        namespace: String,
        tried: Vec<String>,
    },
    #[error("image {image} in containerd has no target descriptor")]
    NoTarget { image: String },
    #[error(
        "image {image}: its target has media type {media_type}, which is neither an OCI/Docker manifest nor an index"
    )]
    NotAManifest { image: String, media_type: String },
    #[error("image {image}: its {what} is not valid JSON: {reason}")]
    Json {
        image: String,
        what: &'static str,
        reason: String,
    },
    #[error(
        "image {image} has no manifest Spore can run: it offers the platforms [{}]; Spore runs a \
         wasm/wasip1/wasip2 manifest, or one for this host, or the only one",
        platforms.join(", ")
    )]
    NoManifestForPlatform {
        image: String,
        platforms: Vec<String>,
    },
    #[error(
        "image {image} is neither an OCI Wasm artifact nor a container image: its config has media \
         type {config_media_type} and its layers [{}]; Spore runs artifacts with config \
         application/vnd.wasm.config.v0+json and an application/wasm layer, or container images \
         with a .wasm entrypoint",
        layer_media_types.join(", ")
    )]
    NeitherWasmNorImage {
        image: String,
        config_media_type: String,
        layer_media_types: Vec<String>,
    },
    #[error(
        "image {image} has a Wasm config but no Wasm layer: its layers are [{}]; expected one \
         application/wasm (or application/vnd.bytecodealliance.wasm.component.layer.v0+wasm) layer",
        layer_media_types.join(", ")
    )]
    NoWasmLayer {
        image: String,
        layer_media_types: Vec<String>,
    },
    #[error("image {image} has {count} Wasm layers; an OCI Wasm artifact has exactly one")]
    SeveralWasmLayers { image: String, count: usize },
    #[error("image {image} is a container image, not an OCI Wasm artifact")]
    NotAnArtifact { image: String },
    #[error("blob {digest} is {size} bytes, over Spore's limit of {limit}")]
    TooLarge {
        digest: String,
        size: u64,
        limit: u64,
    },
    #[error("blob {digest}: expected {expected} bytes, containerd sent {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {expected} does not match its digest: its content hashes to {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("digest {0} uses an algorithm Spore does not check (sha256 and sha512 only)")]
    UnsupportedDigest(String),
    #[error("writing {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "containerd {version} cannot pull OCI Wasm artifacts (its pull fails with \"mismatched \
         image rootfs and manifest layers\"); Spore needs {needed}",
        needed = version::NEEDED
    )]
    ContainerdTooOld { version: String },
}

impl ContentError {
    pub(crate) fn rpc(call: &'static str, what: &str, status: tonic::Status) -> Self {
        ContentError::Rpc {
            call,
            what: what.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }
}

/// The image a CRI container was created from, from its OCI spec's annotations.
pub fn image_name(annotations: &HashMap<String, String>) -> Result<&str, ContentError> {
    annotations
        .get(IMAGE_NAME_ANNOTATION)
        .or_else(|| annotations.get(SANDBOX_IMAGE_NAME_ANNOTATION))
        .map(String::as_str)
        .filter(|name| !name.is_empty())
        .ok_or(ContentError::NoImageAnnotation)
}

/// The names under which containerd may store `image`: as given, then normalized the way
/// containerd's CRI normalizes references (`docker.io/` for names without a registry,
/// `library/` for single-component Docker Hub names, `:latest` when there is no tag or digest).
pub fn candidate_names(image: &str) -> Vec<String> {
    let mut names = vec![image.to_string()];
    if image.starts_with("sha256:") {
        return names;
    }
    let (first, rest) = image.split_once('/').unwrap_or(("", image));
    let has_registry =
        !first.is_empty() && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut normalized = if has_registry {
        image.to_string()
    } else if first.is_empty() {
        format!("docker.io/library/{rest}")
    } else {
        format!("docker.io/{image}")
    };
    let last = normalized.rsplit('/').next().unwrap_or_default();
    if !last.contains(':') && !last.contains('@') {
        normalized.push_str(":latest");
    }
    if normalized != image {
        names.push(normalized);
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_normalize_like_containerd() {
        assert_eq!(
            candidate_names("nginx"),
            vec!["nginx", "docker.io/library/nginx:latest"]
        );
        assert_eq!(
            candidate_names("spore/hello:1"),
            vec!["spore/hello:1", "docker.io/spore/hello:1"]
        );
        assert_eq!(
            candidate_names("127.0.0.1:5000/spore/hello:1"),
            vec!["127.0.0.1:5000/spore/hello:1"]
        );
        assert_eq!(
            candidate_names("localhost/app"),
            vec!["localhost/app", "localhost/app:latest"]
        );
        assert_eq!(
            candidate_names("ghcr.io/a/b@sha256:00"),
            vec!["ghcr.io/a/b@sha256:00"]
        );
        assert_eq!(candidate_names("sha256:abc"), vec!["sha256:abc"]);
    }

    #[test]
    fn the_image_comes_from_the_cri_annotation() {
        let mut annotations = HashMap::new();
        assert!(matches!(
            image_name(&annotations),
            Err(ContentError::NoImageAnnotation)
        ));
        annotations.insert(IMAGE_NAME_ANNOTATION.to_string(), "r/app:1".to_string());
        assert_eq!(image_name(&annotations).expect("named"), "r/app:1");
    }
}
