//! The compiled-code cache: Wasm compiled once per (source digest, engine fingerprint, Spore
//! version) and loaded by mmap afterwards, in any pod on the node.
//!
//! Safety rules, in the order they are applied:
//! - Bytes that arrive in an image are only ever compiled, never deserialized: a precompiled
//!   wasmtime artifact given as "the Wasm" is refused ([`CacheError::Precompiled`]).
//! - An entry is deserialized only after its trailer (written by Spore, see [`entry`]) says it
//!   belongs to this exact key and its checksum matches. A corrupt entry, an entry of another
//!   engine build or Spore version, or a file Spore did not write is recompiled and replaced.
//! - Entries are written atomically (temporary file, fsync, rename, directory fsync), and the
//!   first uses of one key serialize on a lock file so that it compiles once; if locking is not
//!   possible every user compiles and the renames race harmlessly.
//!
//! The calls block (compiling takes milliseconds to seconds): call them from a blocking thread.

mod entry;
pub mod key;

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use wasmtime::component::Component;
use wasmtime::{Engine, Module, Precompiled};

pub use entry::{ArtifactKind, Rejection};
pub use key::{BadDigest, CacheKey, ContentDigest, Origin, Source, engine_fingerprint};

/// Where the cache lives unless configured otherwise.
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/spore/cache";
/// The default size bound: 2 GiB of compiled code.
pub const DEFAULT_MAX_BYTES: u64 = 2 << 30;
/// Temporary files of writers that died are removed by [`CompileCache::retain`] after this long.
const STALE_TEMP_AGE: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub dir: PathBuf,
    /// Upper bound of the entries' total size; least recently used entries are evicted past it.
    pub max_bytes: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            dir: PathBuf::from(DEFAULT_CACHE_DIR),
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("creating the compile cache directory {dir}: {source}")]
    CreateDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the compile cache directory {dir} is {reason}: whoever can write there could make the \
         shim run their native code; make it owned by the shim's user and not writable by group \
         or others (chmod 700)"
    )]
    UnsafeDir { dir: PathBuf, reason: String },
    #[error("reading the compile cache directory {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the Wasm given is a precompiled wasmtime {what} (.cwasm), not Wasm: Spore runs only code it \
         compiles itself from Wasm, because deserializing foreign compiled code would run it \
         unchecked; publish the .wasm file instead"
    )]
    Precompiled { what: &'static str },
    #[error("the bytes are not Wasm: they do not start with \\0asm (they start with {prefix:?})")]
    NotWasm { prefix: String },
    #[error("the Wasm does not match its digest {expected}")]
    DigestMismatch { expected: String },
    #[error("compiling the Wasm {what}: {reason}")]
    Compile { what: &'static str, reason: String },
    #[error("loading the code Spore just compiled: {0}")]
    Load(String),
}

/// A compiled guest, as loaded from the cache or just compiled.
#[derive(Clone)]
pub enum Compiled {
    Component(Component),
    Module(Module),
}

/// Cache hits and misses (compilations) since the cache was opened.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl CacheStats {
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }
}

/// What [`CompileCache::retain`] and eviction removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Removed {
    pub entries: usize,
    pub bytes: u64,
}

pub struct CompileCache {
    dir: PathBuf,
    max_bytes: u64,
    fingerprint: String,
    stats: CacheStats,
    /// Code this process already loaded or compiled, by key hash: a restarted container, or
    /// a second container of the same image in the pod, needs no disk at all. (Bounded by the
    /// number of distinct images one shim runs; the code is shared with the page cache.)
    loaded: Mutex<HashMap<[u8; 32], Compiled>>,
}

