//! Plain single-layer Linux images from files given in memory.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use flate2::Compression;
use flate2::write::GzEncoder;

use super::{
    Blob, BuiltImage, ImageError, MEDIA_TYPE_IMAGE_CONFIG, MEDIA_TYPE_LAYER_GZIP, sha256_digest,
};

/// One entry of an image's root filesystem.
#[derive(Clone, Debug)]
pub enum RootfsEntry {
    File {
        path: String,
        data: Vec<u8>,
        mode: u32,
    },
    Dir {
        path: String,
        mode: u32,
    },
    Symlink {
        path: String,
        target: String,
    },
}

impl RootfsEntry {
    fn path(&self) -> &str {
        match self {
            RootfsEntry::File { path, .. }
            | RootfsEntry::Dir { path, .. }
            | RootfsEntry::Symlink { path, .. } => path,
        }
    }
}

/// Checks an absolute in-image path and returns it relative (`bin/sh`), as tar wants it.
fn relative_path(path: &str) -> Result<String, ImageError> {
    let trimmed = path.trim_start_matches('/');
    if !path.starts_with('/')
        || trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|part| part == ".." || part == "." || part.is_empty())
    {
        return Err(ImageError::BadPath(path.to_owned()));
    }
    Ok(trimmed.trim_end_matches('/').to_owned())
}

/// Image configuration (the parts the tests use).
#[derive(Clone, Debug, Default)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `USER` (`uid:gid`); empty for root.
    pub user: Option<String>,
    /// GOARCH-style architecture (`amd64`, `arm64`); empty for amd64.
    pub architecture: Option<String>,
}

/// Builds a single-layer Linux image from files given in memory.
#[derive(Clone, Debug, Default)]
pub struct ImageBuilder {
    entries: Vec<RootfsEntry>,
    config: ImageConfig,
}

