//! A corpus of malformed Wasm run through CRI as a kubelet would (CreateContainer, then
//! StartContainer, where containerd creates the task): each ends in one clear sentence naming
//! the file, in the StartContainer error, the container's status message and the kubelet's
//! termination file (within 4 KiB); the pod's shim survives every one (same process
//! throughout) and a good container runs in the same pod afterwards.

mod cri_common;

use std::time::Duration;

use cri_common::{CriFixture, HELLO_GREETING, shim_of, wasm_guests_image};
use spore_e2e::{ContainerSpec, ContainerdVersion};

const EXIT: Duration = Duration::from_secs(30);

/// A core module's bytes, from the text format.
fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("valid WAT")
}

/// `(name, bytes, what the message must say after the file's path)`.
fn corpus() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let hello = cri_common::guest("hello");
    let mut huge_section = b"\0asm\x01\0\0\0".to_vec();
    // A type section that claims 4 GiB.
    huge_section.extend([0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    let mut bad_component = b"\0asm\x0d\0\x01\0".to_vec();
    bad_component.extend([0x07, 0x05, 0xde, 0xad, 0xbe, 0xef, 0x00]);
    let unknown: Vec<String> = (0..100)
        .map(|i| format!("acme:unknown{i}/api@1.0.0"))
        .collect();
    let many_unknown = cri_common::importing_component(&unknown);
    vec![
        ("empty", Vec::new(), "is not a Wasm module"),
        (
            "magic-only",
            b"\0asm".to_vec(),
            "the file ends inside its 8-byte header",
        ),
        (
            "truncated",
            hello[..hello.len() / 3].to_vec(),
            "is not a valid Wasm component",
        ),
        (
            "wrong-version",
            b"\0asm\x02\0\0\0".to_vec(),
            "has an unknown Wasm binary version",
        ),
        ("huge-section", huge_section, "is not a valid Wasm module"),
        (
            "bad-component",
            bad_component,
            "is not a valid Wasm component",
        ),
        (
            "no-start",
            wat("(module (func (export \"main\")))"),
            "cannot run on Spore",
        ),
        (
            "unknown-core-import",
            wat("(module (import \"acme\" \"thing\" (func)) (func (export \"_start\")))"),
            "acme",
        ),
        (
            "many-unknown",
            many_unknown,
            "acme:unknown0/api@1.0.0, acme:unknown1/api@1.0.0",
        ),
    ]
}

#[tokio::test]
async fn every_malformed_module_is_a_clear_error_and_the_shim_survives() {
    let corpus = corpus();
    let mut image = wasm_guests_image();
    for (name, bytes, _) in &corpus {
        image = image.file(&format!("/corpus/{name}.wasm"), bytes.clone());
    }
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let image = image
        .build()
        .expect("corpus image builds")
        .push_http(&f.registry.host(), "spore/corpus", "1")
        .expect("push");
    f.cri.pull_image(&image).await.expect("PullImage");
    let pod = f.run_spore_pod("corpus").await;
    let shim = shim_of(&f.containerd, &pod.id);

    for (name, _, expected) in &corpus {
        let path = format!("/corpus/{name}.wasm");
        let spec = ContainerSpec::new(name, &image).command([path.as_str()]);
        let container = f.cri.create_container(&pod, &spec).await.expect("create");
        let err = f
            .cri
            .start_container(&container.id)
            .await
            .expect_err("a malformed module does not start")
            .to_string();
        assert!(err.contains(&path), "{name}: {err}");
        assert!(err.contains(expected), "{name}: {err}");
        let status = f.cri.container_status(&container.id).await.expect("status");
        assert_eq!(status.reason, "StartError", "{name}: {status:?}");
        assert!(status.message.contains(expected), "{name}: {status:?}");
        let written = cri_common::termination_message(&container);
        assert!(written.contains(expected), "{name}: {written:?}");
        assert!(written.len() <= 4096, "{name}: {} bytes", written.len());
        eprintln!("{name}: {}", status.message);
        assert_eq!(
            shim_of(&f.containerd, &pod.id),
            shim,
            "the shim survived {name}"
        );
        f.cri.remove_container(&container.id).await.expect("remove");
    }

    // The same pod still runs a good guest, served by the same shim.
    let hello = ContainerSpec::new("hello", &image).command(["/hello.wasm"]);
    let hello = f.cri.run_container(&pod, &hello).await.expect("hello");
    let status = f.cri.wait_for_exit(&hello.id, EXIT).await.expect("exit");
    assert_eq!(status.exit_code, 0, "{status:?}");
    let log = std::fs::read_to_string(pod.container_log_path("hello", 0)).unwrap_or_default();
    assert!(log.contains(HELLO_GREETING), "{log}");
    assert_eq!(shim_of(&f.containerd, &pod.id), shim);
    f.cri.teardown_pod(&pod).await.expect("teardown");
}
