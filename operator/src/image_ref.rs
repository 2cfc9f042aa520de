//! OCI image references: one pattern shared by the CRD's CEL rule and the operator's own check,
//! so the apiserver and the controller never disagree about what parses.
//!
//! The grammar is the one of `distribution/reference` (`[host[:port]/]path[:tag][@digest]`),
//! written without backslashes so it can sit in a CEL string literal unchanged, and only with
//! constructs both RE2 (the apiserver) and the `regex` crate accept. IPv6 registry hosts are not
//! accepted.

use std::sync::LazyLock;

use regex::Regex;

/// `host[:port]/` prefix, then lowercase path components, an optional tag, an optional digest.
pub const IMAGE_REFERENCE_PATTERN: &str = concat!(
    "^",
    // domain: DNS components separated by dots, optional port, then a slash
    "(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:[.](?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?/)?",
    // path components: lowercase alphanumerics joined by '.', '_', '__' or dashes
    "[a-z0-9]+(?:(?:[_.]|__|[-]+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[_.]|__|[-]+)[a-z0-9]+)*)*",
    // tag
    "(?::[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?",
    // digest
    "(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    "$"
);

#[allow(clippy::expect_used)] // a constant pattern; the tests below prove it compiles
static IMAGE_REFERENCE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(IMAGE_REFERENCE_PATTERN).expect("the image pattern compiles"));

/// An image reference that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageRefError {
    /// Empty string.
    #[error("image reference is empty")]
    Empty,
    /// Longer than the CRD allows.
    #[error("image reference is {len} characters long, more than the {max} allowed")]
    TooLong {
        /// Length of the reference.
        len: usize,
        /// Limit.
        max: usize,
    },
    /// Does not follow `[host[:port]/]path[:tag][@digest]`.
    #[error(
        "image reference {0:?} is not valid: expected [host[:port]/]path[:tag][@algorithm:hex], lowercase path"
    )]
    Syntax(String),
}

/// Checks that `image` is a syntactically valid OCI reference.
pub fn validate_image_reference(image: &str) -> Result<(), ImageRefError> {
    if image.is_empty() {
        return Err(ImageRefError::Empty);
    }
    let max = crate::crd::MAX_IMAGE_LENGTH;
    if image.len() > max {
        return Err(ImageRefError::TooLong {
            len: image.len(),
            max,
        });
    }
    if IMAGE_REFERENCE.is_match(image) {
        Ok(())
    } else {
        Err(ImageRefError::Syntax(image.to_string()))
    }
}

/// The digest part (`sha256:...`) of a container status's `imageID`, if it has one.
pub fn digest_of_image_id(image_id: &str) -> Option<&str> {
    let (_, digest) = image_id.rsplit_once('@')?;
    let (algorithm, hex) = digest.split_once(':')?;
    (!algorithm.is_empty() && !hex.is_empty()).then_some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn accepts_common_references() {
        let with_digest = format!("ghcr.io/spore/app@{DIGEST}");
        let tag_and_digest = format!("localhost:5000/a/b/c:v1.2.3@{DIGEST}");
        for image in [
            "hello",
            "hello:1.0",
            "library/hello",
            "docker.io/library/hello:latest",
            "registry.example.com:5000/team/app_name:v1",
            "localhost:5000/hello",
            "127.0.0.1:5000/hello-world:dev",
            "my-registry/a.b/c__d:TAG_1",
            with_digest.as_str(),
            tag_and_digest.as_str(),
        ] {
            assert_eq!(validate_image_reference(image), Ok(()), "{image}");
        }
    }

    #[test]
    fn rejects_bad_references() {
        for image in [
            "Hello",
            "registry.example.com/App:1",
            "hello:",
            "hello::1",
            ":tag",
            "/hello",
            "hello/",
            "hello world",
            "hello@sha256:abc",
            "hello@sha256",
            "-hello",
            "hello:-tag",
            "https://registry/app",
            "reg.io/app:tag with space",
        ] {
            assert!(
                matches!(
                    validate_image_reference(image),
                    Err(ImageRefError::Syntax(_))
                ),
                "{image} should be rejected"
            );
        }
    }

    #[test]
    fn rejects_empty_and_too_long() {
        assert_eq!(validate_image_reference(""), Err(ImageRefError::Empty));
        let long = format!("reg.io/{}", "a".repeat(600));
        assert!(matches!(
            validate_image_reference(&long),
            Err(ImageRefError::TooLong { max: 512, .. })
        ));
    }

    #[test]
    fn tag_longer_than_128_is_rejected() {
        let image = format!("app:{}", "t".repeat(129));
        assert!(validate_image_reference(&image).is_err());
        let image = format!("app:{}", "t".repeat(128));
        assert!(validate_image_reference(&image).is_ok());
    }

    #[test]
    fn pattern_has_no_backslash_for_cel() {
        assert!(!IMAGE_REFERENCE_PATTERN.contains('\\'));
        assert!(!IMAGE_REFERENCE_PATTERN.contains('\''));
    }

    #[test]
    fn digest_is_taken_from_image_id() {
        let id = format!("docker.io/library/hello@{DIGEST}");
        assert_eq!(digest_of_image_id(&id), Some(DIGEST));
        assert_eq!(digest_of_image_id("hello:1.0"), None);
        assert_eq!(digest_of_image_id("hello@nocolon"), None);
    }
}