impl CompileCache {
    /// Opens (creating it, mode 0700) the cache directory for code compiled by `engine`.
    pub fn open(engine: &Engine, config: CacheConfig) -> Result<Self, CacheError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.dir)
            .map_err(|source| CacheError::CreateDir {
                dir: config.dir.clone(),
                source,
            })?;
        check_private(&config.dir)?;
        Ok(CompileCache {
            dir: config.dir,
            max_bytes: config.max_bytes,
            fingerprint: engine_fingerprint(engine),
            stats: CacheStats::default(),
            loaded: Mutex::new(HashMap::new()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The fingerprint of the engine this cache was opened for.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// The key of `source` for this cache's engine.
    pub fn key(&self, source: Source) -> CacheKey {
        CacheKey::new(source, &self.fingerprint)
    }

    /// The path of `key`'s entry (which may not exist).
    pub fn entry_path(&self, key: &CacheKey) -> PathBuf {
        self.dir.join(key.file_name())
    }

    /// The cached code of `key`, if a valid entry exists (a hit). An entry that fails
    /// verification or that wasmtime refuses is removed and `None` returned.
    pub fn load(&self, engine: &Engine, key: &CacheKey) -> Option<Compiled> {
        let hash = key.hash();
        if let Some(compiled) = self.remembered(&hash) {
            // Keep the entry's recency for eviction.
            if let Ok(file) = File::open(self.entry_path(key)) {
                let _ = file.set_modified(SystemTime::now());
            }
            self.stats.hits.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(source = %key.source.digest, "compile cache hit (already loaded)");
            return Some(compiled);
        }
        let compiled = self.load_entry(engine, key)?;
        self.remember(hash, &compiled);
        self.stats.hits.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(source = %key.source.digest, "compile cache hit");
        Some(compiled)
    }

    fn remembered(&self, hash: &[u8; 32]) -> Option<Compiled> {
        self.loaded.lock().ok()?.get(hash).cloned()
    }

    fn remember(&self, hash: [u8; 32], compiled: &Compiled) {
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.insert(hash, compiled.clone());
        }
    }

    /// Forgets the code this process loaded, so that the next use reads the disk again.
    pub fn forget_loaded(&self) {
        if let Ok(mut loaded) = self.loaded.lock() {
            loaded.clear();
        }
    }

    fn load_entry(&self, engine: &Engine, key: &CacheKey) -> Option<Compiled> {
        let path = self.entry_path(key);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                tracing::warn!(entry = %path.display(), "cannot open compile cache entry: {e}");
                return None;
            }
        };
        let kind = match entry::verify(&mut file, &key.hash()) {
            Ok(kind) => kind,
            Err(rejection) => {
                tracing::warn!(
                    entry = %path.display(),
                    "compile cache entry not used, recompiling: {rejection}"
                );
                remove_quietly(&path);
                return None;
            }
        };
        // Deserialize the very file that was verified (its descriptor, not the path, which
        // could have been replaced in between).
        let verified = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        // SAFETY: the file was written by Spore from code this engine configuration compiled
        // (the key hash covers the engine fingerprint and Spore's version) and its checksum
        // was verified just above; entries are replaced by rename only, never in place.
        let loaded = unsafe {
            match kind {
                ArtifactKind::Component => {
                    Component::deserialize_file(engine, &verified).map(Compiled::Component)
                }
                ArtifactKind::Module => {
                    Module::deserialize_file(engine, &verified).map(Compiled::Module)
                }
            }
        };
        match loaded {
            Ok(compiled) => {
                let _ = file.set_modified(SystemTime::now());
                Some(compiled)
            }
            Err(e) => {
                tracing::warn!(entry = %path.display(), "wasmtime refused a compile cache entry, recompiling: {e:#}");
                remove_quietly(&path);
                None
            }
        }
    }

    /// The compiled code of `wasm` (whose digest is `key.source.digest`): from the cache, or
    /// compiled now and stored.
    pub fn get_or_compile(
        &self,
        engine: &Engine,
        key: &CacheKey,
        wasm: &[u8],
    ) -> Result<Compiled, CacheError> {
        let kind = wasm_artifact_kind(wasm)?;
        if let Some(compiled) = self.load(engine, key) {
            return Ok(compiled);
        }
        // Only what is compiled must be the Wasm the key names; a hit is code Spore compiled
        // from exactly that Wasm before.
        if !key.source.digest.matches(wasm) {
            return Err(CacheError::DigestMismatch {
                expected: key.source.digest.to_string(),
            });
        }
        let _lock = self.lock(key);
        // Whoever held the lock before us may have compiled it.
        if let Some(compiled) = self.load(engine, key) {
            return Ok(compiled);
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let what = match kind {
            ArtifactKind::Component => "component",
            ArtifactKind::Module => "module",
        };
        // The node's cost, not the pod's (`host/shim_cgroup.rs`).
        let artifact = crate::host::shim_cgroup::outside_pod_while(|| match kind {
            ArtifactKind::Component => engine.precompile_component(wasm),
            ArtifactKind::Module => engine.precompile_module(wasm),
        })
        .map_err(|e| CacheError::Compile {
            what,
            reason: format!("{e:#}"),
        })?;
        tracing::info!(
            source = %key.source.digest,
            wasm_bytes = wasm.len(),
            compiled_bytes = artifact.len(),
            millis = started.elapsed().as_millis() as u64,
            "compiled Wasm {what}"
        );
        let name = key.file_name();
        let written = entry::write(&self.dir, &name, kind, &key.hash(), &artifact);
        let compiled = match written {
            Ok(path) => {
                let evicted = self.evict_to_bound(Some(&path));
                if evicted.entries > 0 {
                    tracing::info!(
                        entries = evicted.entries,
                        bytes = evicted.bytes,
                        "compile cache over its bound: evicted least recently used entries"
                    );
                }
                self.load_entry(engine, key)
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir.display(), "cannot store compiled code in the cache: {e}");
                None
            }
        };
        let compiled = match compiled {
            Some(compiled) => Ok(compiled),
            // SAFETY: `artifact` was produced by this engine a moment ago.
            None => unsafe {
                match kind {
                    ArtifactKind::Component => {
                        Component::deserialize(engine, &artifact).map(Compiled::Component)
                    }
                    ArtifactKind::Module => {
                        Module::deserialize(engine, &artifact).map(Compiled::Module)
                    }
                }
            }
            .map_err(|e| CacheError::Load(format!("{e:#}"))),
        }?;
        self.remember(key.hash(), &compiled);
        Ok(compiled)
    }

    /// Removes the entries of artifact layers whose digest `keep` rejects (for instance those
    /// no longer in containerd's content store), and temporary files of writers that died.
    /// Entries compiled from rootfs files are left to the size bound.
    pub fn retain(&self, keep: impl Fn(&ContentDigest) -> bool) -> Result<Removed, CacheError> {
        let mut removed = Removed::default();
        for (path, name, meta) in self.list()? {
            let stale_temp = name.starts_with(".tmp-")
                && meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|age| age > STALE_TEMP_AGE);
            let gone_layer = matches!(
                key::parse_file_name(&name),
                Some((Origin::Layer, digest)) if !keep(&digest)
            );
            if stale_temp || gone_layer {
                if std::fs::remove_file(&path).is_ok() {
                    removed.entries += 1;
                    removed.bytes += meta.len();
                }
                let _ = std::fs::remove_file(lock_path(&path));
            }
        }
        Ok(removed)
    }

    /// The total size of the entries.
    pub fn total_bytes(&self) -> Result<u64, CacheError> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|(_, name, _)| name.ends_with(".cwasm"))
            .map(|(_, _, meta)| meta.len())
            .sum())
    }

    /// Evicts least recently used entries (by modification time, which a hit refreshes) until
    /// the total is within the bound; `spare` (the entry just written) is never evicted.
    pub fn evict_to_bound(&self, spare: Option<&Path>) -> Removed {
        let mut removed = Removed::default();
        let Ok(listed) = self.list() else {
            return removed;
        };
        let mut entries: Vec<(PathBuf, u64, SystemTime)> = listed
            .into_iter()
            .filter(|(_, name, _)| name.ends_with(".cwasm"))
            .map(|(path, _, meta)| {
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                (path, meta.len(), used)
            })
            .collect();
        let mut total: u64 = entries.iter().map(|(_, len, _)| len).sum();
        entries.sort_by_key(|(_, _, used)| *used);
        for (path, len, _) in entries {
            if total <= self.max_bytes {
                break;
            }
            if Some(path.as_path()) == spare {
                continue;
            }
            if std::fs::remove_file(&path).is_ok() {
                let _ = std::fs::remove_file(lock_path(&path));
                total -= len;
                removed.entries += 1;
                removed.bytes += len;
            }
        }
        removed
    }

    fn list(&self) -> Result<Vec<(PathBuf, String, std::fs::Metadata)>, CacheError> {
        let read_dir_error = |source| CacheError::ReadDir {
            dir: self.dir.clone(),
            source,
        };
        let mut listed = Vec::new();
        for dir_entry in std::fs::read_dir(&self.dir).map_err(read_dir_error)? {
            let Ok(dir_entry) = dir_entry else { continue };
            let Ok(meta) = dir_entry.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let name = dir_entry.file_name().to_string_lossy().into_owned();
            listed.push((dir_entry.path(), name, meta));
        }
        Ok(listed)
    }

    /// An exclusive lock on `key`'s lock file, held until dropped; `None` when the file cannot
    /// be locked (then concurrent first users each compile, and the renames race harmlessly).
    fn lock(&self, key: &CacheKey) -> Option<Flock<File>> {
        let path = lock_path(&self.entry_path(key));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(
                |e| tracing::warn!(lock = %path.display(), "cannot open the compile lock: {e}"),
            )
            .ok()?;
        Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| tracing::warn!(lock = %path.display(), "cannot take the compile lock: {e}"))
            .ok()
    }
}

