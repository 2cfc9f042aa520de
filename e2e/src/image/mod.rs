//! Images built locally, with no internet: OCI image layouts written here (tar+gzip layer,
//! config, manifest, index; sha256 digests), then pushed to the loopback registry with `skopeo`
//! or over the distribution API, or imported into containerd with `ctr images import`.
//!
//! - [`ImageBuilder`]: a plain image whose rootfs holds given files (busybox, a `.wasm` file).
//! - [`WasmArtifact`]: an OCI Wasm artifact (CNCF TAG Runtime layout).
//! - [`busybox`], [`pause`]: the two images the tests need everywhere.

mod builder;
mod fixtures;
pub mod spore_images;
mod wasm;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

pub use builder::{ImageBuilder, ImageConfig, RootfsEntry};
pub use fixtures::{BUSYBOX_APPLETS, BUSYBOX_BINARY, busybox, pause, pause_binary, pause_source};
pub use wasm::{ComponentInfo, WasmArtifact, wasm_layer_image};

use crate::containerd::{Containerd, ContainerdError};
use crate::http::{self, HttpError};

pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_IMAGE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_TYPE_WASM_CONFIG: &str = spore_format::WASM_CONFIG_MEDIA_TYPE;
pub const MEDIA_TYPE_WASM_LAYER: &str = spore_format::WASM_LAYER_MEDIA_TYPE;
pub const MEDIA_TYPE_WASM_COMPONENT_LAYER: &str = spore_format::COMPONENT_LAYER_MEDIA_TYPE;

/// `PATH` of the images built here.
pub const DEFAULT_PATH_ENV: &str =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad image entry path {0:?}: it must be absolute and must not contain `..`")]
    BadPath(String),
    #[error("{tool} failed ({status}): {stderr}")]
    Tool {
        tool: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("could not run {tool}: {source}")]
    Spawn {
        tool: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("registry refused {what}: HTTP {status}: {body}")]
    Registry {
        what: String,
        status: u16,
        body: String,
    },
    #[error(transparent)]
    Containerd(#[from] ContainerdError),
    #[error("could not build the pause program with gcc: {0}")]
    Pause(String),
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A blob of a layout: its bytes, digest and media type.
#[derive(Clone, Debug)]
pub struct Blob {
    pub media_type: String,
    pub digest: String,
    pub data: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, data: Vec<u8>) -> Self {
        Blob {
            media_type: media_type.to_owned(),
            digest: sha256_digest(&data),
            data,
        }
    }

    fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.data.len(),
        })
    }
}

/// An image (or artifact) in memory: manifest, config and layers, ready to be written as an OCI
/// layout, pushed or imported.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// The platform recorded in the layout's index (`None` for artifacts).
    pub platform: Option<(String, String)>,
}

