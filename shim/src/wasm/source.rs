//! Where a container's Wasm comes from, compiled through the node's cache: an OCI Wasm artifact
//! read from containerd's content store (the image named in the CRI annotations), or a `.wasm`
//! file in the rootfs of an ordinary image (named by the entrypoint, opened inside the rootfs).

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::OnceCell;
use wasmtime::Engine;

use crate::containerd::options::RuntimeOptions;
use crate::error::ShimError;
use crate::host::entrypoint::Entrypoint;
use crate::spec::ContainerSpec;
use crate::wasm::cache::{CompileCache, Source};
use crate::wasm::compile::{self, Guest};
use crate::wasm::content::{self, ContentStore, ImageKind, WasmLayer};

/// Where a Wasm container's code is.
#[derive(Debug)]
pub enum GuestOrigin {
    /// The Wasm layer of an image in containerd's content store.
    Artifact(WasmLayer),
    /// A file of the container's rootfs.
    Entrypoint(Entrypoint),
}

/// An image whose Wasm is a layer in containerd's content store.
#[derive(Debug)]
pub struct ArtifactImage {
    pub layer: WasmLayer,
    /// Whether the image config names an Entrypoint or Cmd, so that containerd's `args[0]` is
    /// a program name; when not, every arg is the pod's and the guest's `argv[0]` is
    /// [`ARTIFACT_PROGRAM_NAME`].
    pub args_name_program: bool,
}

/// `argv[0]` of the guest of an artifact whose config names no command.
pub const ARTIFACT_PROGRAM_NAME: &str = "app.wasm";

impl ArtifactImage {
    /// The guest's argv from containerd's process args.
    pub fn guest_args(&self, process_args: &[String]) -> Vec<String> {
        if self.args_name_program {
            return process_args.to_vec();
        }
        std::iter::once(ARTIFACT_PROGRAM_NAME.to_string())
            .chain(process_args.iter().cloned())
            .collect()
    }
}

/// The node's compile cache, opened on first use, and containerd's content store, connected to
/// while containers are created ([`GuestSource::release_store`] lets the connection go).
pub struct GuestSource {
    engine: Engine,
    containerd_address: String,
    namespace: String,
    cache: OnceCell<Arc<CompileCache>>,
    store: tokio::sync::Mutex<Option<ContentStore>>,
    collected: std::sync::Once,
}

impl GuestSource {
    pub fn new(engine: Engine, containerd_address: String, namespace: String) -> Self {
        GuestSource {
            engine,
            containerd_address,
            namespace,
            cache: OnceCell::new(),
            store: tokio::sync::Mutex::new(None),
            collected: std::sync::Once::new(),
        }
    }

