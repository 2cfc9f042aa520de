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

/// The node's compile cache and containerd's content store, opened on first use.
pub struct GuestSource {
    engine: Engine,
    containerd_address: String,
    namespace: String,
    cache: OnceCell<Arc<CompileCache>>,
    store: OnceCell<Option<ContentStore>>,
    collected: std::sync::Once,
}

impl GuestSource {
    pub fn new(engine: Engine, containerd_address: String, namespace: String) -> Self {
        GuestSource {
            engine,
            containerd_address,
            namespace,
            cache: OnceCell::new(),
            store: OnceCell::new(),
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

    /// containerd's content store; `None` when the shim was not told containerd's address.
    async fn store(&self) -> Result<Option<&ContentStore>, ShimError> {
        let store = self
            .store
            .get_or_try_init(|| async {
                if self.containerd_address.is_empty() {
                    return Ok(None);
                }
                ContentStore::connect(&self.containerd_address, &self.namespace)
                    .await
                    .map(Some)
                    .map_err(ShimError::Content)
            })
            .await?;
        Ok(store.as_ref())
    }

    /// The Wasm layer of the container's image when the image is an OCI Wasm artifact (or an
    /// image whose layer is Wasm); `None` for an ordinary image, whose rootfs holds the `.wasm`.
    /// Only CRI containers name their image; others run from their rootfs.
    pub async fn artifact_layer(
        &self,
        _container_id: &str,
        spec: &ContainerSpec,
    ) -> Result<Option<WasmLayer>, ShimError> {
        let Ok(image) = content::image_name(&spec.annotations) else {
            return Ok(None);
        };
        let Some(store) = self.store().await? else {
            return Ok(None);
        };
        match store.image_kind(image).await {
            Ok(ImageKind::WasmArtifact(layer)) => {
                store
                    .check_artifact_support()
                    .await
                    .map_err(ShimError::Content)?;
                Ok(Some(layer))
            }
            Ok(ImageKind::Plain) => Ok(None),
            // An image that is neither: the error names it and the media types found.
            Err(err @ content::ContentError::NeitherWasmNorImage { .. }) => {
                Err(ShimError::Content(err))
            }
            Err(err) => {
                tracing::debug!(%err, image, "image not found in the content store; using the rootfs");
                Ok(None)
            }
        }
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
                let guest = content::artifact_guest(&self.engine, &cache, store, &layer)
                    .await
                    .map_err(ShimError::Artifact)?;
                self.collect_once(cache, store);
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
