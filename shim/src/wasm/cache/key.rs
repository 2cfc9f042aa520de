//! What a compiled-code cache entry is keyed by: the digest of the Wasm it was compiled from,
//! where that Wasm came from, and the fingerprint of the engine that compiled it.

use std::fmt;
use std::hash::Hasher;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

/// Spore's version, part of every key: a new Spore never trusts an older one's entries.
pub const SPORE_VERSION: &str = env!("CARGO_PKG_VERSION");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a content digest: expected sha256:<64 hex digits> or sha512:<128 hex digits>"
)]
pub struct BadDigest(pub String);

/// A validated OCI content digest (`sha256:<hex>` or `sha512:<hex>`, lowercase hex). Being
/// validated, it is safe to use in file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ContentDigest {
    algorithm: &'static str,
    hex: String,
}

impl ContentDigest {
    pub fn parse(text: &str) -> Result<Self, BadDigest> {
        let bad = || BadDigest(text.to_string());
        let (algorithm, hex) = text.split_once(':').ok_or_else(bad)?;
        let (algorithm, len) = match algorithm {
            "sha256" => ("sha256", 64),
            "sha512" => ("sha512", 128),
            _ => return Err(bad()),
        };
        let lower_hex = hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if hex.len() != len || !lower_hex {
            return Err(bad());
        }
        Ok(ContentDigest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Self {
        ContentDigest {
            algorithm: "sha256",
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    pub fn algorithm(&self) -> &'static str {
        self.algorithm
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// Whether `bytes` hash to this digest.
    pub fn matches(&self, bytes: &[u8]) -> bool {
        let actual = match self.algorithm {
            "sha512" => hex::encode(sha2::Sha512::digest(bytes)),
            _ => hex::encode(Sha256::digest(bytes)),
        };
        actual == self.hex
    }
}

impl fmt::Display for ContentDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

/// Where the Wasm of an entry came from. Only `Layer` entries are subject to garbage collection
/// against containerd's content store: a `File` digest (a `.wasm` inside a plain image's rootfs)
/// is never a content-store digest, so such entries leave only by the size bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// The layer of an OCI Wasm artifact, named by its digest in containerd's content store.
    Layer,
    /// A file in a container's rootfs, named by the sha256 of its bytes.
    File,
}

impl Origin {
    pub(crate) fn tag(self) -> &'static str {
        match self {
            Origin::Layer => "layer",
            Origin::File => "file",
        }
    }

    pub(crate) fn from_tag(tag: &str) -> Option<Self> {
        match tag {
            "layer" => Some(Origin::Layer),
            "file" => Some(Origin::File),
            _ => None,
        }
    }
}

/// The Wasm an entry is compiled from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Source {
    pub origin: Origin,
    pub digest: ContentDigest,
}

impl Source {
    pub fn layer(digest: &str) -> Result<Self, BadDigest> {
        Ok(Source {
            origin: Origin::Layer,
            digest: ContentDigest::parse(digest)?,
        })
    }

    /// A file's bytes, keyed by their sha256.
    pub fn file(bytes: &[u8]) -> Self {
        Source {
            origin: Origin::File,
            digest: ContentDigest::sha256_of(bytes),
        }
    }
}

/// The fingerprint of an engine's compilation settings (wasmtime's
/// `precompile_compatibility_hash`, which covers wasmtime's version, the target and every
/// setting that changes generated code), as hex.
pub fn engine_fingerprint(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
    hex::encode(hasher.0.finalize())
}

/// A `Hasher` that feeds SHA-256, so that fingerprints are stable across processes and Rust
/// releases (std's `DefaultHasher` promises neither).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

/// The full key of an entry: its source, the engine fingerprint and Spore's version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    pub source: Source,
    pub fingerprint: String,
}

impl CacheKey {
    pub fn new(source: Source, fingerprint: &str) -> Self {
        CacheKey {
            source,
            fingerprint: fingerprint.to_string(),
        }
    }

    /// The file name of the entry: `<origin>-<algorithm>-<hex>-<fingerprint prefix>.cwasm`.
    /// Two engines with different fingerprints thus have different entries side by side; the
    /// full fingerprint is checked from the entry's trailer.
    pub fn file_name(&self) -> String {
        let short = &self.fingerprint[..self.fingerprint.len().min(16)];
        format!(
            "{}-{}-{}-{short}.cwasm",
            self.source.origin.tag(),
            self.source.digest.algorithm(),
            self.source.digest.hex()
        )
    }

    /// The SHA-256 of everything the entry depends on, stored in (and checked against) the
    /// entry's trailer.
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        for part in [
            "spore-compile-cache",
            SPORE_VERSION,
            self.source.origin.tag(),
            &self.source.digest.to_string(),
            &self.fingerprint,
        ] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        hasher.finalize().into()
    }
}

/// Parses an entry's file name back into its origin and digest (for garbage collection).
pub(crate) fn parse_file_name(name: &str) -> Option<(Origin, ContentDigest)> {
    let stem = name.strip_suffix(".cwasm")?;
    let mut parts = stem.splitn(4, '-');
    let origin = Origin::from_tag(parts.next()?)?;
    let algorithm = parts.next()?;
    let hex = parts.next()?;
    let _fingerprint = parts.next()?;
    let digest = ContentDigest::parse(&format!("{algorithm}:{hex}")).ok()?;
    Some((origin, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn digests_are_validated() {
        assert!(ContentDigest::parse(D).is_ok());
        for bad in [
            "sha256:../../etc/passwd",
            "sha256:0123",
            "md5:0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert!(ContentDigest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn digest_of_bytes_matches_them() {
        let digest = ContentDigest::sha256_of(b"hello");
        assert!(digest.matches(b"hello"));
        assert!(!digest.matches(b"hellO"));
        assert_eq!(
            digest.to_string(),
            "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
    }

    #[test]
    fn file_names_round_trip_and_keys_depend_on_everything() {
        let key = CacheKey::new(Source::layer(D).expect("digest"), "ab".repeat(32).as_str());
        let name = key.file_name();
        assert_eq!(
            parse_file_name(&name),
            Some((Origin::Layer, ContentDigest::parse(D).expect("digest")))
        );
        let other_engine = CacheKey::new(key.source.clone(), "cd".repeat(32).as_str());
        assert_ne!(key.hash(), other_engine.hash());
        assert_ne!(key.file_name(), other_engine.file_name());
        let as_file = CacheKey::new(
            Source {
                origin: Origin::File,
                digest: key.source.digest.clone(),
            },
            &key.fingerprint,
        );
        assert_ne!(key.hash(), as_file.hash());
        assert_eq!(parse_file_name("notes.txt"), None);
        assert_eq!(parse_file_name("layer-sha256-zz-00.cwasm"), None);
    }

    #[test]
    fn fingerprints_are_stable_for_one_engine_config() {
        let a = crate::wasm::engine::new_engine().expect("engine");
        let b = crate::wasm::engine::new_engine().expect("engine");
        assert_eq!(engine_fingerprint(&a), engine_fingerprint(&b));
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(false);
        let c = Engine::new(&config).expect("engine");
        assert_ne!(engine_fingerprint(&a), engine_fingerprint(&c));
    }
}
