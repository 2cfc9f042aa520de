//! containerd's image and content stores over its gRPC API: from an image name to the manifest,
//! and from a descriptor to its bytes, checked against the digest.

use std::collections::HashSet;
use std::path::Path;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::{
    GetContainerRequest, GetImageRequest, ListContentRequest, ReadContentRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request};
use sha2::Digest as _;
use tokio::io::AsyncWriteExt;

use super::manifest::{self, Descriptor, ImageKind, WasmLayer};
use super::{ContentError, candidate_names};

/// The gRPC metadata header that selects a containerd namespace.
const NAMESPACE_HEADER: &str = "containerd-namespace";
/// Manifests, indexes and configs larger than this are refused (containerd's own limit is 4 MiB).
const MAX_METADATA_BYTES: u64 = 8 << 20;
/// Wasm layers larger than this are refused.
pub const MAX_LAYER_BYTES: u64 = 1 << 30;
/// How deep nested indexes are followed.
const MAX_INDEX_DEPTH: usize = 3;

/// The extension in which containerd's CRI records a container's metadata (with `ImageRef`).
const CRI_METADATA_EXTENSION: &str = "io.cri-containerd.container.metadata";

/// The image a container was created from, as containerd recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerImage {
    /// The image's name in the container record.
    pub name: String,
    /// The image ID (`sha256:` of its config) CRI recorded, for CRI containers.
    pub id: Option<String>,
}

/// A client for one containerd namespace.
#[derive(Clone)]
pub struct ContentStore {
    channel: Channel,
    namespace: String,
}

impl ContentStore {
    /// Connects to containerd's socket (the shim's `-address`) for `namespace` (its
    /// `-namespace`, `k8s.io` under CRI).
    pub async fn connect(address: impl AsRef<Path>, namespace: &str) -> Result<Self, ContentError> {
        // containerd passes its gRPC address as a path; accept a `unix://` URL too.
        let address = address.as_ref();
        let address = address
            .to_str()
            .and_then(|a| a.strip_prefix("unix://"))
            .map(Path::new)
            .unwrap_or(address);
        let channel =
            containerd_client::connect(address)
                .await
                .map_err(|e| ContentError::Connect {
                    address: address.to_path_buf(),
                    reason: format!("{e}"),
                })?;
        Ok(Self::from_channel(channel, namespace))
    }

    pub fn from_channel(channel: Channel, namespace: &str) -> Self {
        ContentStore {
            channel,
            namespace: namespace.to_string(),
        }
    }

    fn request<T>(&self, message: T) -> Result<Request<T>, ContentError> {
        let mut request = Request::new(message);
        let value = self
            .namespace
            .parse()
            .map_err(|_| ContentError::BadNamespace(self.namespace.clone()))?;
        request.metadata_mut().insert(NAMESPACE_HEADER, value);
        Ok(request)
    }

    /// containerd's version string (`v2.1.9`, `1.7.24~ds1`, ...).
    pub async fn version(&self) -> Result<String, ContentError> {
        let response = VersionClient::new(self.channel.clone())
            .version(Request::new(()))
            .await
            .map_err(|status| ContentError::rpc("Version", "containerd", status))?;
        Ok(response.into_inner().version)
    }

    /// Fails with a clear error when this containerd cannot pull OCI Wasm artifacts.
    pub async fn check_artifact_support(&self) -> Result<(), ContentError> {
        super::version::check_artifact_support(&self.version().await?)
    }

    /// The image's name as containerd knows it and its target descriptor. `image` may be as
    /// the pod spec wrote it (`nginx:1`): the normalized forms are tried too.
    pub async fn image_target(&self, image: &str) -> Result<(String, Descriptor), ContentError> {
        let mut client = ImagesClient::new(self.channel.clone());
        let tried = candidate_names(image);
        for name in &tried {
            let request = self.request(GetImageRequest { name: name.clone() })?;
            match client.get(request).await {
                Ok(response) => {
                    let target = response
                        .into_inner()
                        .image
                        .and_then(|i| i.target)
                        .ok_or_else(|| ContentError::NoTarget {
                            image: name.clone(),
                        })?;
                    return Ok((
                        name.clone(),
                        Descriptor {
                            media_type: target.media_type,
                            digest: target.digest,
                            size: target.size,
                            platform: None,
                        },
                    ));
                }
                Err(status) if status.code() == Code::NotFound => continue,
                Err(status) => return Err(ContentError::rpc("Images.Get", name, status)),
            }
        }
        Err(ContentError::ImageNotFound {
            image: image.to_string(),
            namespace: self.namespace.clone(),
            tried,
        })
    }

