//! Opening a file of a container's rootfs as the container would see it: every symlink is
//! followed relative to the rootfs, `..` never climbs above it, and nothing outside it is ever
//! reached. The kernel's `openat2(RESOLVE_IN_ROOT)` does this atomically (Linux 5.6+); on older
//! kernels the same resolution runs component by component with `O_NOFOLLOW`.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path};

/// How many symlinks one resolution may follow (Linux's own limit).
const MAX_SYMLINKS: usize = 40;

/// Opens `path` (absolute or relative, taken as inside the rootfs) below the directory `root`
/// for reading.
pub fn open_in_root(root: &Path, path: &Path) -> io::Result<File> {
    let root = File::open(root)?;
    match openat2_in_root(&root, path) {
        Err(err) if err.raw_os_error() == Some(libc::ENOSYS) => walk_in_root(&root, path),
        other => other,
    }
}

fn c_path(path: &OsStr) -> io::Result<CString> {
    CString::new(path.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn openat2_in_root(root: &File, path: &Path) -> io::Result<File> {
    let relative = path.strip_prefix("/").unwrap_or(path);
    let name = c_path(if relative.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        relative.as_os_str()
    })?;
    // SAFETY: a zeroed `open_how` is valid; its fields are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_RDONLY | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: openat2 with a valid directory descriptor, a NUL-terminated path and an
    // `open_how` of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as RawFd) })
}

fn openat(dir: RawFd, name: &OsStr, flags: libc::c_int) -> io::Result<OwnedFd> {
    let name = c_path(name)?;
    // SAFETY: openat with a valid directory descriptor and a NUL-terminated name.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn is_symlink(fd: RawFd) -> io::Result<bool> {
    // SAFETY: fstat into a zeroed buffer on a valid descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.st_mode & libc::S_IFMT == libc::S_IFLNK)
}

fn read_link_at(dir: RawFd, name: &OsStr) -> io::Result<OsString> {
    let name = c_path(name)?;
    let mut buffer = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat into a buffer of the length passed.
    let n =
        unsafe { libc::readlinkat(dir, name.as_ptr(), buffer.as_mut_ptr().cast(), buffer.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buffer.truncate(n as usize);
    Ok(OsString::from_vec(buffer))
}

fn components(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// The userspace version of `RESOLVE_IN_ROOT`.
fn walk_in_root(root: &File, path: &Path) -> io::Result<File> {
    let root_fd = openat(
        root.as_raw_fd(),
        OsStr::new("."),
        libc::O_PATH | libc::O_DIRECTORY,
    )?;
    // The directories from the root down to where the walk is.
    let mut dirs: Vec<OwnedFd> = Vec::new();
    let mut pending: VecDeque<OsString> = components(path).collect();
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        let here = dirs.last().unwrap_or(&root_fd).as_raw_fd();
        if name == ".." {
            dirs.pop();
            continue;
        }
        let entry = openat(here, &name, libc::O_PATH | libc::O_NOFOLLOW)?;
        if is_symlink(entry.as_raw_fd())? {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(io::Error::from_raw_os_error(libc::ELOOP));
            }
            let target = read_link_at(here, &name)?;
            let target = Path::new(&target);
            if target.is_absolute() {
                dirs.clear();
            }
            for (i, part) in components(target).enumerate() {
                pending.insert(i, part);
            }
            continue;
        }
        if pending.is_empty() {
            let file = openat(here, &name, libc::O_RDONLY | libc::O_NOFOLLOW)?;
            return Ok(File::from(file));
        }
        dirs.push(entry);
    }
    // The path named the root itself (or climbed back to it).
    let here = dirs.last().unwrap_or(&root_fd).as_raw_fd();
    Ok(File::from(openat(here, OsStr::new("."), libc::O_RDONLY)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::symlink;

    /// A rootfs with `/app.wasm -> /real/app.wasm`, `/up -> ../../..`, `/abs -> /etc/passwd`
    /// and `/etc/passwd` holding "inside".
    fn rootfs() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("real")).expect("mkdir");
        std::fs::create_dir_all(root.join("etc")).expect("mkdir");
        std::fs::write(root.join("real/app.wasm"), b"\0asm").expect("write");
        std::fs::write(root.join("etc/passwd"), b"inside").expect("write");
        symlink("/real/app.wasm", root.join("app.wasm")).expect("symlink");
        symlink("../../..", root.join("up")).expect("symlink");
        symlink("/etc/passwd", root.join("abs")).expect("symlink");
        symlink("loop2", root.join("loop1")).expect("symlink");
        symlink("loop1", root.join("loop2")).expect("symlink");
        (dir, root)
    }

    fn read(file: io::Result<File>) -> String {
        let mut text = String::new();
        file.expect("opens")
            .read_to_string(&mut text)
            .expect("reads");
        text
    }

    fn both(root: &Path, path: &str) -> [io::Result<File>; 2] {
        let dir = File::open(root).expect("root");
        [
            openat2_in_root(&dir, Path::new(path)),
            walk_in_root(&dir, Path::new(path)),
        ]
    }

    #[test]
    fn absolute_symlinks_resolve_inside_the_rootfs() {
        let (_dir, root) = rootfs();
        for file in both(&root, "/app.wasm") {
            assert_eq!(read(file), "\0asm");
        }
        // `/abs -> /etc/passwd` is the rootfs's passwd, never the host's.
        for file in both(&root, "/abs") {
            assert_eq!(read(file), "inside");
        }
    }

    #[test]
    fn dot_dot_never_climbs_out() {
        let (_dir, root) = rootfs();
        for file in both(&root, "/../../../etc/passwd") {
            assert_eq!(read(file), "inside");
        }
        for file in both(&root, "/up/etc/passwd") {
            assert_eq!(read(file), "inside");
        }
    }

    #[test]
    fn symlink_loops_and_missing_files_are_errors() {
        let (_dir, root) = rootfs();
        for file in both(&root, "/loop1") {
            assert_eq!(file.expect_err("a loop").raw_os_error(), Some(libc::ELOOP));
        }
        for file in both(&root, "/nope.wasm") {
            assert_eq!(file.expect_err("missing").kind(), io::ErrorKind::NotFound);
        }
    }
}
