//! The errors of `spore push` and `spore inspect`: each fails with exit code 1 and a message
//! that says what went wrong and where. Registries are real (docker-registry on loopback).

mod common;

use base64::Engine;
use common::*;
use spore_e2e::registry::{Registry, free_loopback_port};

#[test]
fn a_missing_file_is_named() {
    let workspace = Workspace::new();
    let path = missing(&workspace);
    let err = failed(&workspace.spore(&[
        "push",
        path.to_str().expect("utf-8"),
        "127.0.0.1:1/app:1",
        "--insecure",
    ]));
    assert!(
        err.contains(&format!("{}: no such file", path.display())),
        "{err}"
    );
}

#[test]
fn files_that_are_not_wasm_are_refused_before_any_network() {
    let workspace = Workspace::new();
    // Port 1 on loopback: if spore went to the network first, the error would differ.
    let reference = "127.0.0.1:1/app:1";

    let text = workspace.write("readme.wasm", b"# not wasm\n");
    let err = failed(&workspace.spore(&[
        "push",
        text.to_str().expect("utf-8"),
        reference,
        "--insecure",
    ]));
    assert!(err.contains("readme.wasm"), "{err}");
    assert!(err.contains("not WebAssembly"), "{err}");
    assert!(err.contains("23 20 6e 6f"), "{err}");

    let mut truncated = wasm(CLI_COMPONENT_WAT);
    truncated.truncate(truncated.len() - 10);
    let broken = workspace.write("broken.wasm", &truncated);
    let err = failed(&workspace.spore(&[
        "push",
        broken.to_str().expect("utf-8"),
        reference,
        "--insecure",
    ]));
    assert!(err.contains("not valid WebAssembly"), "{err}");

    let empty = workspace.write("empty.wasm", b"");
    let err = failed(&workspace.spore(&[
        "push",
        empty.to_str().expect("utf-8"),
        reference,
        "--insecure",
    ]));
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn a_precompiled_cwasm_like_elf_blob_is_refused_by_push() {
    let workspace = Workspace::new();
    let mut elf = b"\x7fELF\x02\x01\x01\0".to_vec();
    elf.resize(4096, 0);
    let blob = workspace.write("app.cwasm", &elf);
    let err = failed(&workspace.spore(&[
        "push",
        blob.to_str().expect("utf-8"),
        "127.0.0.1:1/app:1",
        "--insecure",
    ]));
    assert!(err.contains("app.cwasm"), "{err}");
    assert!(err.contains("precompiled native artifact"), "{err}");
}

#[test]
fn bad_references_and_annotations_are_named() {
    let workspace = Workspace::new();
    let file = workspace.write("app.wasm", &wasm(CLI_COMPONENT_WAT));
    let file = file.to_str().expect("utf-8");
    for reference in [
        "Registry.Example.com/UPPER:tag",
        "127.0.0.1:5000/app:bad tag",
        "",
    ] {
        let err = failed(&workspace.spore(&["push", file, reference, "--insecure"]));
        assert!(
            err.contains("invalid image reference"),
            "{reference}: {err}"
        );
        let err = failed(&workspace.spore(&["inspect", reference, "--insecure"]));
        assert!(
            err.contains("invalid image reference"),
            "{reference}: {err}"
        );
    }
    let err = failed(&workspace.spore(&[
        "push",
        file,
        "127.0.0.1:1/app:1",
        "--annotation",
        "no-equals-sign",
    ]));
    assert!(
        err.contains("invalid annotation \"no-equals-sign\""),
        "{err}"
    );
}

#[test]
fn an_unreachable_registry_is_named_with_its_address() {
    let workspace = Workspace::new();
    let file = workspace.write("app.wasm", &wasm(CLI_COMPONENT_WAT));
    let addr = free_loopback_port().expect("free port");
    let reference = format!("{addr}/app:1");

    let err = failed(&workspace.spore(&[
        "push",
        file.to_str().expect("utf-8"),
        &reference,
        "--insecure",
    ]));
    assert!(
        err.contains(&format!("cannot reach the registry at {addr}: ")),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");

    let err = failed(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(err.contains(&format!("at {addr}")), "{err}");
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
}

#[test]
fn https_to_a_plain_http_registry_suggests_insecure() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let err = failed(&workspace.spore(&["inspect", &format!("{}/app:1", registry.host())]));
    assert!(err.contains(&registry.host()), "{err}");
    assert!(err.contains("--insecure"), "{err}");
}

#[test]
fn an_unknown_tag_is_not_found() {
    let registry = Registry::start().expect("registry");
    let workspace = Workspace::new();
    let reference = format!("{}/nothing-here:1", registry.host());
    let err = failed(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(err.contains(&format!("{reference}: not found")), "{err}");
}

#[test]
fn auth_failures_name_the_registry_and_where_credentials_were_looked_for() {
    let registry = AuthRegistry::start("alice", "s3cret");
    let workspace = Workspace::new();
    let component = wasm(CLI_COMPONENT_WAT);
    let file = workspace.write("app.wasm", &component);
    let file = file.to_str().expect("utf-8");
    let reference = format!("{}/private/app:1", registry.host());
    let config_file = workspace.docker_config_file();

    // No docker config at all: anonymous, refused.
    let err = failed(&workspace.spore(&["push", file, &reference, "--insecure"]));
    assert!(
        err.contains(&format!(
            "the registry {} refused access (HTTP 401)",
            registry.host()
        )),
        "{err}\nregistry log: {}",
        registry.log()
    );
    assert!(err.contains(&config_file.display().to_string()), "{err}");
    assert!(err.contains("anonymously"), "{err}");

    // A wrong password in the config file.
    let encode = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    workspace.write_docker_config(&format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        registry.host(),
        encode("alice:wrong")
    ));
    let err = failed(&workspace.spore(&["push", file, &reference, "--insecure"]));
    assert!(err.contains("refused access (HTTP 401)"), "{err}");
    assert!(
        err.contains(&format!(
            "credentials for {} in {} were rejected",
            registry.host(),
            config_file.display()
        )),
        "{err}"
    );
    let err = failed(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(err.contains("were rejected"), "{err}");

    // The right password, keyed the way `docker login` writes it: the push and inspect work.
    workspace.write_docker_config(&format!(
        r#"{{"auths":{{"http://{}":{{"auth":"{}"}}}}}}"#,
        registry.host(),
        encode("alice:s3cret")
    ));
    let pinned = succeeded(&workspace.spore(&["push", file, &reference, "--insecure"]));
    assert!(
        pinned.trim().starts_with(&format!("{reference}@sha256:")),
        "{pinned}"
    );

    // username/password fields work too.
    workspace.write_docker_config(&format!(
        r#"{{"auths":{{"{}":{{"username":"alice","password":"s3cret"}}}}}}"#,
        registry.host()
    ));
    let text = succeeded(&workspace.spore(&["inspect", &reference, "--insecure"]));
    assert!(text.contains("Spore runs it"), "{text}");
    assert!(text.contains(&sha256(&component)), "{text}");

    // And the registry really demands them.
    let anonymous = http_get(registry.addr(), "/v2/private/app/manifests/1", "*/*");
    assert_eq!(anonymous.status, 401);
}
