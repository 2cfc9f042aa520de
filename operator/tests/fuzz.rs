//! Fuzz target (proptest mutation fuzzing, `spore_e2e::fuzz`) for the WasmApp specs users
//! write: whatever deserializes is validated, and a spec that validates turns into the objects
//! to apply, without a panic. Seeds: the WasmApps of `examples/apps/` as JSON, in
//! `tests/corpus/wasmapp/`.

use std::path::Path;

use proptest::prelude::*;
use spore_e2e::fuzz;
use spore_operator::crd::WasmApp;
use spore_operator::desired::{desired, validate_spec};
use spore_operator::image_ref::validate_image_reference;
use spore_operator::references::ReferencedObjects;

fn corpus() -> Vec<Vec<u8>> {
    fuzz::seeds(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/wasmapp"))
}

proptest! {
    #![proptest_config(fuzz::config())]

    #[test]
    fn fuzz_wasmapp_spec(bytes in fuzz::inputs(corpus())) {
        if let Ok(app) = serde_json::from_slice::<WasmApp>(&bytes) {
            match validate_spec(&app) {
                Ok(()) => {
                    if let Err(err) = desired(&app, &ReferencedObjects::default()) {
                        prop_assert!(!err.to_string().is_empty());
                    }
                }
                Err(err) => prop_assert!(!err.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn fuzz_image_reference(text in fuzz::text_inputs(vec![
        b"registry.example.com/spore/hello-http:0.1.0".to_vec(),
        b"localhost:5000/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef".to_vec(),
        b"ghcr.io/org/app".to_vec(),
    ])) {
        if let Err(err) = validate_image_reference(&text) {
            prop_assert!(!err.to_string().is_empty());
        }
    }
}
