//! The guest of an OCI Wasm artifact: from the compile cache when it holds the layer's code (the
//! layer is then not even read), else read from containerd's content store and compiled.

use std::path::PathBuf;
use std::sync::Arc;

use wasmtime::Engine;

use super::{ContentError, ContentStore, WasmLayer};
use crate::wasm::cache::{CompileCache, Source};
use crate::wasm::compile::{self, Guest, WasmError};

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Wasm(#[from] WasmError),
    #[error("image {image}: the layer digest {digest} is not a valid content digest")]
    BadDigest { image: String, digest: String },
    #[error("image {image}: the compile thread failed: {reason}")]
    Join { image: String, reason: String },
}

/// Compiles (or loads from `cache`) the Wasm layer `layer` of an artifact in `store`. The
/// blocking parts (verifying a cache entry, compiling) run on tokio's blocking threads. Errors
/// name the image.
pub async fn artifact_guest(
    engine: &Engine,
    cache: &Arc<CompileCache>,
    store: &ContentStore,
    layer: &WasmLayer,
) -> Result<Guest, ArtifactError> {
    let source = Source::layer(&layer.digest).map_err(|_| ArtifactError::BadDigest {
        image: layer.image.clone(),
        digest: layer.digest.clone(),
    })?;
    let shown_as = PathBuf::from(&layer.image);
    let join_error = |e: tokio::task::JoinError| ArtifactError::Join {
        image: layer.image.clone(),
        reason: e.to_string(),
    };
    let cached = {
        let (engine, cache, source, shown_as) = (
            engine.clone(),
            cache.clone(),
            source.clone(),
            shown_as.clone(),
        );
        tokio::task::spawn_blocking(move || compile::cached(&engine, &cache, &shown_as, source))
            .await
            .map_err(join_error)?
    };
    if let Some(guest) = cached {
        return Ok(guest?);
    }
    let bytes = store.read_layer(layer).await?;
    let (engine, cache) = (engine.clone(), cache.clone());
    let guest = tokio::task::spawn_blocking(move || {
        compile::compile_cached(&engine, &cache, &shown_as, source, &bytes)
    })
    .await
    .map_err(join_error)??;
    Ok(guest)
}