impl ImageBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// A regular file, mode 0644.
    pub fn file(self, path: &str, data: impl Into<Vec<u8>>) -> Self {
        self.file_with_mode(path, data, 0o644)
    }

    /// An executable file, mode 0755.
    pub fn executable(self, path: &str, data: impl Into<Vec<u8>>) -> Self {
        self.file_with_mode(path, data, 0o755)
    }

    pub fn file_with_mode(mut self, path: &str, data: impl Into<Vec<u8>>, mode: u32) -> Self {
        self.entries.push(RootfsEntry::File {
            path: path.to_owned(),
            data: data.into(),
            mode,
        });
        self
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        self.entries.push(RootfsEntry::Dir {
            path: path.to_owned(),
            mode,
        });
        self
    }

    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        self.entries.push(RootfsEntry::Symlink {
            path: path.to_owned(),
            target: target.to_owned(),
        });
        self
    }

    pub fn entrypoint<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.config.entrypoint = args.into_iter().map(Into::into).collect();
        self
    }

    pub fn cmd<S: Into<String>>(mut self, args: impl IntoIterator<Item = S>) -> Self {
        self.config.cmd = args.into_iter().map(Into::into).collect();
        self
    }

    /// Adds `KEY=VALUE` to the image's environment.
    pub fn env(mut self, entry: impl Into<String>) -> Self {
        self.config.env.push(entry.into());
        self
    }

    pub fn working_dir(mut self, dir: impl Into<String>) -> Self {
        self.config.working_dir = Some(dir.into());
        self
    }

    /// The user the image's process runs as (`65532:65532`).
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.config.user = Some(user.into());
        self
    }

    /// The architecture recorded in the config and the layout's index (default `amd64`).
    pub fn architecture(mut self, architecture: impl Into<String>) -> Self {
        self.config.architecture = Some(architecture.into());
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.config.labels.insert(key.into(), value.into());
        self
    }

    /// The uncompressed layer tar: parent directories first (mode 0755 unless listed), then
    /// the entries in order; owner root, mtime 0, so the same input gives the same digest.
    pub fn layer_tar(&self) -> Result<Vec<u8>, ImageError> {
        let mut explicit_dirs = BTreeMap::new();
        for entry in &self.entries {
            if let RootfsEntry::Dir { path, mode } = entry {
                explicit_dirs.insert(relative_path(path)?, *mode);
            }
        }
        let mut builder = tar::Builder::new(Vec::new());
        let mut written_dirs = std::collections::BTreeSet::new();
        let tar_err = |source| ImageError::Io {
            what: "building the layer",
            path: PathBuf::from("/"),
            source,
        };
        for entry in &self.entries {
            let rel = relative_path(entry.path())?;
            // Parents, then the entry itself when it is a directory.
            let mut dirs: Vec<String> = Vec::new();
            let parts: Vec<&str> = rel.split('/').collect();
            for i in 1..parts.len() {
                dirs.push(parts[..i].join("/"));
            }
            if matches!(entry, RootfsEntry::Dir { .. }) {
                dirs.push(rel.clone());
            }
            for dir in dirs {
                if written_dirs.insert(dir.clone()) {
                    let mut header = tar::Header::new_ustar();
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(explicit_dirs.get(&dir).copied().unwrap_or(0o755));
                    header.set_size(0);
                    header.set_mtime(0);
                    header.set_uid(0);
                    header.set_gid(0);
                    builder
                        .append_data(&mut header, format!("{dir}/"), std::io::empty())
                        .map_err(tar_err)?;
                }
            }
            match entry {
                RootfsEntry::File { data, mode, .. } => {
                    let mut header = tar::Header::new_ustar();
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_mode(*mode);
                    header.set_size(data.len() as u64);
                    header.set_mtime(0);
                    header.set_uid(0);
                    header.set_gid(0);
                    builder
                        .append_data(&mut header, &rel, data.as_slice())
                        .map_err(tar_err)?;
                }
                RootfsEntry::Symlink { target, .. } => {
                    let mut header = tar::Header::new_ustar();
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_mode(0o777);
                    header.set_size(0);
                    header.set_mtime(0);
                    header.set_uid(0);
                    header.set_gid(0);
                    builder
                        .append_link(&mut header, &rel, target)
                        .map_err(tar_err)?;
                }
                RootfsEntry::Dir { .. } => {}
            }
        }
        builder.into_inner().map_err(tar_err)
    }

    /// Builds the image (linux, amd64 unless [`ImageBuilder::architecture`] says otherwise).
    pub fn build(&self) -> Result<BuiltImage, ImageError> {
        let architecture = self.config.architecture.as_deref().unwrap_or("amd64");
        let tar = self.layer_tar()?;
        let diff_id = sha256_digest(&tar);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        let gz_err = |source| ImageError::Io {
            what: "compressing the layer",
            path: PathBuf::from("/"),
            source,
        };
        gz.write_all(&tar).map_err(gz_err)?;
        let layer = Blob::new(MEDIA_TYPE_LAYER_GZIP, gz.finish().map_err(gz_err)?);
        let mut config = serde_json::json!({
            "created": "1970-01-01T00:00:00Z",
            "architecture": architecture,
            "os": "linux",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [diff_id] },
            "history": [{ "created": "1970-01-01T00:00:00Z", "created_by": "spore-e2e ImageBuilder" }],
        });
        let c = &self.config;
        if !c.entrypoint.is_empty() {
            config["config"]["Entrypoint"] = serde_json::json!(c.entrypoint);
        }
        if !c.cmd.is_empty() {
            config["config"]["Cmd"] = serde_json::json!(c.cmd);
        }
        if !c.env.is_empty() {
            config["config"]["Env"] = serde_json::json!(c.env);
        }
        if let Some(dir) = &c.working_dir {
            config["config"]["WorkingDir"] = serde_json::json!(dir);
        }
        if !c.labels.is_empty() {
            config["config"]["Labels"] = serde_json::json!(c.labels);
        }
        if let Some(user) = &c.user {
            config["config"]["User"] = serde_json::json!(user);
        }
        let config = Blob::new(MEDIA_TYPE_IMAGE_CONFIG, config.to_string().into_bytes());
        Ok(BuiltImage::assemble(
            config,
            vec![layer],
            Some(("linux".into(), architecture.into())),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::tar_entries;
    use super::*;
    use std::io::Read;

    #[test]
    fn layers_list_parents_before_children_and_are_reproducible() {
        let builder = ImageBuilder::new()
            .file("/app/hello.wasm", b"\0asm".to_vec())
            .symlink("/bin/sh", "busybox")
            .dir("/tmp", 0o1777);
        let tar = builder.layer_tar().expect("tar");
        let entries = tar_entries(&tar);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(names, ["app/", "app/hello.wasm", "bin/", "bin/sh", "tmp/"]);
        assert_eq!(entries[1].3, b"\0asm");
        assert_eq!(entries[4].2, 0o1777);
        assert_eq!(entries[3].1, tar::EntryType::Symlink);
        assert_eq!(
            builder.build().expect("build").digest(),
            builder.build().expect("build").digest()
        );
    }

    #[test]
    fn bad_paths_are_refused() {
        for path in ["relative", "/a/../b", "/", "/a//b"] {
            let result = ImageBuilder::new().file(path, Vec::new()).layer_tar();
            assert!(
                matches!(result, Err(ImageError::BadPath(p)) if p == path),
                "{path}"
            );
        }
    }

    #[test]
    fn image_config_and_manifest_link_by_digest() {
        let image = ImageBuilder::new()
            .file("/hello.wasm", b"\0asm\x0d\0\x01\0".to_vec())
            .entrypoint(["/hello.wasm"])
            .env("GREETING=hi")
            .build()
            .expect("build");
        let manifest: serde_json::Value =
            serde_json::from_slice(&image.manifest.data).expect("json");
        assert_eq!(manifest["config"]["digest"], image.config.digest);
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_IMAGE_CONFIG);
        assert_eq!(manifest["layers"][0]["digest"], image.layers[0].digest);
        assert_eq!(manifest["layers"][0]["size"], image.layers[0].data.len());
        let config: serde_json::Value = serde_json::from_slice(&image.config.data).expect("json");
        assert_eq!(config["config"]["Entrypoint"][0], "/hello.wasm");
        assert_eq!(config["config"]["Env"][0], "GREETING=hi");
        // The diff id is the digest of the uncompressed layer.
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layers[0].data.as_slice())
            .read_to_end(&mut tar)
            .expect("gunzip");
        assert_eq!(config["rootfs"]["diff_ids"][0], sha256_digest(&tar));
    }
}
