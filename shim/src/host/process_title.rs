//! What `ps` and `/proc/<pid>/cmdline` show for a process that became something else without an
//! exec: a child of the fork server becoming a pod's serving process, the pod's init.
//!
//! The kernel shows the bytes between the process's `arg_start` and `arg_end`. With
//! `CAP_SYS_RESOURCE` those bounds can be pointed at new memory (`prctl(PR_SET_MM)`); without it
//! (containers, sandboxes that drop it) the new command line is written over the old one, so it
//! must fit in the old one's room: the fork server is started with room to spare.

use std::ffi::CStr;

/// Where this process's argument strings are (`arg_start`, `arg_end` of `/proc/self/stat`).
pub fn arg_area() -> Option<(usize, usize)> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    // Fields 48 and 49 of stat(5); the split starts at field 3.
    let start = fields.nth(45)?.parse().ok()?;
    let end = fields.next()?.parse().ok()?;
    (end > start).then_some((start, end))
}

/// The arguments as the kernel keeps them: each followed by a NUL (NULs inside dropped).
fn encode(args: &[String]) -> Vec<u8> {
    let mut area = Vec::new();
    for arg in args {
        area.extend(arg.bytes().filter(|b| *b != 0));
        area.push(0);
    }
    area
}

/// Writes `encoded` over `area`, the rest zeroed, the last byte always NUL (so the kernel reads
/// the area as separate arguments); returns whether all of it fitted. No allocation: safe to
/// call in a child forked from a threaded process.
pub fn write_in_place(area: &mut [u8], encoded: &[u8]) -> bool {
    area.fill(0);
    let Some(room) = area.len().checked_sub(1) else {
        return encoded.is_empty();
    };
    let n = encoded.len().min(room);
    area[..n].copy_from_slice(&encoded[..n]);
    encoded.len() <= room
}

/// Names this process `name` (its `comm`, at most 15 bytes shown).
pub fn set_name(name: &CStr) {
    // SAFETY: PR_SET_NAME with a NUL-terminated string.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
}

/// Shows `args` as this process's command line and `name` as its name; returns whether the
/// whole command line is shown.
pub fn set(args: &[String], name: &CStr) -> bool {
    set_name(name);
    let encoded = encode(args);
    if encoded.is_empty() {
        return false;
    }
    if point_at(&encoded) {
        return true;
    }
    let Some((start, end)) = arg_area() else {
        return false;
    };
    // SAFETY: `start..end` is this process's argument area, writable memory of its own (the
    // kernel's record of where the strings it was started with are).
    let area = unsafe { std::slice::from_raw_parts_mut(start as *mut u8, end - start) };
    write_in_place(area, &encoded)
}

/// Points `arg_start..arg_end` at a copy of `encoded` kept for the process's life
/// (`CAP_SYS_RESOURCE`).
fn point_at(encoded: &[u8]) -> bool {
    let area: &'static [u8] = Vec::leak(encoded.to_vec());
    let start = area.as_ptr() as libc::c_ulong;
    let end = start + area.len() as libc::c_ulong;
    let set = |field: libc::c_int, value: libc::c_ulong| {
        // SAFETY: PR_SET_MM of the argument area's bounds, to memory that stays valid.
        unsafe {
            libc::prctl(
                libc::PR_SET_MM,
                field as libc::c_ulong,
                value,
                0 as libc::c_ulong,
                0 as libc::c_ulong,
            ) == 0
        }
    };
    // The kernel keeps start <= end after each call: move the bound on the new area's side
    // first.
    if set(libc::PR_SET_MM_ARG_START, start) {
        set(libc::PR_SET_MM_ARG_END, end)
    } else {
        set(libc::PR_SET_MM_ARG_END, end) && set(libc::PR_SET_MM_ARG_START, start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_written_nul_separated_and_the_rest_zeroed() {
        let encoded = encode(&["/bin/shim".into(), "-socket".into(), "a\0b".into()]);
        assert_eq!(encoded, b"/bin/shim\0-socket\0ab\0");
        let mut area = vec![b'x'; 32];
        assert!(write_in_place(&mut area, &encoded));
        assert_eq!(&area[..encoded.len()], encoded.as_slice());
        assert!(area[encoded.len()..].iter().all(|b| *b == 0));
    }

    #[test]
    fn what_does_not_fit_is_cut_and_the_area_still_ends_in_nul() {
        let encoded = encode(&["0123456789".into()]);
        let mut area = vec![b'x'; 6];
        assert!(!write_in_place(&mut area, &encoded));
        assert_eq!(area, b"01234\0");
    }

    #[test]
    fn this_process_has_an_argument_area() {
        let (start, end) = arg_area().expect("arg_start and arg_end");
        let cmdline = std::fs::read("/proc/self/cmdline").expect("cmdline");
        assert_eq!(end - start, cmdline.len());
    }
}
