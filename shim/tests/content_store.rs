//! Reading OCI Wasm artifacts back from a real containerd's content store (2.x and 1.7): pushed to
//! a loopback registry, pulled through CRI as the kubelet would, then resolved and read by the
//! shim's `content` module. Needs the test guests (`bash hack/build-guests.sh`) and root.

use std::collections::HashMap;
use std::sync::Arc;

use containerd_client::services::v1::GetContainerRequest;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::tonic::Request;
use spore_e2e::image::{
    self, Blob, BuiltImage, ImageBuilder, MEDIA_TYPE_MANIFEST, MEDIA_TYPE_WASM_COMPONENT_LAYER,
    WasmArtifact,
};
use spore_e2e::tools::ContainerdVersion;
use spore_e2e::{ContainerSpec, Containerd, ContainerdOptions, CriClient, Registry};
use spore_shim::wasm::cache::{CacheConfig, CompileCache, ContentDigest};
use spore_shim::wasm::compile::Guest;
use spore_shim::wasm::content::manifest::Descriptor;
use spore_shim::wasm::content::{
    self, ContentError, ContentStore, IMAGE_NAME_ANNOTATION, ImageKind, WasmLayer,
    check_artifact_support,
};

const CRI_NAMESPACE: &str = "k8s.io";

fn hello() -> Vec<u8> {
    spore_e2e::tools::guest_wasm("wasm32-wasip2", "hello").unwrap_or_else(|e| panic!("{e}"))
}

struct Setup {
    registry: Registry,
    containerd: Containerd,
}

fn start(version: ContainerdVersion, pause_image: bool) -> Setup {
    let registry = Registry::start().expect("registry");
    let containerd = Containerd::start(
        ContainerdOptions::default()
            .version(version)
            .plain_http_registry(registry.host())
            .import_pause_image(pause_image),
    )
    .unwrap_or_else(|e| {
        panic!(
            "containerd {version:?} starts ({}): {e}",
            version.setup_command()
        )
    });
    Setup {
        registry,
        containerd,
    }
}

async fn pulled(setup: &Setup, image: &BuiltImage, repo: &str) -> String {
    let reference = image
        .push_http(&setup.registry.host(), repo, "1")
        .expect("push");
    let mut cri = CriClient::for_containerd(&setup.containerd)
        .await
        .expect("CRI");
    cri.pull_image(&reference).await.expect("PullImage");
    reference
}

async fn store(setup: &Setup) -> ContentStore {
    ContentStore::connect(setup.containerd.socket(), CRI_NAMESPACE)
        .await
        .expect("connects to containerd")
}

