//! Images built locally reach the loopback registry intact and come back through CRI.

use spore_e2e::image::{
    self, ComponentInfo, MEDIA_TYPE_MANIFEST, MEDIA_TYPE_WASM_CONFIG, MEDIA_TYPE_WASM_LAYER,
    WasmArtifact,
};
use spore_e2e::{Containerd, ContainerdOptions, CriClient, Registry};

#[tokio::test]
async fn busybox_pushed_with_skopeo_is_pulled_through_cri() {
    let registry = Registry::start().expect("registry");
    let containerd =
        Containerd::start(ContainerdOptions::default().plain_http_registry(registry.host()))
            .expect("containerd");
    let layout_dir = tempfile::tempdir().expect("tempdir");
    let busybox = image::busybox()
        .expect("busybox-static")
        .build()
        .expect("build");
    let layout = busybox
        .write_layout(layout_dir.path(), "1")
        .expect("layout");
    let reference = layout
        .push_with_skopeo(&registry.host(), "spore/busybox", "1")
        .expect("skopeo push");
    assert_eq!(reference, format!("{}/spore/busybox:1", registry.host()));

    let stored = registry
        .manifest("spore/busybox", "1")
        .expect("manifest in registry");
    assert_eq!(stored.digest, busybox.digest());

    // ctr pulls it too (plain HTTP), into another namespace.
    containerd
        .ctr_pull("default", &reference)
        .expect("ctr pull");
    let listed = containerd
        .ctr_in("default", &["images", "ls", "-q"])
        .expect("ctr images ls");
    assert!(
        listed.stdout.lines().any(|l| l == reference),
        "{}",
        listed.stdout
    );

    let mut cri = CriClient::for_containerd(&containerd).await.expect("CRI");
    let image_ref = cri.pull_image(&reference).await.expect("PullImage");
    assert!(image_ref.starts_with("sha256:"), "{image_ref}");
    let status = cri
        .image_status(&reference)
        .await
        .expect("ImageStatus")
        .expect("image present");
    assert!(
        status.repo_tags.contains(&reference),
        "{:?}",
        status.repo_tags
    );
    assert!(
        status.size > 1_000_000,
        "busybox is over 1 MB, got {}",
        status.size
    );
}

#[tokio::test]
async fn wasm_artifacts_keep_their_media_types_in_the_registry() {
    let registry = Registry::start().expect("registry");
    // A tiny valid core module: magic, version 1.
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    let artifact = WasmArtifact::new(wasm.clone())
        .component(ComponentInfo {
            exports: vec!["wasi:cli/run@0.2.0".into()],
            imports: vec![],
        })
        .build();

    // Through skopeo...
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = artifact.write_layout(dir.path(), "v1").expect("layout");
    layout
        .push_with_skopeo(&registry.host(), "wasm/skopeo", "v1")
        .expect("skopeo push");
    // ...and over the distribution API.
    artifact
        .push_http(&registry.host(), "wasm/http", "v1")
        .expect("HTTP push");

    for repo in ["wasm/skopeo", "wasm/http"] {
        let stored = registry.manifest(repo, "v1").expect("manifest");
        assert_eq!(stored.media_type, MEDIA_TYPE_MANIFEST, "{repo}");
        assert_eq!(
            stored.body, artifact.manifest.data,
            "{repo}: manifest bytes changed"
        );
        let manifest: serde_json::Value = serde_json::from_slice(&stored.body).expect("json");
        assert_eq!(manifest["config"]["mediaType"], MEDIA_TYPE_WASM_CONFIG);
        assert_eq!(manifest["layers"][0]["mediaType"], MEDIA_TYPE_WASM_LAYER);
        let layer = registry
            .blob(
                repo,
                manifest["layers"][0]["digest"].as_str().expect("digest"),
            )
            .expect("layer blob");
        assert_eq!(layer, wasm, "{repo}");
        let config = registry
            .blob(repo, manifest["config"]["digest"].as_str().expect("digest"))
            .expect("config blob");
        let config: serde_json::Value = serde_json::from_slice(&config).expect("json");
        assert_eq!(config["os"], "wasip2");
    }
}

#[tokio::test]
async fn a_plain_wasm_image_pushed_over_http_is_pulled_through_cri() {
    let registry = Registry::start().expect("registry");
    let containerd =
        Containerd::start(ContainerdOptions::default().plain_http_registry(registry.host()))
            .expect("containerd");
    let image = image::ImageBuilder::new()
        .file("/hello.wasm", b"\0asm\x01\0\0\0".to_vec())
        .entrypoint(["/hello.wasm"])
        .env("GREETING=hello")
        .build()
        .expect("build");
    let reference = image
        .push_http(&registry.host(), "spore/hello", "1")
        .expect("push");
    let mut cri = CriClient::for_containerd(&containerd).await.expect("CRI");
    cri.pull_image(&reference).await.expect("PullImage");
    let images = containerd.ctr_ok(&["images", "ls"]).expect("ctr images ls");
    assert!(images.contains(&reference), "{images}");
    assert!(images.contains(image.digest()), "{images}");

    // The same image imported with ctr into another namespace is listed under the given name.
    image
        .import_into_namespace(&containerd, "default", "localhost/spore/hello:1")
        .expect("ctr import");
    let listed = containerd
        .ctr_in("default", &["images", "ls", "-q"])
        .expect("ctr images ls");
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l == "localhost/spore/hello:1"),
        "{}",
        listed.stdout
    );
}

/// containerd's CRI pulls a Wasm artifact (it has no rootfs to unpack); its layer is then in
/// the content store, where the Spore shim reads it.
#[tokio::test]
async fn a_wasm_artifact_is_pulled_through_cri_into_the_content_store() {
    let registry = Registry::start().expect("registry");
    let containerd =
        Containerd::start(ContainerdOptions::default().plain_http_registry(registry.host()))
            .expect("containerd");
    let wasm = b"\0asm\x01\0\0\0".to_vec();
    let artifact = WasmArtifact::new(wasm.clone()).build();
    let reference = artifact
        .push_http(&registry.host(), "wasm/cri", "1")
        .expect("push");

    let mut cri = CriClient::for_containerd(&containerd).await.expect("CRI");
    let image_ref = cri
        .pull_image(&reference)
        .await
        .expect("PullImage of a Wasm artifact");
    assert_eq!(
        image_ref, artifact.config.digest,
        "CRI names images by their config digest"
    );
    let layer = containerd
        .ctr_ok(&["content", "get", &artifact.layers[0].digest])
        .expect("the layer is in the content store");
    assert_eq!(layer.as_bytes(), wasm.as_slice());
}