    /// Whether `image` is an OCI Wasm artifact (and then its layer) or a plain image.
    pub async fn image_kind(&self, image: &str) -> Result<ImageKind, ContentError> {
        let (name, mut target) = self.image_target(image).await?;
        for _ in 0..MAX_INDEX_DEPTH {
            if manifest::is_index(&target.media_type) {
                let bytes = self.read_blob(&target, MAX_METADATA_BYTES).await?;
                let index = manifest::parse_index(&name, &bytes)?;
                target = manifest::select_manifest(&name, &index)?.clone();
                continue;
            }
            if !manifest::is_manifest(&target.media_type) {
                return Err(ContentError::NotAManifest {
                    image: name,
                    media_type: target.media_type,
                });
            }
            let bytes = self.read_blob(&target, MAX_METADATA_BYTES).await?;
            let parsed = manifest::parse_manifest(&name, &bytes)?;
            return manifest::classify(&name, &target.digest, &parsed);
        }
        Err(ContentError::NotAManifest {
            image: name,
            media_type: format!("{} (indexes nested too deep)", target.media_type),
        })
    }

    /// The image containerd created container `id` from: for a CRI container, the image ID the
    /// kubelet pulled (the CRI keeps an image named by it, so a re-tag in between changes
    /// nothing); else the image name in containerd's container record (`ctr`, `nerdctl` and
    /// other clients). `None` when containerd has no record of the container.
    pub async fn container_image(&self, id: &str) -> Result<Option<ContainerImage>, ContentError> {
        let request = self.request(GetContainerRequest { id: id.to_string() })?;
        let container = match ContainersClient::new(self.channel.clone())
            .get(request)
            .await
        {
            Ok(response) => response.into_inner().container,
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(ContentError::rpc("Containers.Get", id, status)),
        };
        let Some(container) = container else {
            return Ok(None);
        };
        let cri_image_id = container
            .extensions
            .get(CRI_METADATA_EXTENSION)
            .and_then(|any| serde_json::from_slice::<serde_json::Value>(&any.value).ok())
            .and_then(|v| v["Metadata"]["ImageRef"].as_str().map(str::to_string))
            .filter(|r| !r.is_empty());
        Ok(Some(ContainerImage {
            name: container.image,
            id: cri_image_id,
        }))
    }

    /// The Wasm layer of the artifact `image`; a plain image is an error here.
    pub async fn wasm_layer(&self, image: &str) -> Result<WasmLayer, ContentError> {
        match self.image_kind(image).await? {
            ImageKind::WasmArtifact(layer) => Ok(*layer),
            ImageKind::Plain => Err(ContentError::NotAnArtifact {
                image: image.to_string(),
            }),
        }
    }

    /// Whether the config of `layer`'s image names a command (see
    /// [`manifest::config_names_a_command`]).
    pub async fn config_names_a_command(&self, layer: &WasmLayer) -> Result<bool, ContentError> {
        let bytes = self.read_blob(&layer.config, MAX_METADATA_BYTES).await?;
        Ok(manifest::config_names_a_command(&bytes))
    }

