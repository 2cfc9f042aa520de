//! Spore's own two images, assembled without Docker from static binaries on an empty base:
//! - the operator: `spore-operator run`, as the non-root user 65532 (what
//!   `images/operator.Dockerfile` builds on distroless);
//! - the node installer: `spore-operator node-install` plus the shim it copies onto each node
//!   (`images/node-installer.Dockerfile`).
//!
//! Same binaries in, same digests out: one layer, owner root, mtime 0, no build time recorded.

use super::ImageBuilder;

/// Where the binaries sit in both images (also the images' `PATH`).
pub const BIN_DIR: &str = "/usr/local/bin";
/// The operator's non-root user (distroless's `nonroot`).
pub const NONROOT: &str = "65532:65532";

fn base(architecture: &str) -> ImageBuilder {
    ImageBuilder::new()
        .architecture(architecture)
        .env(format!("PATH={BIN_DIR}"))
        // tempfile and friends expect a writable /tmp even in an empty image
        .dir("/tmp", 0o1777)
        .label(
            "org.opencontainers.image.source",
            "https://github.com/spore-dev/spore",
        )
}

/// The operator image around a static `spore-operator`.
pub fn operator(spore_operator: Vec<u8>, version: &str, architecture: &str) -> ImageBuilder {
    base(architecture)
        .executable(&format!("{BIN_DIR}/spore-operator"), spore_operator)
        .entrypoint([format!("{BIN_DIR}/spore-operator")])
        .cmd(["run"])
        .user(NONROOT)
        .label("org.opencontainers.image.title", "spore-operator")
        .label("org.opencontainers.image.version", version)
}

/// The node-installer image around a static `spore-operator` and the static shim.
pub fn node_installer(
    spore_operator: Vec<u8>,
    shim: Vec<u8>,
    version: &str,
    architecture: &str,
) -> ImageBuilder {
    base(architecture)
        .executable(&format!("{BIN_DIR}/spore-operator"), spore_operator)
        .executable(&format!("{BIN_DIR}/containerd-shim-spore-v1"), shim)
        .env(format!(
            "SPORE_SHIM_SOURCE={BIN_DIR}/containerd-shim-spore-v1"
        ))
        .entrypoint([format!("{BIN_DIR}/spore-operator")])
        .cmd(["node-install"])
        .label("org.opencontainers.image.title", "spore-node-installer")
        .label("org.opencontainers.image.version", version)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::tar_entries;
    use super::*;

    fn config(image: &super::super::BuiltImage) -> serde_json::Value {
        serde_json::from_slice(&image.config.data).expect("config json")
    }

    #[test]
    fn the_same_binaries_give_the_same_digest() {
        let a = node_installer(b"op".to_vec(), b"shim".to_vec(), "0.1.0", "amd64")
            .build()
            .expect("build");
        let b = node_installer(b"op".to_vec(), b"shim".to_vec(), "0.1.0", "amd64")
            .build()
            .expect("build");
        assert_eq!(a.digest(), b.digest());
        let c = node_installer(b"op".to_vec(), b"shim2".to_vec(), "0.1.0", "amd64")
            .build()
            .expect("build");
        assert_ne!(a.digest(), c.digest());
    }

    #[test]
    fn the_operator_runs_as_nonroot_from_its_binary() {
        let builder = operator(b"op".to_vec(), "0.1.0", "arm64");
        let image = builder.build().expect("build");
        let config = config(&image);
        assert_eq!(config["architecture"], "arm64");
        assert_eq!(config["config"]["User"], NONROOT);
        assert_eq!(
            config["config"]["Entrypoint"],
            serde_json::json!(["/usr/local/bin/spore-operator"])
        );
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["run"]));
        let entries: Vec<(String, u32)> = tar_entries(&builder.layer_tar().expect("tar"))
            .into_iter()
            .map(|(path, _, mode, _)| (path, mode))
            .collect();
        assert!(
            entries.contains(&("usr/local/bin/spore-operator".to_owned(), 0o755)),
            "{entries:?}"
        );
        assert!(
            entries.contains(&("tmp/".to_owned(), 0o1777)),
            "{entries:?}"
        );
    }

    #[test]
    fn the_installer_points_at_its_shim_and_runs_as_root() {
        let image = node_installer(b"op".to_vec(), b"shim".to_vec(), "0.1.0", "amd64")
            .build()
            .expect("build");
        let config = config(&image);
        assert!(config["config"]["User"].is_null());
        let env = config["config"]["Env"].as_array().expect("env").clone();
        assert!(
            env.contains(&serde_json::json!(
                "SPORE_SHIM_SOURCE=/usr/local/bin/containerd-shim-spore-v1"
            )),
            "{env:?}"
        );
        assert_eq!(config["config"]["Cmd"], serde_json::json!(["node-install"]));
    }
}
