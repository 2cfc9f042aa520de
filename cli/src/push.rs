//! `spore push FILE.wasm REF`: reads the Wasm, records its world in an OCI Wasm artifact and
//! pushes it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::artifact::{self, ArtifactMetadata};
use crate::error::Error;
use crate::registry::RegistrySession;
use crate::world::{self, SporeEntry, WasmWorld};

#[derive(Debug, Clone)]
pub struct PushRequest {
    pub file: PathBuf,
    pub reference: String,
    pub insecure: bool,
    /// `KEY=VALUE` manifest annotations.
    pub annotations: Vec<String>,
    pub author: Option<String>,
}

/// What was pushed.
#[derive(Debug, Clone, Serialize)]
pub struct PushOutcome {
    /// `REGISTRY/REPOSITORY:TAG`.
    pub reference: String,
    /// The manifest digest.
    pub digest: String,
    pub layer_digest: String,
    pub layer_size: usize,
    pub world: WasmWorld,
    /// How Spore will run it; `None` when it cannot.
    pub entry: Option<SporeEntry>,
}

impl PushOutcome {
    /// `REGISTRY/REPOSITORY:TAG@sha256:...`.
    pub fn pinned_reference(&self) -> String {
        format!("{}@{}", self.reference, self.digest)
    }
}

/// Reads a file that must be a Wasm component or core module.
pub fn read_wasm_file(path: &Path) -> Result<(Vec<u8>, WasmWorld), Error> {
    let bytes = std::fs::read(path).map_err(|source| {
        if source.kind() == std::io::ErrorKind::NotFound {
            Error::FileNotFound {
                path: path.to_path_buf(),
            }
        } else {
            Error::ReadFile {
                path: path.to_path_buf(),
                source,
            }
        }
    })?;
    let world = world::read_world(&bytes).map_err(|source| Error::NotPushable {
        path: path.to_path_buf(),
        source,
    })?;
    Ok((bytes, world))
}

/// The creation time: `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
fn created_now() -> String {
    let at = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|secs| OffsetDateTime::from_unix_timestamp(secs).ok())
        .unwrap_or_else(OffsetDateTime::now_utc);
    let at = at.replace_nanosecond(0).unwrap_or(at);
    // Formatting a valid UTC time as RFC 3339 cannot fail for years 0..=9999.
    at.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_string())
}

/// The digest at the end of a manifest URL such as `.../manifests/sha256:abc`.
fn digest_from_manifest_url(url: &str) -> Option<String> {
    let last = url.rsplit('/').next()?;
    let hex = last.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then(|| last.to_string())
}

pub async fn push(request: PushRequest) -> Result<PushOutcome, Error> {
    let annotations = artifact::parse_annotations(&request.annotations)
        .map_err(|bad| Error::BadAnnotation { annotation: bad.0 })?;
    let (wasm, world) = read_wasm_file(&request.file)?;
    let session = RegistrySession::open(&request.reference, request.insecure)?;
    let metadata = ArtifactMetadata {
        created: created_now(),
        author: request.author.clone(),
        title: request
            .file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned()),
        annotations,
    };
    let layer_size = wasm.len();
    let built = artifact::build_artifact(wasm, &world, metadata)?;
    let layer_digest = built.config.layer_digests.concat();
    tracing::info!(
        reference = %session.reference,
        kind = %world.kind,
        size = layer_size,
        "pushing Wasm artifact"
    );

    let response = session
        .client
        .push(
            &session.reference,
            std::slice::from_ref(&built.layer),
            built.config_blob,
            &session.credentials.auth,
            Some(built.manifest),
        )
        .await
        .map_err(|e| session.error(e))?;
    let digest = match digest_from_manifest_url(&response.manifest_url) {
        Some(digest) => digest,
        None => session
            .client
            .fetch_manifest_digest(&session.reference, &session.credentials.auth)
            .await
            .map_err(|e| session.error(e))?,
    };
    let reference = match session.reference.tag() {
        Some(tag) => format!(
            "{}/{}:{tag}",
            session.reference.registry(),
            session.reference.repository()
        ),
        None => format!(
            "{}/{}",
            session.reference.registry(),
            session.reference.repository()
        ),
    };
    Ok(PushOutcome {
        reference,
        digest,
        layer_digest,
        layer_size,
        entry: world.spore_entry(),
        world,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_manifest_digest_is_read_from_its_url() {
        let hex = "a".repeat(64);
        assert_eq!(
            digest_from_manifest_url(&format!("http://r/v2/app/manifests/sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(
            digest_from_manifest_url("http://r/v2/app/manifests/v1"),
            None
        );
        assert_eq!(
            digest_from_manifest_url("http://r/v2/app/manifests/sha256:zz"),
            None
        );
    }

    #[test]
    fn created_is_rfc3339() {
        let created = created_now();
        assert!(
            OffsetDateTime::parse(&created, &Rfc3339).is_ok(),
            "{created}"
        );
    }

    #[test]
    fn a_missing_file_and_a_text_file_are_refused_before_any_network() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("absent.wasm");
        assert!(matches!(
            read_wasm_file(&missing),
            Err(Error::FileNotFound { .. })
        ));
        let text = dir.path().join("notes.wasm");
        std::fs::write(&text, "not wasm").expect("write");
        let err = read_wasm_file(&text).expect_err("text");
        assert!(err.to_string().contains("not WebAssembly"), "{err}");
    }
}
