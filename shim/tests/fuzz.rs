//! Fuzz targets (proptest mutation fuzzing, `spore_e2e::fuzz`) for what the shim parses from
//! outside: the OCI runtime spec containerd writes, OCI manifests, indexes and configs from
//! registries, the runtime options from containerd's config, and Wasm binaries from images.
//! Each must end in a value or a clear error, never a panic; seeds in `tests/corpus/`.

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use spore_e2e::fuzz;
use spore_shim::containerd::options::{RUNTIME_OPTIONS_TYPE, RuntimeOptions};
use spore_shim::spec::ContainerSpec;
use spore_shim::wasm::content::manifest;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    fuzz::seeds(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/corpus")
            .join(target),
    )
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn fuzz_oci_runtime_spec(bytes in fuzz::inputs(corpus("oci-spec"))) {
        if let Ok(spec) = serde_json::from_slice::<oci_spec::runtime::Spec>(&bytes) {
            let spec = ContainerSpec::from_spec(&spec, &PathBuf::from("/bundle"));
            let _ = spec.sandbox_id();
            let _ = spec.is_sandbox();
            let _ = spec.entrypoint_path();
            if let Some(path) = spec.cgroups_path.as_deref() {
                let _ = spore_shim::host::cgroup::pod_cgroup(path);
            }
        }
    }

    #[test]
    fn fuzz_oci_manifest_index_and_config(bytes in fuzz::inputs(corpus("oci-manifest"))) {
        let image = "registry.test/app:1";
        match manifest::parse_manifest(image, &bytes) {
            Ok(parsed) => {
                let _ = manifest::classify(image, "sha256:00", &parsed);
            }
            Err(err) => prop_assert!(err.to_string().contains(image), "{err}"),
        }
        if let Ok(index) = manifest::parse_index(image, &bytes)
            && let Err(err) = manifest::select_manifest(image, &index)
        {
            prop_assert!(!err.to_string().is_empty());
        }
        let _ = manifest::config_names_a_command(&bytes);
    }

    #[test]
    fn fuzz_runtime_options(bytes in fuzz::inputs(corpus("runtime-options"))) {
        let type_url = format!("type.googleapis.com/{RUNTIME_OPTIONS_TYPE}");
        // Field 2 names a file to read; the fuzzer must not make the test read the host's.
        if !bytes.contains(&0x12) {
            match RuntimeOptions::decode(&type_url, &bytes) {
                Ok(options) => {
                    let _ = options.runc_root("k8s.io");
                    let _ = options.cache_config();
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn fuzz_wasm_binary_kind(bytes in fuzz::inputs(vec![
        b"\0asm\x01\0\0\0".to_vec(),
        b"\0asm\x0d\0\x01\0".to_vec(),
        b"\x7fELF\x02\x01\x01".to_vec(),
    ])) {
        let _ = spore_format::binary_kind(&bytes);
    }
}

/// Compiling is slow, so this target runs a tenth of the cases: Wasm binaries from mutated
/// real modules, each compiled or refused with an error that names the file.
#[test]
fn fuzz_wasm_compile() {
    let engine = spore_shim::wasm::engine::new_engine().expect("engine");
    let seeds = vec![
        wat::parse_str("(module (func (export \"_start\")))").expect("wat"),
        wat::parse_str(
            "(module (import \"wasi_snapshot_preview1\" \"proc_exit\" (func (param i32)))
               (memory (export \"memory\") 1) (func (export \"_start\") i32.const 3 call 0))",
        )
        .expect("wat"),
        wat::parse_str("(component (core module (func (export \"f\"))))").expect("wat"),
    ];
    let mut config = fuzz::config();
    config.cases = (config.cases / 10).max(10);
    let path = PathBuf::from("/fuzz.wasm");
    proptest::test_runner::TestRunner::new(config)
        .run(&fuzz::inputs(seeds), |bytes| {
            if let Err(err) = spore_shim::wasm::compile::compile(&engine, &path, &bytes) {
                prop_assert!(err.to_string().contains("/fuzz.wasm"), "{err}");
            }
            Ok(())
        })
        .expect("no input panics or gives an error without the file's name");
}