/// An artifact pulled through CRI is found as an artifact; its layer comes back byte for byte,
/// checked against its digest, and compiles into a runnable command.
async fn artifact_round_trip(version: ContainerdVersion) {
    let setup = start(version, false);
    let wasm = hello();
    let artifact = WasmArtifact::new(wasm.clone()).build();
    let reference = pulled(&setup, &artifact, "spore/hello-artifact").await;
    let store = store(&setup).await;

    let containerd_version = store.version().await.expect("Version");
    store
        .check_artifact_support()
        .await
        .unwrap_or_else(|e| panic!("containerd {containerd_version}: {e}"));

    let kind = store.image_kind(&reference).await.expect("image kind");
    let ImageKind::WasmArtifact(layer) = kind else {
        panic!("{reference} was not seen as an artifact: {kind:?}")
    };
    assert_eq!(layer.digest, artifact.layers[0].digest);
    assert_eq!(layer.manifest_digest, artifact.digest());
    assert_eq!(layer.media_type, "application/wasm");
    assert_eq!(layer.size, wasm.len() as u64);
    let bytes = store.read_layer(&layer).await.expect("read layer");
    assert_eq!(bytes, wasm, "the layer came back changed");

    // Streamed to a file as well.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("layer.wasm");
    let descriptor = Descriptor {
        media_type: layer.media_type.clone(),
        digest: layer.digest.clone(),
        size: layer.size as i64,
        platform: None,
    };
    store
        .copy_blob_to_file(&descriptor, &file)
        .await
        .expect("copy to file");
    assert_eq!(std::fs::read(&file).expect("read file"), wasm);

    // A descriptor whose digest does not match the content is refused.
    let lying = Descriptor {
        digest: artifact.config.digest.clone(),
        size: artifact.config.data.len() as i64,
        ..descriptor.clone()
    };
    let honest = store.read_blob(&lying, 1 << 20).await.expect("config blob");
    assert_eq!(honest, artifact.config.data);
    let wrong_size = Descriptor {
        size: layer.size as i64 - 1,
        ..descriptor
    };
    assert!(matches!(
        store.read_blob(&wrong_size, 1 << 30).await,
        Err(ContentError::SizeMismatch { .. })
    ));

    // The content store lists the layer (what the compile cache's GC keeps).
    let digests = store.digests().await.expect("list content");
    assert!(digests.contains(&layer.digest));

    // The layer compiles through the cache, keyed by its digest; the next pod's start is a
    // hit that does not read the layer at all.
    let engine = spore_shim::wasm::engine::new_engine().expect("engine");
    let config = CacheConfig {
        dir: dir.path().join("cache"),
        max_bytes: u64::MAX,
    };
    let first_pod = Arc::new(CompileCache::open(&engine, config.clone()).expect("cache"));
    let guest = content::artifact_guest(&engine, &first_pod, &store, &layer)
        .await
        .expect("compiles");
    assert!(matches!(guest, Guest::Command(_)), "{}", guest.kind());
    assert_eq!(
        (first_pod.stats().hits(), first_pod.stats().misses()),
        (0, 1)
    );
    let second_pod = Arc::new(CompileCache::open(&engine, config).expect("cache"));
    let missing = WasmLayer {
        digest: format!("sha256:{}", "0".repeat(64)),
        ..(*layer).clone()
    };
    let err = match content::artifact_guest(&engine, &second_pod, &store, &missing).await {
        Ok(guest) => panic!("a layer not in the store gave a {}", guest.kind()),
        Err(e) => e,
    };
    assert!(err.to_string().contains("Content.Read"), "{err}");
    let again = content::artifact_guest(&engine, &second_pod, &store, &layer)
        .await
        .expect("hit");
    assert!(matches!(again, Guest::Command(_)));
    assert_eq!(
        (second_pod.stats().hits(), second_pod.stats().misses()),
        (1, 0)
    );
    let removed = second_pod
        .retain(|d: &ContentDigest| digests.contains(&d.to_string()))
        .expect("gc");
    assert_eq!(
        removed.entries, 0,
        "the layer is still in the content store"
    );
}

#[tokio::test]
async fn an_artifact_is_read_back_from_containerd_2() {
    artifact_round_trip(ContainerdVersion::V2).await;
}

#[tokio::test]
async fn an_artifact_is_read_back_from_containerd_1_7() {
    artifact_round_trip(ContainerdVersion::V1_7).await;
}

#[tokio::test]
async fn images_are_told_apart() {
    let setup = start(ContainerdVersion::V2, false);
    let wasm = hello();
    let component_layer = WasmArtifact::new(wasm.clone())
        .layer_media_type(MEDIA_TYPE_WASM_COMPONENT_LAYER)
        .build();
    let plain = ImageBuilder::new()
        .file("/hello.wasm", wasm.clone())
        .entrypoint(["/hello.wasm"])
        .build()
        .expect("plain image");
    let config = Blob {
        media_type: "application/vnd.example.config.v1+json".into(),
        digest: image::sha256_digest(b"{}"),
        data: b"{}".to_vec(),
    };
    let data = Blob {
        media_type: "application/vnd.example.data.v1".into(),
        digest: image::sha256_digest(b"data"),
        data: b"data".to_vec(),
    };
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {"mediaType": config.media_type, "digest": config.digest, "size": 2},
        "layers": [{"mediaType": data.media_type, "digest": data.digest, "size": 4}],
    })
    .to_string()
    .into_bytes();
    let neither = BuiltImage {
        manifest: Blob {
            media_type: MEDIA_TYPE_MANIFEST.into(),
            digest: image::sha256_digest(&manifest),
            data: manifest,
        },
        config,
        layers: vec![data],
        platform: None,
    };

    let component_ref = pulled(&setup, &component_layer, "spore/component").await;
    let plain_ref = pulled(&setup, &plain, "spore/plain").await;
    let store = store(&setup).await;

    let layer = store.wasm_layer(&component_ref).await.expect("artifact");
    assert_eq!(layer.media_type, MEDIA_TYPE_WASM_COMPONENT_LAYER);
    assert_eq!(store.read_layer(&layer).await.expect("read"), wasm);

    assert_eq!(
        store.image_kind(&plain_ref).await.expect("kind"),
        ImageKind::Plain
    );
    let err = store.wasm_layer(&plain_ref).await.expect_err("plain");
    assert!(matches!(err, ContentError::NotAnArtifact { .. }), "{err}");

    // containerd 2.1's CRI pulls an image of media types it does not know (without unpacking
    // anything); the shim then names the image and what it found.
    let neither_ref = neither
        .push_http(&setup.registry.host(), "spore/neither", "1")
        .expect("push");
    let mut cri = CriClient::for_containerd(&setup.containerd)
        .await
        .expect("CRI");
    cri.pull_image(&neither_ref)
        .await
        .expect("CRI pulls an image of unknown media types");
    let err = store.image_kind(&neither_ref).await.expect_err("neither");
    let text = err.to_string();
    assert!(
        matches!(err, ContentError::NeitherWasmNorImage { .. }),
        "{text}"
    );
    assert!(text.contains(&neither_ref), "{text}");
    assert!(
        text.contains("application/vnd.example.config.v1+json"),
        "{text}"
    );
    assert!(text.contains("application/vnd.example.data.v1"), "{text}");

    let err = store
        .image_kind("example.com/missing:1")
        .await
        .expect_err("missing");
    assert!(matches!(err, ContentError::ImageNotFound { .. }), "{err}");
    assert!(err.to_string().contains("example.com/missing:1"), "{err}");
}

