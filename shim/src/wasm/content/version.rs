//! Whether a containerd can pull OCI Wasm artifacts at all. Before 1.6.25 and 1.7.7, containerd's
//! pull unpacks every image and fails on artifacts with `mismatched image rootfs and manifest
//! layers`; the Version API tells which containerd the shim talks to.

use super::ContentError;

/// What Spore asks for, named in the error.
pub const NEEDED: &str = "containerd 1.7.7 or later (1.6.25 or later in the 1.6 series), or 2.x";

/// `(major, minor, patch)` from containerd's version string (`v2.1.9`, `1.7.24~ds1`,
/// `2.1.9+unknown`, `1.6.20-1`); `None` when it does not start with three numbers.
pub fn parse_version(version: &str) -> Option<(u64, u64, u64)> {
    let text = version.trim().trim_start_matches('v');
    let mut numbers = text.splitn(3, '.');
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    let rest = numbers.next()?;
    let patch_digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let patch = patch_digits.parse().ok()?;
    Some((major, minor, patch))
}

/// `Ok` when containerd `version` can pull OCI Wasm artifacts; otherwise an error naming the
/// version found and the version needed. A version string Spore cannot read is let through
/// (with a warning): the pull itself will tell.
pub fn check_artifact_support(version: &str) -> Result<(), ContentError> {
    let Some((major, minor, patch)) = parse_version(version) else {
        tracing::warn!(
            "cannot read containerd's version {version:?}; assuming it pulls Wasm artifacts"
        );
        return Ok(());
    };
    let supported = match (major, minor) {
        (0, _) => false,
        (1, minor) if minor < 6 => false,
        (1, 6) => patch >= 25,
        (1, 7) => patch >= 7,
        _ => true,
    };
    if supported {
        Ok(())
    } else {
        Err(ContentError::ContainerdTooOld {
            version: version.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_with_distribution_suffixes() {
        assert_eq!(parse_version("v2.1.9"), Some((2, 1, 9)));
        assert_eq!(parse_version("1.7.24~ds1"), Some((1, 7, 24)));
        assert_eq!(parse_version("2.1.9+unknown"), Some((2, 1, 9)));
        assert_eq!(parse_version("1.6.20-1"), Some((1, 6, 20)));
        assert_eq!(parse_version("dev"), None);
        assert_eq!(parse_version("1.7"), None);
    }

    #[test]
    fn boundaries() {
        for ok in [
            "1.6.25",
            "1.7.7",
            "1.7.24~ds1",
            "v2.0.0",
            "2.1.9+unknown",
            "3.0.0",
        ] {
            assert!(check_artifact_support(ok).is_ok(), "{ok}");
        }
        for old in ["1.6.24", "1.6.20", "1.7.6", "1.5.18", "v0.9.0"] {
            let err = check_artifact_support(old).expect_err(old);
            let text = err.to_string();
            assert!(text.contains(old), "{text}");
            assert!(text.contains(NEEDED), "{text}");
            assert!(
                text.contains("mismatched image rootfs and manifest layers"),
                "{text}"
            );
        }
        assert!(check_artifact_support("weird").is_ok());
    }
}