    /// The bytes of an artifact's Wasm layer, checked against its digest and size.
    pub async fn read_layer(&self, layer: &WasmLayer) -> Result<Vec<u8>, ContentError> {
        let descriptor = Descriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: i64::try_from(layer.size).unwrap_or(i64::MAX),
            platform: None,
        };
        self.read_blob(&descriptor, MAX_LAYER_BYTES).await
    }

    /// The bytes of `descriptor` (at most `limit`), checked against its digest and size.
    pub async fn read_blob(
        &self,
        descriptor: &Descriptor,
        limit: u64,
    ) -> Result<Vec<u8>, ContentError> {
        let mut bytes = Vec::new();
        self.stream_blob(descriptor, limit, |chunk| {
            bytes.extend_from_slice(chunk);
            async { Ok(()) }
        })
        .await?;
        Ok(bytes)
    }

    /// Streams `descriptor` into a new file at `path`, checked against its digest and size; the
    /// file is removed when the check fails.
    pub async fn copy_blob_to_file(
        &self,
        descriptor: &Descriptor,
        path: &Path,
    ) -> Result<(), ContentError> {
        let io_error = |source| ContentError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = tokio::fs::File::create(path).await.map_err(io_error)?;
        let file = std::sync::Arc::new(tokio::sync::Mutex::new(file));
        let result = self
            .stream_blob(descriptor, MAX_LAYER_BYTES, |chunk| {
                let file = file.clone();
                let chunk = chunk.to_vec();
                async move {
                    let mut file = file.lock().await;
                    file.write_all(&chunk).await
                }
            })
            .await;
        let flushed = match result {
            Ok(()) => file.lock().await.sync_all().await.map_err(io_error),
            Err(e) => Err(e),
        };
        if flushed.is_err() {
            let _ = tokio::fs::remove_file(path).await;
        }
        flushed
    }

    async fn stream_blob<F, Fut>(
        &self,
        descriptor: &Descriptor,
        limit: u64,
        mut sink: F,
    ) -> Result<(), ContentError>
    where
        F: FnMut(&[u8]) -> Fut,
        Fut: std::future::Future<Output = std::io::Result<()>>,
    {
        let digest = &descriptor.digest;
        let expected = u64::try_from(descriptor.size).unwrap_or(0);
        if expected > limit {
            return Err(ContentError::TooLarge {
                digest: digest.clone(),
                size: expected,
                limit,
            });
        }
        let mut hasher = BlobHasher::new(digest)?;
        let request = self.request(ReadContentRequest {
            digest: digest.clone(),
            offset: 0,
            size: 0,
        })?;
        let mut stream = ContentClient::new(self.channel.clone())
            .read(request)
            .await
            .map_err(|status| ContentError::rpc("Content.Read", digest, status))?
            .into_inner();
        let mut received: u64 = 0;
        while let Some(message) = stream
            .message()
            .await
            .map_err(|status| ContentError::rpc("Content.Read", digest, status))?
        {
            received += message.data.len() as u64;
            if received > expected {
                return Err(ContentError::SizeMismatch {
                    digest: digest.clone(),
                    expected,
                    actual: received,
                });
            }
            hasher.update(&message.data);
            sink(&message.data)
                .await
                .map_err(|source| ContentError::Io {
                    path: digest.into(),
                    source,
                })?;
        }
        if received != expected {
            return Err(ContentError::SizeMismatch {
                digest: digest.clone(),
                expected,
                actual: received,
            });
        }
        hasher.verify()
    }

    /// The digests of everything in this namespace's content store (for the compile cache's
    /// garbage collection).
    pub async fn digests(&self) -> Result<HashSet<String>, ContentError> {
        let request = self.request(ListContentRequest { filters: vec![] })?;
        let mut stream = ContentClient::new(self.channel.clone())
            .list(request)
            .await
            .map_err(|status| ContentError::rpc("Content.List", &self.namespace, status))?
            .into_inner();
        let mut digests = HashSet::new();
        while let Some(message) = stream
            .message()
            .await
            .map_err(|status| ContentError::rpc("Content.List", &self.namespace, status))?
        {
            digests.extend(message.info.into_iter().map(|info| info.digest));
        }
        Ok(digests)
    }
}

/// Hashes a blob with its digest's algorithm.
enum BlobHasher {
    Sha256(String, sha2::Sha256),
    Sha512(String, sha2::Sha512),
}

impl BlobHasher {
    fn new(digest: &str) -> Result<Self, ContentError> {
        match digest.split_once(':') {
            Some(("sha256", _)) => Ok(BlobHasher::Sha256(digest.to_string(), sha2::Sha256::new())),
            Some(("sha512", _)) => Ok(BlobHasher::Sha512(digest.to_string(), sha2::Sha512::new())),
            _ => Err(ContentError::UnsupportedDigest(digest.to_string())),
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            BlobHasher::Sha256(_, h) => h.update(bytes),
            BlobHasher::Sha512(_, h) => h.update(bytes),
        }
    }

    fn verify(self) -> Result<(), ContentError> {
        let (expected, actual) = match self {
            BlobHasher::Sha256(d, h) => (d, format!("sha256:{}", hex::encode(h.finalize()))),
            BlobHasher::Sha512(d, h) => (d, format!("sha512:{}", hex::encode(h.finalize()))),
        };
        if expected == actual {
            Ok(())
        } else {
            Err(ContentError::DigestMismatch { expected, actual })
        }
    }
}