impl BuiltImage {
    fn assemble(config: Blob, layers: Vec<Blob>, platform: Option<(String, String)>) -> Self {
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_MANIFEST,
            "config": config.descriptor(),
            "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
        });
        BuiltImage {
            manifest: Blob::new(MEDIA_TYPE_MANIFEST, manifest.to_string().into_bytes()),
            config,
            layers,
            platform,
        }
    }

    /// The manifest digest (`sha256:...`).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    fn index(&self, annotations: BTreeMap<&str, &str>) -> serde_json::Value {
        let mut descriptor = self.manifest.descriptor();
        if let Some((os, arch)) = &self.platform {
            descriptor["platform"] = serde_json::json!({ "os": os, "architecture": arch });
        }
        descriptor["annotations"] = serde_json::json!(annotations);
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_TYPE_INDEX,
            "manifests": [descriptor],
        })
    }

    fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.manifest)
            .chain(std::iter::once(&self.config))
            .chain(self.layers.iter())
    }

    /// Writes an OCI image layout into `dir` (created if needed) with the image tagged `tag`
    /// (`org.opencontainers.image.ref.name`), so that `oci:DIR:TAG` names it for skopeo.
    pub fn write_layout(&self, dir: &Path, tag: &str) -> Result<OciLayout, ImageError> {
        let blobs_dir = dir.join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs_dir).map_err(io_err("creating", &blobs_dir))?;
        for blob in self.blobs() {
            let path = blobs_dir.join(blob.digest.trim_start_matches("sha256:"));
            std::fs::write(&path, &blob.data).map_err(io_err("writing", &path))?;
        }
        let layout = dir.join("oci-layout");
        std::fs::write(&layout, "{\"imageLayoutVersion\":\"1.0.0\"}")
            .map_err(io_err("writing", &layout))?;
        let index_path = dir.join("index.json");
        let index = self.index(BTreeMap::from([("org.opencontainers.image.ref.name", tag)]));
        std::fs::write(&index_path, index.to_string()).map_err(io_err("writing", &index_path))?;
        Ok(OciLayout {
            dir: dir.to_path_buf(),
            tag: tag.to_owned(),
            image: self.clone(),
        })
    }

    /// An OCI layout as a tar archive (what `ctr images import` reads), naming the image
    /// `name` (a full reference such as `localhost/spore/pause:3.10`).
    pub fn archive(&self, name: &str) -> Result<Vec<u8>, ImageError> {
        let tag = name.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
        let index = self.index(BTreeMap::from([
            ("io.containerd.image.name", name),
            ("org.opencontainers.image.ref.name", tag),
        ]));
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, data: &[u8]| -> std::io::Result<()> {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, data)
        };
        let tar_err = io_err("archiving", Path::new(name));
        (|| {
            add("oci-layout", b"{\"imageLayoutVersion\":\"1.0.0\"}")?;
            add("index.json", index.to_string().as_bytes())?;
            for blob in self.blobs() {
                add(
                    &format!("blobs/sha256/{}", blob.digest.trim_start_matches("sha256:")),
                    &blob.data,
                )?;
            }
            Ok(())
        })()
        .map_err(tar_err)?;
        builder
            .into_inner()
            .map_err(io_err("archiving", Path::new(name)))
    }

    /// Imports the image into containerd's CRI namespace (`k8s.io`) as `name`, unpacked for
    /// the default snapshotter, with `ctr images import`.
    pub fn import_into(&self, containerd: &Containerd, name: &str) -> Result<(), ImageError> {
        self.import_into_namespace(containerd, crate::containerd::CRI_NAMESPACE, name)
    }

    /// Imports the image into any containerd namespace (e.g. `default` for `ctr run` tests).
    pub fn import_into_namespace(
        &self,
        containerd: &Containerd,
        namespace: &str,
        name: &str,
    ) -> Result<(), ImageError> {
        let dir = tempfile::tempdir()
            .map_err(io_err("creating a temporary directory", Path::new("/tmp")))?;
        let path = dir.path().join("image.tar");
        std::fs::write(&path, self.archive(name)?).map_err(io_err("writing", &path))?;
        let path_text = path.to_string_lossy().into_owned();
        let args = ["images", "import", "--local", path_text.as_str()];
        let out = containerd.ctr_in(namespace, &args)?;
        if out.success() {
            Ok(())
        } else {
            Err(ImageError::Tool {
                tool: format!("ctr {}", args.join(" ")),
                status: out.status,
                stderr: out.stderr,
            })
        }
    }

    /// Pushes the image to `http://host/repo:tag` over the OCI distribution API (monolithic
    /// blob uploads, then the manifest), keeping every media type as built. Returns
    /// `host/repo:tag`.
    pub fn push_http(&self, host: &str, repo: &str, tag: &str) -> Result<String, ImageError> {
        for blob in std::iter::once(&self.config).chain(self.layers.iter()) {
            let head = http::request(
                "HEAD",
                &format!("http://{host}/v2/{repo}/blobs/{}", blob.digest),
                &[],
                &[],
            )?;
            if head.status == 200 {
                continue;
            }
            let start = http::request(
                "POST",
                &format!("http://{host}/v2/{repo}/blobs/uploads/"),
                &[],
                &[],
            )?;
            let location = match (start.status, start.header("location")) {
                (202, Some(location)) => location.to_owned(),
                _ => {
                    return Err(ImageError::Registry {
                        what: format!("starting the upload of {}", blob.digest),
                        status: start.status,
                        body: start.text(),
                    });
                }
            };
            let location = if location.starts_with("http://") {
                location
            } else {
                format!("http://{host}{location}")
            };
            let separator = if location.contains('?') { '&' } else { '?' };
            let put = http::request(
                "PUT",
                &format!("{location}{separator}digest={}", blob.digest),
                &[("Content-Type", "application/octet-stream")],
                &blob.data,
            )?;
            if put.status != 201 {
                return Err(ImageError::Registry {
                    what: format!("blob {}", blob.digest),
                    status: put.status,
                    body: put.text(),
                });
            }
        }
        let put = http::request(
            "PUT",
            &format!("http://{host}/v2/{repo}/manifests/{tag}"),
            &[("Content-Type", MEDIA_TYPE_MANIFEST)],
            &self.manifest.data,
        )?;
        if put.status != 201 {
            return Err(ImageError::Registry {
                what: format!("manifest {repo}:{tag}"),
                status: put.status,
                body: put.text(),
            });
        }
        Ok(format!("{host}/{repo}:{tag}"))
    }
}

