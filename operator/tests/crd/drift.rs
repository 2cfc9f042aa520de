//! `crds/wasmapp.yaml` must be exactly what `spore-operator crd` prints.

use crate::support::crd_file;

const REGENERATE: &str = "crds/wasmapp.yaml is out of date with the Rust types in operator/src/crd.rs.\n\
Regenerate it with:\n    cargo run -p spore-operator -- crd > crds/wasmapp.yaml";

#[test]
fn crd_file_matches_the_generator() {
    let generated = spore_operator::crd::crd_yaml().expect("CRD renders as YAML");
    let on_disk = crd_file();
    if generated != on_disk {
        let line = generated
            .lines()
            .zip(on_disk.lines())
            .position(|(a, b)| a != b)
            .map(|i| i + 1)
            .unwrap_or_else(|| generated.lines().count().min(on_disk.lines().count()) + 1);
        panic!("{REGENERATE}\n(first difference at line {line})");
    }
}

#[test]
fn crd_subcommand_prints_the_same_bytes() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_spore-operator"))
        .arg("crd")
        .output()
        .expect("run spore-operator crd");
    assert!(
        output.status.success(),
        "spore-operator crd failed: {output:?}"
    );
    let printed = String::from_utf8(output.stdout).expect("utf-8");
    assert!(printed == crd_file(), "{REGENERATE}");
}
