//! Termination messages through CRI, in the file the kubelet reads (the harness mounts one at
//! each container's `terminationMessagePath`, as the kubelet does): every abnormal end writes a
//! short message there, at most 4 KiB; a normal exit writes nothing; a Create or Start failure
//! is also the container's status message, in the same words.

mod cri_common;

use std::time::Duration;

use cri_common::{CriFixture, guest};
use spore_e2e::image::ImageBuilder;
use spore_e2e::{ContainerSpec, ContainerdVersion};

const EXIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn every_abnormal_end_leaves_a_termination_message_and_a_normal_exit_none() {
    let mut f = CriFixture::start(ContainerdVersion::V2, false).await;
    let many: Vec<String> = (0..300)
        .map(|i| format!("acme:thing{i}/api@1.0.0"))
        .collect();
    let image = ImageBuilder::new()
        .file("/hello.wasm", guest("hello"))
        .file("/trap.wasm", guest("trap"))
        .file("/membomb.wasm", guest("membomb"))
        .file("/sleeper.wasm", guest("sleeper"))
        .file(
            "/exit3.wasm",
            spore_e2e::tools::guest_wasm("wasm32-wasip1", "exit3").expect("exit3"),
        )
        .file(
            "/library.wasm",
            wat::parse_str(r#"(module (func (export "add")) (memory (export "memory") 1))"#)
                .expect("wat"),
        )
        .file(
            "/keyvalue.wasm",
            cri_common::importing_component(&["wasi:keyvalue/store@0.2.0-draft".into()]),
        )
        .file("/many.wasm", cri_common::importing_component(&many))
        .entrypoint(["/hello.wasm"]);
    let image = cri_common::push_and_pull(&mut f, image, "spore/ends").await;
    let pod = f.run_spore_pod("ends").await;

    // Ends of a running guest: the message is in the file when the container has exited.
    let ended = [
        ("hello", vec!["/hello.wasm"], None, 0, None),
        (
            "trap",
            vec!["/trap.wasm"],
            None,
            134,
            Some("guest trapped: wasm `unreachable` instruction executed\n  at "),
        ),
        (
            "membomb",
            vec!["/membomb.wasm"],
            Some(32 << 20),
            134,
            Some(
                "guest trapped: memory limit exceeded: the container's memory limit is 33554432 bytes",
            ),
        ),
        (
            "exit3",
            vec!["/exit3.wasm"],
            None,
            3,
            Some("the guest exited with code 3"),
        ),
    ];
    for (name, command, limit, code, expected) in ended {
        let mut spec = ContainerSpec::new(name, &image).command(command);
        if let Some(limit) = limit {
            spec = spec.memory_limit(limit);
        }
        let container = f.cri.run_container(&pod, &spec).await.expect("run");
        let status = f
            .cri
            .wait_for_exit(&container.id, EXIT)
            .await
            .expect("exit");
        assert_eq!(status.exit_code, code, "{name}: {status:?}");
        let written = cri_common::termination_message(&container);
        if name == "trap" {
            // The guest keeps its name section: the frames name its functions.
            assert!(written.contains("at trap::main"), "{written}");
        }
        match expected {
            None => assert!(
                written.is_empty(),
                "{name}: a normal exit writes nothing: {written:?}"
            ),
            Some(expected) => assert!(written.starts_with(expected), "{name}: {written:?}"),
        }
    }

    // A kill: the kubelet's StopContainer (SIGTERM).
    let spec = ContainerSpec::new("sleeper", &image).command(["/sleeper.wasm"]);
    let sleeper = f.cri.run_container(&pod, &spec).await.expect("run");
    cri_common::wait_running(&mut f.cri, &sleeper.id, EXIT).await;
    f.cri.stop_container(&sleeper.id, 10).await.expect("stop");
    let status = f.cri.wait_for_exit(&sleeper.id, EXIT).await.expect("exit");
    assert_eq!(status.exit_code, 143);
    assert_eq!(
        cri_common::termination_message(&sleeper),
        "killed by signal 15"
    );

    // Failures at Start (where CRI creates the task): the status message and the file agree.
    let failures = [
        (
            "library",
            "/library.wasm",
            "/library.wasm cannot run on Spore: it exports [add, memory]",
        ),
        (
            "keyvalue",
            "/keyvalue.wasm",
            "/keyvalue.wasm cannot run on Spore: it imports wasi:keyvalue/store@0.2.0-draft, which Spore does not provide",
        ),
    ];
    for (name, entrypoint, expected) in failures {
        let spec = ContainerSpec::new(name, &image).command([entrypoint]);
        let container = f.cri.create_container(&pod, &spec).await.expect("create");
        let err = f
            .cri
            .start_container(&container.id)
            .await
            .expect_err("it cannot start");
        assert!(err.to_string().contains(expected), "{name}: {err}");
        let status = f.cri.container_status(&container.id).await.expect("status");
        assert!(status.message.contains(expected), "{name}: {status:?}");
        assert!(
            cri_common::termination_message(&container).starts_with(expected),
            "{name}: {:?}",
            cri_common::termination_message(&container)
        );
    }

    // 300 missing interfaces: the message names them and stays within the kubelet's 4 KiB.
    let spec = ContainerSpec::new("many", &image).command(["/many.wasm"]);
    let many = f.cri.create_container(&pod, &spec).await.expect("create");
    f.cri
        .start_container(&many.id)
        .await
        .expect_err("it cannot start");
    let written = cri_common::termination_message(&many);
    assert!(written.len() <= 4096, "{} bytes", written.len());
    assert!(
        written.contains("acme:thing0/api@1.0.0, acme:thing1/api@1.0.0"),
        "{written}"
    );
    f.cri.teardown_pod(&pod).await.expect("teardown");
}