/// containerd's CRI names the image in the container's OCI spec; the name resolves in the
/// content store. A runc pod is enough to see it (CreateContainer, no start).
async fn cri_names_the_image(version: ContainerdVersion) {
    let setup = start(version, true);
    let busybox = image::busybox()
        .expect("busybox-static")
        .build()
        .expect("busybox");
    let reference = pulled(&setup, &busybox, "spore/busybox").await;
    let mut cri = CriClient::for_containerd(&setup.containerd)
        .await
        .expect("CRI");
    let pod = cri
        .run_pod_sandbox("annotations", "default", "runc")
        .await
        .expect("pod");
    let container = cri
        .create_container(&pod, &ContainerSpec::new("c", &reference).command(["true"]))
        .await
        .expect("CreateContainer");

    let channel = containerd_client::connect(setup.containerd.socket())
        .await
        .expect("connect");
    let mut request = Request::new(GetContainerRequest {
        id: container.id.clone(),
    });
    request.metadata_mut().insert(
        "containerd-namespace",
        CRI_NAMESPACE.parse().expect("ascii"),
    );
    let record = ContainersClient::new(channel)
        .get(request)
        .await
        .expect("Containers.Get")
        .into_inner()
        .container
        .expect("container");
    let spec: serde_json::Value =
        serde_json::from_slice(&record.spec.expect("spec").value).expect("OCI spec JSON");
    let annotations: HashMap<String, String> =
        serde_json::from_value(spec["annotations"].clone()).expect("annotations");
    let named = content::image_name(&annotations).expect("image annotation");
    assert_eq!(annotations.get(IMAGE_NAME_ANNOTATION), Some(&reference));
    let store = store(&setup).await;
    assert_eq!(
        store.image_kind(named).await.expect("resolves"),
        ImageKind::Plain
    );
    cri.remove_container(&container.id).await.expect("remove");
    cri.teardown_pod(&pod).await.expect("teardown");
}

#[tokio::test]
async fn containerd_2_names_the_image_in_the_cri_annotation() {
    cri_names_the_image(ContainerdVersion::V2).await;
}

#[tokio::test]
async fn containerd_1_7_names_the_image_in_the_cri_annotation() {
    cri_names_the_image(ContainerdVersion::V1_7).await;
}

#[test]
fn containerd_versions_map_to_artifact_support() {
    let err = check_artifact_support("1.6.20").expect_err("1.6.20 cannot pull artifacts");
    let text = err.to_string();
    assert!(
        text.contains("containerd 1.6.20 cannot pull OCI Wasm artifacts"),
        "{text}"
    );
    assert!(text.contains("1.7.7 or later"), "{text}");
    for ok in ["1.7.24~ds1", "v1.7.24", "2.1.9+unknown", "v2.1.4"] {
        assert!(check_artifact_support(ok).is_ok(), "{ok}");
    }
}
