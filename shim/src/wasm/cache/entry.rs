//! The on-disk format of a cache entry: wasmtime's compiled artifact (an ELF image, exactly as
//! `Engine::precompile_*` returned it) followed by a trailer that Spore writes and checks before
//! anything is deserialized:
//!
//! ```text
//! [ compiled artifact: blob_len bytes ]
//! [ key hash: 32 ][ sha256(artifact): 32 ][ blob_len: u64 LE ][ kind: u8 ][ format: u8 ][ 0: 6 ][ magic: 8 ]
//! ```
//!
//! wasmtime parses the ELF image by its headers and ignores the bytes after it, so the file is
//! mmapped as is by `deserialize_file`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"SPORE-CC";
const FORMAT: u8 = 1;
pub(crate) const TRAILER_LEN: u64 = 32 + 32 + 8 + 1 + 1 + 6 + 8;

/// What an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactKind {
    Component,
    Module,
}

impl ArtifactKind {
    fn byte(self) -> u8 {
        match self {
            ArtifactKind::Component => 1,
            ArtifactKind::Module => 2,
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(ArtifactKind::Component),
            2 => Some(ArtifactKind::Module),
            _ => None,
        }
    }
}

/// Why an entry on disk is not used (it is then recompiled and replaced).
#[derive(Debug, thiserror::Error)]
pub enum Rejection {
    #[error("it is shorter than Spore's trailer: not a file Spore wrote")]
    TooShort,
    #[error("it does not end with Spore's magic bytes: not a file Spore wrote")]
    NoMagic,
    #[error("it was written in cache format {0}, this Spore writes {FORMAT}")]
    Format(u8),
    #[error("it belongs to another key (another engine build, Spore version or source)")]
    OtherKey,
    #[error("its recorded length {recorded} does not match the file ({actual} bytes of artifact)")]
    Length { recorded: u64, actual: u64 },
    #[error("its artifact does not match the recorded checksum (corrupt)")]
    Checksum,
    #[error("it records an unknown artifact kind {0}")]
    Kind(u8),
    #[error("reading it: {0}")]
    Io(#[from] io::Error),
}

/// Checks the entry open in `file` against `key_hash`, reading it all once (the checksum), and
/// returns what it holds. Nothing in the file is trusted before this returns `Ok`.
pub(crate) fn verify(file: &mut File, key_hash: &[u8; 32]) -> Result<ArtifactKind, Rejection> {
    let len = file.metadata()?.len();
    if len < TRAILER_LEN {
        return Err(Rejection::TooShort);
    }
    let blob_len = len - TRAILER_LEN;
    let mut trailer = [0u8; TRAILER_LEN as usize];
    file.seek(SeekFrom::Start(blob_len))?;
    file.read_exact(&mut trailer)?;
    if &trailer[80..88] != MAGIC {
        return Err(Rejection::NoMagic);
    }
    if trailer[73] != FORMAT {
        return Err(Rejection::Format(trailer[73]));
    }
    if &trailer[0..32] != key_hash {
        return Err(Rejection::OtherKey);
    }
    let mut recorded = [0u8; 8];
    recorded.copy_from_slice(&trailer[64..72]);
    let recorded = u64::from_le_bytes(recorded);
    if recorded != blob_len {
        return Err(Rejection::Length {
            recorded,
            actual: blob_len,
        });
    }
    let kind = ArtifactKind::from_byte(trailer[72]).ok_or(Rejection::Kind(trailer[72]))?;
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut remaining = blob_len;
    let mut buf = vec![0u8; 1 << 20];
    while remaining > 0 {
        let want = remaining.min(buf.len() as u64) as usize;
        file.read_exact(&mut buf[..want])?;
        hasher.update(&buf[..want]);
        remaining -= want as u64;
    }
    if hasher.finalize().as_slice() != &trailer[32..64] {
        return Err(Rejection::Checksum);
    }
    Ok(kind)
}

/// Writes `artifact` with its trailer to `dir/name` atomically: a temporary file in `dir`,
/// fsynced, renamed over the name, and the directory fsynced. Readers see the old entry or the
/// whole new one, never a part.
pub(crate) fn write(
    dir: &Path,
    name: &str,
    kind: ArtifactKind,
    key_hash: &[u8; 32],
    artifact: &[u8],
) -> io::Result<PathBuf> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let temp = dir.join(format!(
        ".tmp-{name}-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)?;
        file.write_all(artifact)?;
        file.write_all(&trailer(kind, key_hash, artifact))?;
        file.sync_all()?;
        let path = dir.join(name);
        std::fs::rename(&temp, &path)?;
        File::open(dir)?.sync_all()?;
        Ok(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

fn trailer(kind: ArtifactKind, key_hash: &[u8; 32], artifact: &[u8]) -> Vec<u8> {
    let mut trailer = Vec::with_capacity(TRAILER_LEN as usize);
    trailer.extend_from_slice(key_hash);
    trailer.extend_from_slice(&Sha256::digest(artifact));
    trailer.extend_from_slice(&(artifact.len() as u64).to_le_bytes());
    trailer.push(kind.byte());
    trailer.push(FORMAT);
    trailer.extend_from_slice(&[0u8; 6]);
    trailer.extend_from_slice(MAGIC);
    trailer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(artifact: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "e.cwasm",
            ArtifactKind::Module,
            &[7; 32],
            artifact,
        )
        .expect("write");
        (dir, path)
    }

    #[test]
    fn an_entry_verifies_with_its_key_only() {
        let (_dir, path) = written(b"compiled code");
        let mut file = File::open(&path).expect("open");
        assert_eq!(
            verify(&mut file, &[7; 32]).expect("verifies"),
            ArtifactKind::Module
        );
        assert!(matches!(
            verify(&mut file, &[8; 32]),
            Err(Rejection::OtherKey)
        ));
        assert_eq!(
            std::fs::metadata(&path).expect("stat").len(),
            13 + TRAILER_LEN
        );
    }

    #[test]
    fn a_flipped_byte_fails_the_checksum() {
        let (_dir, path) = written(b"compiled code");
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[3] ^= 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let mut file = File::open(&path).expect("open");
        assert!(matches!(
            verify(&mut file, &[7; 32]),
            Err(Rejection::Checksum)
        ));
    }

    #[test]
    fn foreign_files_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.cwasm");
        std::fs::write(&path, b"short").expect("write");
        let mut file = File::open(&path).expect("open");
        assert!(matches!(
            verify(&mut file, &[7; 32]),
            Err(Rejection::TooShort)
        ));
        std::fs::write(&path, vec![0x7f; 500]).expect("write");
        let mut file = File::open(&path).expect("open");
        assert!(matches!(
            verify(&mut file, &[7; 32]),
            Err(Rejection::NoMagic)
        ));
    }

    #[test]
    fn no_temporary_file_is_left_behind() {
        let (dir, _path) = written(b"x");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("e.cwasm")]);
    }
}
