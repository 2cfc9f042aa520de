//! The images every test needs: busybox (Debian's static build) and the pause sandbox image.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::{DEFAULT_PATH_ENV, ImageBuilder, ImageError, io_err};

/// The busybox commands linked into [`busybox`] images.
pub const BUSYBOX_APPLETS: &[&str] = &["sh", "echo", "sleep", "httpd", "nc", "wget", "cat", "ls"];

/// Where Debian's `busybox-static` installs busybox.
pub const BUSYBOX_BINARY: &str = "/bin/busybox";

/// A busybox image from Debian's static busybox: `/bin/busybox`, symlinks for
/// [`BUSYBOX_APPLETS`], `/tmp`, `PATH` set, `Cmd ["sh"]`.
pub fn busybox() -> Result<ImageBuilder, ImageError> {
    let binary = std::fs::read(BUSYBOX_BINARY).map_err(io_err(
        "reading (install busybox-static)",
        Path::new(BUSYBOX_BINARY),
    ))?;
    let mut builder = ImageBuilder::new()
        .executable("/bin/busybox", binary)
        .dir("/tmp", 0o1777)
        .dir("/etc", 0o755)
        .dir("/proc", 0o755)
        .dir("/sys", 0o755)
        .dir("/dev", 0o755)
        .file(
            "/etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        )
        .file("/etc/group", "root:x:0:\nnogroup:x:65534:\n")
        .env(DEFAULT_PATH_ENV)
        .cmd(["sh"]);
    for applet in BUSYBOX_APPLETS {
        builder = builder.symlink(&format!("/bin/{applet}"), "busybox");
    }
    Ok(builder)
}

/// The pause program's source, compiled by [`pause_binary`].
pub fn pause_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pause")
        .join("pause.c")
}

/// Builds (once; again when the source is newer) the static pause program into
/// `target/spore-e2e/pause` with `gcc -static -Os`, and returns its path. Safe to call from
/// parallel tests: each compiles to its own temporary name and renames into place.
pub fn pause_binary() -> Result<PathBuf, ImageError> {
    let source = pause_source();
    let out_dir = crate::tools::target_dir().join("spore-e2e");
    let binary = out_dir.join("pause");
    let source_time = std::fs::metadata(&source)
        .and_then(|m| m.modified())
        .map_err(io_err("reading", &source))?;
    if let Ok(time) = std::fs::metadata(&binary).and_then(|m| m.modified())
        && time >= source_time
    {
        return Ok(binary);
    }
    std::fs::create_dir_all(&out_dir).map_err(io_err("creating", &out_dir))?;
    let temporary = out_dir.join(
        format!(
            "pause.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        )
        .replace(['(', ')'], ""),
    );
    let output = Command::new("gcc")
        .args(["-static", "-Os", "-Wall", "-o"])
        .arg(&temporary)
        .arg(&source)
        .output()
        .map_err(|e| ImageError::Pause(format!("running gcc: {e}")))?;
    if !output.status.success() {
        return Err(ImageError::Pause(
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ));
    }
    std::fs::rename(&temporary, &binary).map_err(io_err("moving into place", &binary))?;
    Ok(binary)
}

/// The pause image: `/pause` (static), entrypoint `["/pause"]`.
pub fn pause() -> Result<ImageBuilder, ImageError> {
    let binary = pause_binary()?;
    let data = std::fs::read(&binary).map_err(io_err("reading", &binary))?;
    Ok(ImageBuilder::new()
        .executable("/pause", data)
        .entrypoint(["/pause"])
        .env(DEFAULT_PATH_ENV))
}