/// An OCI image layout on disk holding one tagged image.
#[derive(Clone, Debug)]
pub struct OciLayout {
    pub dir: PathBuf,
    pub tag: String,
    pub image: BuiltImage,
}

impl OciLayout {
    /// `skopeo copy --dest-tls-verify=false oci:DIR:TAG docker://HOST/REPO:TAG`; returns
    /// `HOST/REPO:TAG`.
    pub fn push_with_skopeo(
        &self,
        host: &str,
        repo: &str,
        tag: &str,
    ) -> Result<String, ImageError> {
        let reference = format!("{host}/{repo}:{tag}");
        let output = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:{}", self.dir.display(), self.tag))
            .arg(format!("docker://{reference}"))
            .output()
            .map_err(|source| ImageError::Spawn {
                tool: "skopeo".into(),
                source,
            })?;
        if !output.status.success() {
            return Err(ImageError::Tool {
                tool: "skopeo copy".into(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            });
        }
        Ok(reference)
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::io::Read;

    /// `(path, kind, mode, data)` of every entry of a tar archive.
    pub(crate) fn tar_entries(tar_bytes: &[u8]) -> Vec<(String, tar::EntryType, u32, Vec<u8>)> {
        let mut archive = tar::Archive::new(tar_bytes);
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").display().to_string();
                let kind = e.header().entry_type();
                let mode = e.header().mode().expect("mode");
                let mut data = Vec::new();
                e.read_to_end(&mut data).expect("data");
                (path, kind, mode, data)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::tar_entries;
    use super::*;

    #[test]
    fn layouts_on_disk_hold_every_blob_under_its_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let image = WasmArtifact::new(b"\0asm\x01\0\0\0".to_vec()).build();
        let layout = image.write_layout(dir.path(), "v1").expect("layout");
        for blob in [&image.manifest, &image.config, &image.layers[0]] {
            let path = layout
                .dir
                .join("blobs/sha256")
                .join(blob.digest.trim_start_matches("sha256:"));
            let data = std::fs::read(path).expect("blob on disk");
            assert_eq!(sha256_digest(&data), blob.digest);
        }
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("index.json")).expect("index"))
                .expect("json");
        assert_eq!(index["manifests"][0]["digest"], image.manifest.digest);
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "v1"
        );
    }

    #[test]
    fn archives_name_the_image_for_containerd() {
        let image = ImageBuilder::new()
            .file("/a", b"a".to_vec())
            .build()
            .expect("build");
        let archive = image.archive("localhost/spore/a:1").expect("archive");
        let entries = tar_entries(&archive);
        let index = entries
            .iter()
            .find(|e| e.0 == "index.json")
            .expect("index.json");
        let index: serde_json::Value = serde_json::from_slice(&index.3).expect("json");
        let annotations = &index["manifests"][0]["annotations"];
        assert_eq!(
            annotations["io.containerd.image.name"],
            "localhost/spore/a:1"
        );
        assert_eq!(annotations["org.opencontainers.image.ref.name"], "1");
        assert_eq!(index["manifests"][0]["platform"]["architecture"], "amd64");
    }
}
