//! `spore push` and `spore inspect` against a real registry (Debian's docker-registry on a
//! loopback port), checked with plain HTTP reads of what the registry stores.

mod common;

use common::*;
use spore_e2e::registry::Registry;

/// Pushes and returns the printed `REF@DIGEST` line.
fn push(workspace: &Workspace, file: &std::path::Path, reference: &str, extra: &[&str]) -> String {
    let file = file.to_str().expect("utf-8 path");
    let mut args = vec!["push", file, reference, "--insecure"];
    args.extend_from_slice(extra);
    succeeded(&workspace.spore(&args)).trim().to_string()
}

#[test]
fn a_pushed_component_is_an_oci_wasm_artifact_with_its_world_in_the_config() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let component = wasm(CLI_COMPONENT_WAT);
    let file = workspace.write("hello.wasm", &component);
    let reference = format!("{}/apps/hello:v1", registry.host());

    let pinned = push(
        &workspace,
        &file,
        &reference,
        &[
            "--annotation",
            "org.opencontainers.image.source=https://example.com/hello",
        ],
    );
    let (printed_ref, printed_digest) = pinned.split_once('@').expect("REF@DIGEST");
    assert_eq!(printed_ref, reference);

    // The manifest as any client sees it.
    let manifest = http_get(
        registry.addr(),
        "/v2/apps/hello/manifests/v1",
        "application/vnd.oci.image.manifest.v1+json",
    );
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("Content-Type"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(sha256(&manifest.body), printed_digest);
    assert_eq!(
        manifest.header("Docker-Content-Digest"),
        Some(printed_digest)
    );
    let m = manifest.json();
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["artifactType"], "application/vnd.wasm.config.v0+json");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.wasm.config.v0+json"
    );
    assert_eq!(m["layers"].as_array().map(Vec::len), Some(1));
    assert_eq!(m["layers"][0]["mediaType"], "application/wasm");
    assert_eq!(m["layers"][0]["digest"], sha256(&component));
    assert_eq!(m["layers"][0]["size"], component.len());
    assert_eq!(
        m["layers"][0]["annotations"]["org.opencontainers.image.title"],
        "hello.wasm"
    );
    assert_eq!(
        m["annotations"]["org.opencontainers.image.source"],
        "https://example.com/hello"
    );

    // The config blob.
    let config_digest = m["config"]["digest"].as_str().expect("config digest");
    let config = http_get(
        registry.addr(),
        &format!("/v2/apps/hello/blobs/{config_digest}"),
        "*/*",
    );
    assert_eq!(config.status, 200);
    assert_eq!(sha256(&config.body), config_digest);
    let c = config.json();
    assert_eq!(c["architecture"], "wasm");
    assert_eq!(c["os"], "wasip2");
    assert!(
        c["created"].as_str().is_some_and(|s| s.contains('T')),
        "{c}"
    );
    assert_eq!(c["layerDigests"], serde_json::json!([sha256(&component)]));
    assert_eq!(
        c["component"],
        serde_json::json!({
            "exports": ["wasi:cli/run@0.2.3"],
            "imports": ["wasi:cli/stdout@0.2.3", "wasi:cli/environment@0.2.3"],
            "target": "wasi:cli/command@0.2.3"
        })
    );

    // The layer is the file, byte for byte.
    let layer = http_get(
        registry.addr(),
        &format!("/v2/apps/hello/blobs/{}", sha256(&component)),
        "*/*",
    );
    assert_eq!(layer.body, component);

    // inspect reads it back, by tag and by digest.
    let text = succeeded(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(text.contains("application/wasm"), "{text}");
    assert!(
        text.contains("application/vnd.wasm.config.v0+json"),
        "{text}"
    );
    assert!(text.contains(printed_digest), "{text}");
    assert!(
        text.contains("OCI Wasm artifact (component, wasip2)"),
        "{text}"
    );
    assert!(text.contains("wasi:cli/run@0.2.3"), "{text}");
    assert!(text.contains("wasi:cli/environment@0.2.3"), "{text}");
    assert!(
        text.contains("Spore runs it: a command component"),
        "{text}"
    );

    let json = succeeded(&workspace.spore(&["inspect", &pinned, "--insecure", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON report");
    assert_eq!(report["digest"], printed_digest);
    assert_eq!(report["verdict"]["runs_as_wasm"], true);
    assert_eq!(report["verdict"]["runs_as"], "wasm-artifact");
    assert_eq!(report["content"]["kind"], "wasm-artifact");
    assert_eq!(report["content"]["binary"]["kind"], "component");
    assert_eq!(
        report["content"]["binary"]["exports"],
        serde_json::json!(["wasi:cli/run@0.2.3"])
    );
    assert_eq!(report["layers"][0]["size"], component.len());
}

#[test]
fn a_preview1_module_is_pushed_as_wasip1_and_runs_as_a_command() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let module = wasm(PREVIEW1_MODULE_WAT);
    let file = workspace.write("exit3.wasm", &module);
    let reference = format!("{}/exit3:latest", registry.host());

    let output = workspace.spore(&[
        "push",
        file.to_str().expect("utf-8"),
        &reference,
        "--insecure",
        "--author",
        "dev@example.com",
        "--json",
    ]);
    let outcome: serde_json::Value = serde_json::from_str(&succeeded(&output)).expect("JSON");
    assert_eq!(outcome["reference"], reference);
    assert_eq!(outcome["world"]["kind"], "core-module");
    assert_eq!(outcome["entry"]["kind"], "preview1-command");

    let m = http_get(
        registry.addr(),
        "/v2/exit3/manifests/latest",
        "application/vnd.oci.image.manifest.v1+json",
    )
    .json();
    let config_digest = m["config"]["digest"].as_str().expect("digest");
    let c = http_get(
        registry.addr(),
        &format!("/v2/exit3/blobs/{config_digest}"),
        "*/*",
    )
    .json();
    assert_eq!(c["os"], "wasip1");
    assert_eq!(c["architecture"], "wasm");
    assert_eq!(c["author"], "dev@example.com");
    assert!(c.get("component").is_none(), "{c}");

    let text = succeeded(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(
        text.contains("OCI Wasm artifact (core module, wasip1)"),
        "{text}"
    );
    assert!(text.contains("wasi_snapshot_preview1::proc_exit"), "{text}");
    assert!(
        text.contains("Spore runs it: a WASI preview1 module (exports _start)"),
        "{text}"
    );
}

#[test]
fn a_component_spore_cannot_run_is_pushed_with_a_warning_and_inspect_says_why() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let library = wasm(
        r#"(component
             (core module $m (func (export "f")))
             (core instance $i (instantiate $m))
             (func $f (canon lift (core func $i "f")))
             (instance $inst (export "greet" (func $f)))
             (export "example:lib/greeter@1.0.0" (instance $inst)))"#,
    );
    let file = workspace.write("lib.wasm", &library);
    let reference = format!("{}/lib:1", registry.host());
    let output = workspace.spore(&[
        "push",
        file.to_str().expect("utf-8"),
        &reference,
        "--insecure",
    ]);
    succeeded(&output);
    assert!(
        stderr(&output).contains("Spore cannot run it"),
        "{}",
        stderr(&output)
    );

    let json = succeeded(&workspace.spore(&["inspect", &reference, "--insecure", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(report["verdict"]["runs_as_wasm"], false);
    assert_eq!(report["verdict"]["runs_as"], serde_json::Value::Null);
    let reason = report["verdict"]["reason"].as_str().expect("reason");
    assert!(reason.contains("example:lib/greeter@1.0.0"), "{reason}");
}

fn image_config(entrypoint: &[&str], cmd: &[&str], diff_id: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Entrypoint": entrypoint, "Cmd": cmd },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] }
    }))
    .expect("config JSON")
}

#[test]
fn an_ordinary_image_shows_its_layers_and_entrypoint() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();

    // A native image: its entrypoint is a shell script.
    let layer = tar(&[("bin/hello", b"#!/bin/sh\necho hello\n", 0o755)]);
    let reference = format!("{}/native:1", registry.host());
    push_raw(
        &reference,
        "application/vnd.oci.image.config.v1+json",
        image_config(&["/bin/hello"], &["--loud"], &sha256(&layer)),
        vec![("application/vnd.oci.image.layer.v1.tar", layer.clone())],
    );
    let text = succeeded(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(text.contains("container image (linux/amd64)"), "{text}");
    assert!(
        text.contains("application/vnd.oci.image.layer.v1.tar"),
        "{text}"
    );
    assert!(text.contains(&sha256(&layer)), "{text}");
    assert!(text.contains(r#"Entrypoint: ["/bin/hello"]"#), "{text}");
    assert!(
        text.contains("runs this image as an ordinary Linux container through runc"),
        "{text}"
    );
    let json = succeeded(&workspace.spore(&["inspect", &reference, "--insecure", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(report["content"]["kind"], "container-image");
    assert_eq!(
        report["content"]["entrypoint"],
        serde_json::json!(["/bin/hello"])
    );
    assert_eq!(report["verdict"]["runs_as"], "native-container");

    // A plain Wasm image: a .wasm in the rootfs, named by the entrypoint.
    let component = wasm(CLI_COMPONENT_WAT);
    let layer = tar(&[("app.wasm", &component, 0o644)]);
    let reference = format!("{}/plain-wasm:1", registry.host());
    push_raw(
        &reference,
        "application/vnd.oci.image.config.v1+json",
        image_config(&["/app.wasm"], &[], &sha256(&layer)),
        vec![("application/vnd.oci.image.layer.v1.tar", layer)],
    );
    let json = succeeded(&workspace.spore(&["inspect", &reference, "--insecure", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(report["verdict"]["runs_as"], "wasm-in-rootfs");
    assert_eq!(report["verdict"]["runs_as_wasm"], true);
    let reason = report["verdict"]["reason"].as_str().expect("reason");
    assert!(reason.contains("/app.wasm"), "{reason}");
}

#[test]
fn something_else_gets_a_verdict_naming_its_media_types() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let reference = format!("{}/chart:1", registry.host());
    push_raw(
        &reference,
        "application/vnd.cncf.helm.config.v1+json",
        br#"{"name":"chart","version":"1.0.0"}"#.to_vec(),
        vec![(
            "application/vnd.cncf.helm.chart.content.v1.tar+gzip",
            b"not really a chart".to_vec(),
        )],
    );
    let text = succeeded(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(
        text.contains("neither a Wasm artifact nor a container image"),
        "{text}"
    );
    assert!(
        text.contains("application/vnd.cncf.helm.config.v1+json"),
        "{text}"
    );
    assert!(
        text.contains("application/vnd.cncf.helm.chart.content.v1.tar+gzip"),
        "{text}"
    );
}

#[test]
fn a_precompiled_blob_inside_an_artifact_is_refused_by_inspect() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.resize(256, 0);
    let reference = format!("{}/precompiled:1", registry.host());
    push_raw(
        &reference,
        "application/vnd.wasm.config.v0+json",
        br#"{"created":"2026-01-01T00:00:00Z","architecture":"wasm","os":"wasip2","layerDigests":[]}"#
            .to_vec(),
        vec![("application/wasm", elf)],
    );
    let json = succeeded(&workspace.spore(&["inspect", &reference, "--insecure", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(report["verdict"]["runs_as_wasm"], false);
    let reason = report["verdict"]["reason"].as_str().expect("reason");
    assert!(reason.contains("precompiled"), "{reason}");
}

#[test]
fn an_index_lists_its_platforms_and_inspect_picks_the_wasm_one() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let file = workspace.write("hello.wasm", &wasm(CLI_COMPONENT_WAT));
    let wasm_ref = format!("{}/multi:wasm", registry.host());
    let pinned = push(&workspace, &file, &wasm_ref, &[]);
    let (_, wasm_digest) = pinned.split_once('@').expect("REF@DIGEST");

    let layer = tar(&[("bin/hello", b"#!/bin/sh\n", 0o755)]);
    push_raw(
        &format!("{}/multi:native", registry.host()),
        "application/vnd.oci.image.config.v1+json",
        image_config(&["/bin/hello"], &[], &sha256(&layer)),
        vec![("application/vnd.oci.image.layer.v1.tar", layer)],
    );
    let manifest_of = |tag: &str| {
        http_get(
            registry.addr(),
            &format!("/v2/multi/manifests/{tag}"),
            "application/vnd.oci.image.manifest.v1+json",
        )
        .body
    };
    let (native, wasm_manifest) = (manifest_of("native"), manifest_of("wasm"));
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&native),
              "size": native.len(), "platform": { "architecture": "amd64", "os": "linux" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(&wasm_manifest),
              "size": wasm_manifest.len(), "platform": { "architecture": "wasm", "os": "wasip2" } }
        ]
    });
    let index_ref = format!("{}/multi:1", registry.host());
    let client = spore_cli::registry::new_client(true).expect("client");
    block_on(
        client.push_manifest_raw(
            &index_ref.parse().expect("reference"),
            serde_json::to_vec(&index).expect("index JSON"),
            "application/vnd.oci.image.index.v1+json"
                .parse()
                .expect("header value"),
        ),
    )
    .expect("push index");

    let json = succeeded(&workspace.spore(&["inspect", &index_ref, "--insecure", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(
        report["index"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    assert_eq!(report["index"][1]["platform"], "wasip2/wasm");
    assert_eq!(report["digest"], wasm_digest);
    assert_eq!(report["content"]["kind"], "wasm-artifact");
    assert_eq!(report["verdict"]["runs_as_wasm"], true);
    let text = succeeded(&workspace.spore(&["inspect", &index_ref, "--insecure"]));
    assert!(text.contains("Index:"), "{text}");
    assert!(text.contains("linux/amd64"), "{text}");
}
