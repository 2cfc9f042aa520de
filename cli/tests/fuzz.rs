//! Fuzz targets (proptest mutation fuzzing, `spore_e2e::fuzz`) for what `spore` reads from the
//! command line and from the user's machine: image references, `KEY=VALUE` annotations, and
//! the Docker config file with its credentials. Each ends in a value or a clear error.

use proptest::prelude::*;
use spore_cli::artifact::parse_annotations;
use spore_cli::auth::DockerConfig;
use spore_cli::registry::parse_reference;
use spore_e2e::fuzz;

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn fuzz_image_reference(text in fuzz::text_inputs(vec![
        b"localhost:5000/spore/hello:1".to_vec(),
        b"registry.example.com/a/b/c@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_vec(),
        b"docker.io/library/app:latest".to_vec(),
        b"[::1]:5000/app:v1".to_vec(),
    ])) {
        if let Err(err) = parse_reference(&text) {
            prop_assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn fuzz_annotations(text in fuzz::text_inputs(vec![
        b"org.opencontainers.image.source=https://example.com\nnote=a=b".to_vec(),
    ])) {
        let pairs: Vec<String> = text.lines().map(str::to_owned).collect();
        if let Err(bad) = parse_annotations(&pairs) {
            prop_assert!(pairs.contains(&bad.0));
        }
    }

    #[test]
    fn fuzz_docker_config(text in fuzz::text_inputs(vec![
        br#"{"auths":{"localhost:5000":{"auth":"dXNlcjpwYXNz"}},"credsStore":"desktop","credHelpers":{"ghcr.io":"gh"}}"#.to_vec(),
        br#"{"auths":{"https://index.docker.io/v1/":{"username":"u","password":"p"}}}"#.to_vec(),
    ])) {
        let _ = DockerConfig::parse(&text);
    }
}
