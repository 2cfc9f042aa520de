//! The runtime options containerd passes at task create. For a runtime that is not runc,
//! containerd's CRI sends the TOML `options` table of the runtime's config as
//! `runtimeoptions.v1.Options { type_url, config_path, config_body }`; Spore reads the runc-like
//! keys it shares with runc's shim (`SystemdCgroup`, `Root`, `BinaryName`) from it.

use std::path::PathBuf;

use serde::Deserialize;

pub const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

#[derive(Debug, thiserror::Error)]
pub enum OptionsError {
    #[error("runtime options: the protobuf message is malformed: {0}")]
    Protobuf(&'static str),
    #[error("reading runtime options file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("runtime options: {0}")]
    Toml(#[from] toml::de::Error),
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeOptions {
    /// Use runc's systemd cgroup driver (cgroupsPath in `slice:prefix:name` form).
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// runc's state root for native containers; a namespace directory is added below it.
    pub root: Option<PathBuf>,
    /// The runc binary.
    pub binary_name: Option<String>,
    /// Where compiled Wasm is cached (default `/var/lib/spore/cache`).
    pub cache_dir: Option<PathBuf>,
    /// Upper bound of the compile cache's size in bytes (default 2 GiB).
    pub cache_max_bytes: Option<u64>,
    /// Who runs the pod's sandbox: the shim's own init (default) or runc with the pause image.
    #[serde(default)]
    pub sandbox: SandboxRuntime,
}

/// The `Sandbox` runtime option.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SandboxRuntime {
    /// A minimal init process forked by the shim holds the pod's namespaces.
    #[default]
    Init,
    /// runc runs the pause container, as runc's shim does.
    Runc,
}

impl RuntimeOptions {
    pub fn runc_root(&self, namespace: &str) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/run/containerd/spore-runc"))
            .join(namespace)
    }

    pub fn cache_config(&self) -> crate::wasm::cache::CacheConfig {
        let mut config = crate::wasm::cache::CacheConfig::default();
        if let Some(dir) = &self.cache_dir {
            config.dir = dir.clone();
        }
        if let Some(max) = self.cache_max_bytes {
            config.max_bytes = max;
        }
        config
    }

    pub fn runc_binary(&self) -> String {
        self.binary_name
            .clone()
            .unwrap_or_else(|| "runc".to_string())
    }

    /// Decodes the options from CreateTaskRequest.options: `type_url` and the raw protobuf.
    pub fn decode(type_url: &str, value: &[u8]) -> Result<Self, OptionsError> {
        if !type_url.ends_with(RUNTIME_OPTIONS_TYPE) {
            return Ok(RuntimeOptions::default());
        }
        let fields = protobuf_strings(value)?;
        let body = match (fields.get(&3), fields.get(&2)) {
            (Some(body), _) if !body.trim().is_empty() => body.clone(),
            (_, Some(path)) if !path.is_empty() => {
                std::fs::read_to_string(path).map_err(|source| OptionsError::File {
                    path: path.clone(),
                    source,
                })?
            }
            _ => return Ok(RuntimeOptions::default()),
        };
        Ok(toml::from_str(&body)?)
    }
}

/// The length-delimited fields of a flat protobuf message, by field number.
fn protobuf_strings(
    mut bytes: &[u8],
) -> Result<std::collections::HashMap<u64, String>, OptionsError> {
    fn varint(bytes: &mut &[u8]) -> Result<u64, OptionsError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes
                .split_first()
                .ok_or(OptionsError::Protobuf("truncated varint"))?;
            *bytes = rest;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(OptionsError::Protobuf("varint too long"))
    }
    let mut out = std::collections::HashMap::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        match key & 7 {
            0 => {
                varint(&mut bytes)?;
            }
            2 => {
                let len = varint(&mut bytes)? as usize;
                if len > bytes.len() {
                    return Err(OptionsError::Protobuf("truncated field"));
                }
                let (field, rest) = bytes.split_at(len);
                out.insert(key >> 3, String::from_utf8_lossy(field).into_owned());
                bytes = rest;
            }
            _ => return Err(OptionsError::Protobuf("unexpected wire type")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(number: u8, text: &str) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, text.len() as u8];
        out.extend_from_slice(text.as_bytes());
        out
    }

    #[test]
    fn reads_the_toml_body() {
        let mut msg = field(1, "type");
        msg.extend(field(
            3,
            "SystemdCgroup = true\nRoot = \"/run/x\"\nCacheDir = \"/c\"\nCacheMaxBytes = 1024\nSandbox = \"runc\"\n",
        ));
        let opts = RuntimeOptions::decode("type.googleapis.com/runtimeoptions.v1.Options", &msg)
            .expect("decodes");
        assert!(opts.systemd_cgroup);
        assert_eq!(opts.runc_root("k8s.io"), PathBuf::from("/run/x/k8s.io"));
        assert_eq!(opts.runc_binary(), "runc");
        assert_eq!(opts.cache_config().dir, PathBuf::from("/c"));
        assert_eq!(opts.cache_config().max_bytes, 1024);
        assert_eq!(opts.sandbox, SandboxRuntime::Runc);
        assert_eq!(RuntimeOptions::default().sandbox, SandboxRuntime::Init);
    }

    #[test]
    fn other_types_and_empty_bodies_give_defaults() {
        assert_eq!(
            RuntimeOptions::decode("containerd.runc.v1.Options", b"\x08\x01").expect("ignored"),
            RuntimeOptions::default()
        );
        assert_eq!(
            RuntimeOptions::decode(RUNTIME_OPTIONS_TYPE, &[]).expect("empty"),
            RuntimeOptions::default()
        );
    }

    #[test]
    fn bad_toml_is_an_error() {
        let err = RuntimeOptions::decode(RUNTIME_OPTIONS_TYPE, &field(3, "Sandbox = \"pause\""))
            .expect_err("unknown sandbox runtime");
        assert!(err.to_string().contains("init"), "{err}");
        let err = RuntimeOptions::decode(RUNTIME_OPTIONS_TYPE, &field(3, "SystemdCgroup = maybe"))
            .expect_err("bad toml");
        assert!(err.to_string().starts_with("runtime options:"), "{err}");
    }
}