    async fn cache(&self, options: &RuntimeOptions) -> Result<Arc<CompileCache>, ShimError> {
        let config = options.cache_config();
        let engine = self.engine.clone();
        self.cache
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || CompileCache::open(&engine, config))
                    .await
                    .map_err(|e| ShimError::TaskFailed(format!("opening the compile cache: {e}")))?
                    .map(Arc::new)
                    .map_err(ShimError::CompileCache)
            })
            .await
            .cloned()
    }

    /// containerd's content store (connecting, if there is no connection); `None` when the shim
    /// was not told containerd's address.
    async fn store(&self) -> Result<Option<ContentStore>, ShimError> {
        if self.containerd_address.is_empty() {
            return Ok(None);
        }
        let mut store = self.store.lock().await;
        if store.is_none() {
            let connected = ContentStore::connect(&self.containerd_address, &self.namespace)
                .await
                .map_err(ShimError::Content)?;
            *store = Some(connected);
        }
        Ok(store.clone())
    }

    /// Lets the connection to the content store go once no one uses it (it is only needed while
    /// a container is created): the gRPC channel's buffers and tasks are about 60 KiB of an idle
    /// pod's heap. The next create connects again (the container-start bench showed no change).
    pub async fn release_store(&self) {
        self.store.lock().await.take();
    }

    /// The Wasm layer of the container's image when the image is an OCI Wasm artifact or an
    /// image whose layer is Wasm; `None` for an ordinary image, whose rootfs holds the `.wasm`.
    /// The image is the one containerd created the container from (its container record; for
    /// CRI, the image ID the kubelet pulled), else the one the CRI annotation names.
    pub async fn artifact_layer(
        &self,
        container_id: &str,
        spec: &ContainerSpec,
    ) -> Result<Option<ArtifactImage>, ShimError> {
        let store = match self.store().await {
            Ok(Some(store)) => store,
            Ok(None) => return Ok(None),
            // Without containerd's API the image cannot be told; the rootfs is what is left (a
            // container without one then fails naming its missing entrypoint).
            Err(err) => {
                tracing::warn!(%err, container_id, "cannot reach containerd's content store; looking in the rootfs only");
                return Ok(None);
            }
        };
        let annotated = content::image_name(&spec.annotations).ok();
        let recorded = match store.container_image(container_id).await {
            Ok(recorded) => recorded,
            Err(err) => {
                tracing::debug!(%err, container_id, "no container record; using the CRI annotation");
                None
            }
        };
        // By ID first (exactly the image pulled), then by name.
        let mut candidates: Vec<&str> = Vec::new();
        if let Some(recorded) = &recorded {
            candidates.extend(recorded.id.as_deref());
            candidates.push(&recorded.name);
        }
        candidates.extend(annotated);
        let shown = annotated.or(recorded.as_ref().map(|r| r.name.as_str()));
        for image in candidates.into_iter().filter(|c| !c.is_empty()) {
            match store.image_kind(image).await {
                Ok(ImageKind::WasmArtifact(mut layer)) => {
                    store
                        .check_artifact_support()
                        .await
                        .map_err(ShimError::Content)?;
                    let args_name_program = store
                        .config_names_a_command(&layer)
                        .await
                        .map_err(ShimError::Content)?;
                    if let Some(shown) = shown {
                        layer.image = shown.to_string();
                    }
                    return Ok(Some(ArtifactImage {
                        layer: *layer,
                        args_name_program,
                    }));
                }
                Ok(ImageKind::Plain) => return Ok(None),
                // An image that is neither: the error names it and the media types found.
                Err(err @ content::ContentError::NeitherWasmNorImage { .. }) => {
                    return Err(ShimError::Content(err));
                }
                Err(err) => {
                    tracing::debug!(%err, image, "image not in the content store");
                }
            }
        }
        Ok(None)
    }

    /// Compiles (or loads from the cache) the guest of a container; returns it with the name
    /// errors use for it.
    pub async fn guest(
        &self,
        origin: GuestOrigin,
        options: &RuntimeOptions,
    ) -> Result<(Guest, PathBuf), ShimError> {
        let cache = self.cache(options).await?;
        match origin {
            GuestOrigin::Artifact(layer) => {
                let store = self.store().await?.ok_or(ShimError::NoContainerdAddress)?;
                let name = PathBuf::from(&layer.image);
                let guest = content::artifact_guest(&self.engine, &cache, &store, &layer)
                    .await
                    .map_err(ShimError::Artifact)?;
                self.collect_once(cache, &store);
                Ok((guest, name))
            }
            GuestOrigin::Entrypoint(file) => {
                let name = file.shown_as().to_path_buf();
                let engine = self.engine.clone();
                let shown = name.clone();
                let guest = tokio::task::spawn_blocking(move || {
                    let bytes = file.read_all()?;
                    let source = Source::file(&bytes);
                    compile::compile_cached(&engine, &cache, &shown, source, &bytes)
                        .map_err(ShimError::Wasm)
                })
                .await
                .map_err(|e| ShimError::TaskFailed(format!("compiling the guest: {e}")))??;
                Ok((guest, name))
            }
        }
    }

    /// Once per shim, in the background: removes compiled code of layers no longer in
    /// containerd's content store (images deleted since). Entries of rootfs files are kept.
    fn collect_once(&self, cache: Arc<CompileCache>, store: &ContentStore) {
        self.collected.call_once(|| {
            let store = store.clone();
            tokio::spawn(async move {
                let present = match store.digests().await {
                    Ok(present) => present,
                    Err(err) => return tracing::warn!(%err, "listing content for cache cleanup"),
                };
                let removed = tokio::task::spawn_blocking(move || {
                    cache.retain(|digest| present.contains(&digest.to_string()))
                })
                .await;
                match removed {
                    Ok(Ok(removed)) => tracing::debug!(?removed, "compile cache cleaned"),
                    Ok(Err(err)) => tracing::warn!(%err, "compile cache cleanup"),
                    Err(err) => tracing::warn!(%err, "compile cache cleanup task"),
                }
            });
        });
    }

    pub fn cache_stats(&self) -> Option<(u64, u64)> {
        self.cache
            .get()
            .map(|c| (c.stats().hits(), c.stats().misses()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(args_name_program: bool) -> ArtifactImage {
        ArtifactImage {
            layer: WasmLayer {
                image: "r/app:1".into(),
                manifest_digest: "sha256:m".into(),
                digest: "sha256:l".into(),
                media_type: "application/wasm".into(),
                size: 1,
                config: content::manifest::Descriptor {
                    media_type: spore_format::WASM_CONFIG_MEDIA_TYPE.into(),
                    digest: "sha256:c".into(),
                    size: 2,
                    platform: None,
                },
            },
            args_name_program,
        }
    }

    #[test]
    fn without_a_command_in_the_config_every_arg_is_the_pods() {
        let args = vec!["a".to_string(), "b".to_string()];
        assert_eq!(artifact(false).guest_args(&args), ["app.wasm", "a", "b"]);
        assert_eq!(artifact(true).guest_args(&args), ["a", "b"]);
    }
}