/// Refuses a cache directory that anyone but the shim's user could write to.
fn check_private(dir: &Path) -> Result<(), CacheError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir).map_err(|source| CacheError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let unsafe_dir = |reason: String| CacheError::UnsafeDir {
        dir: dir.to_path_buf(),
        reason,
    };
    if !meta.is_dir() {
        return Err(unsafe_dir("not a directory".into()));
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != uid {
        return Err(unsafe_dir(format!(
            "owned by uid {}, not the shim's uid {uid}",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "writable by group or others (mode {:o})",
            meta.mode() & 0o7777
        )));
    }
    Ok(())
}

fn lock_path(entry: &Path) -> PathBuf {
    let mut name = entry.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

fn remove_quietly(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(entry = %path.display(), "cannot remove a compile cache entry: {e}");
    }
}

/// Whether `wasm` is a component or a core module; refuses wasmtime's precompiled artifacts
/// and anything that is not Wasm.
pub fn wasm_artifact_kind(wasm: &[u8]) -> Result<ArtifactKind, CacheError> {
    if let Some(precompiled) = Engine::detect_precompiled(wasm) {
        return Err(CacheError::Precompiled {
            what: match precompiled {
                Precompiled::Component => "component",
                Precompiled::Module => "module",
            },
        });
    }
    if wasm.starts_with(b"\x7fELF") {
        return Err(CacheError::Precompiled { what: "ELF object" });
    }
    if wasm.len() < 8 || !spore_format::starts_with_wasm_magic(wasm) {
        return Err(CacheError::NotWasm {
            prefix: String::from_utf8_lossy(&wasm[..wasm.len().min(8)]).into_owned(),
        });
    }
    Ok(if wasm[4..8] == spore_format::COMPONENT_VERSION {
        ArtifactKind::Component
    } else {
        ArtifactKind::Module
    })
}
