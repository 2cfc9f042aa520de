//! `spore inspect REF`: fetches the manifest (choosing from an index), the config and, for a
//! Wasm artifact, its Wasm layer, and reports what the image holds and whether Spore runs it.

use oci_client::manifest::{OciImageManifest, OciManifest};
use sha2::Digest;

use crate::error::Error;
use crate::registry::RegistrySession;
use crate::report::{
    self, Content, Descriptor, FileReport, IndexEntry, InspectReport, Shape, choose_index_entry,
};
use crate::world;

#[derive(Debug, Clone)]
pub struct InspectRequest {
    pub reference: String,
    pub insecure: bool,
}

/// `spore inspect FILE`: reads a local Wasm file and says whether Spore runs it, as it would
/// once pushed with `spore push`.
pub fn inspect_file(path: &std::path::Path) -> Result<FileReport, Error> {
    let bytes = std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    let binary = world::read_world(&bytes);
    let verdict = report::wasm_verdict(&binary, "the file");
    let (binary, binary_error) = report::binary_parts(binary);
    Ok(FileReport {
        file: path.display().to_string(),
        size: bytes.len() as u64,
        digest: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&bytes))),
        binary,
        binary_error,
        verdict,
    })
}

pub async fn inspect(request: InspectRequest) -> Result<InspectReport, Error> {
    let session = RegistrySession::open(&request.reference, request.insecure)?;
    let (manifest, digest, index) = fetch_image_manifest(&session).await?;
    let config_blob = fetch_blob(&session, &manifest.config).await?;

    let (content, verdict) = match report::shape_of(&manifest) {
        Shape::WasmArtifact { layer } => {
            let wasm = fetch_blob(&session, &layer).await?;
            report::judge_wasm_artifact(&config_blob, world::read_world(&wasm))
        }
        Shape::BrokenWasmArtifact { reason } => {
            let (content, _) = report::judge_wasm_artifact(
                &config_blob,
                Err(world::WasmFileError::Invalid(reason.clone())),
            );
            (
                content,
                report::Verdict {
                    runs_as_wasm: false,
                    runs_as: None,
                    reason: format!("Spore cannot run this Wasm artifact: {reason}"),
                },
            )
        }
        Shape::ContainerImage => report::judge_container_image(&config_blob),
        Shape::Other => (Content::Other, report::judge_other(&manifest)),
    };

    Ok(InspectReport {
        reference: session.reference.whole(),
        digest,
        manifest_media_type: manifest.media_type.clone(),
        artifact_type: manifest.artifact_type.clone(),
        index,
        config: Descriptor::from(&manifest.config),
        layers: manifest.layers.iter().map(Descriptor::from).collect(),
        content,
        verdict,
    })
}

/// The image manifest the reference names; for an index, the entry `choose_index_entry` picks,
/// with the index's entries.
async fn fetch_image_manifest(
    session: &RegistrySession,
) -> Result<(OciImageManifest, String, Vec<IndexEntry>), Error> {
    let auth = &session.credentials.auth;
    let (manifest, digest) = session
        .client
        .pull_manifest(&session.reference, auth)
        .await
        .map_err(|e| session.error(e))?;
    match manifest {
        OciManifest::Image(manifest) => Ok((manifest, digest, Vec::new())),
        OciManifest::ImageIndex(index) => {
            let entries: Vec<IndexEntry> = index.manifests.iter().map(IndexEntry::from).collect();
            let chosen = choose_index_entry(&index.manifests).ok_or_else(|| {
                let platforms: Vec<String> = entries
                    .iter()
                    .map(|e| e.platform.clone().unwrap_or_else(|| "no platform".into()))
                    .collect();
                Error::BadRegistryContent {
                    registry: session.registry().to_string(),
                    reason: format!(
                        "{} is an image index without a wasm or linux platform for this \
                         machine (platforms: {})",
                        session.reference,
                        platforms.join(", ")
                    ),
                }
            })?;
            let by_digest = session.reference.clone_with_digest(chosen.digest.clone());
            let (manifest, digest) = session
                .client
                .pull_manifest(&by_digest, auth)
                .await
                .map_err(|e| session.error(e))?;
            match manifest {
                OciManifest::Image(manifest) => Ok((manifest, digest, entries)),
                OciManifest::ImageIndex(_) => Err(Error::BadRegistryContent {
                    registry: session.registry().to_string(),
                    reason: format!("the index entry {} is itself an index", chosen.digest),
                }),
            }
        }
    }
}

async fn fetch_blob(
    session: &RegistrySession,
    descriptor: &oci_client::manifest::OciDescriptor,
) -> Result<Vec<u8>, Error> {
    let mut blob = Vec::new();
    session
        .client
        .pull_blob(&session.reference, descriptor, &mut blob)
        .await
        .map_err(|e| session.error(e))?;
    Ok(blob)
}
