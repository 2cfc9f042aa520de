//! Helpers shared by the CRD tests.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// The repository root (the operator crate's parent).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("operator crate has a parent")
        .to_path_buf()
}

/// `crds/wasmapp.yaml` as text.
pub fn crd_file() -> String {
    let path = repo_root().join("crds/wasmapp.yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e}\nGenerate it with: cargo run -p spore-operator -- crd > crds/wasmapp.yaml",
            path.display()
        )
    })
}

/// The openAPIV3Schema of the only version in `crds/wasmapp.yaml`, as JSON.
pub fn schema() -> Value {
    let crd: Value = serde_yaml::from_str(&crd_file()).expect("crds/wasmapp.yaml parses");
    let schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone();
    assert!(
        schema.is_object(),
        "crds/wasmapp.yaml has no openAPIV3Schema"
    );
    schema
}

/// Every YAML document in `text`, as JSON.
pub fn documents(text: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|doc| {
            let value: serde_yaml::Value =
                serde::Deserialize::deserialize(doc).expect("YAML document parses");
            serde_json::to_value(value).expect("YAML converts to JSON")
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// JSON Schema errors of `object` against `schema`, as text.
pub fn schema_errors(schema: &Value, object: &Value) -> Vec<String> {
    let validator =
        jsonschema::validator_for(schema).expect("the CRD schema is a valid JSON Schema");
    validator
        .iter_errors(object)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// CEL errors of `object` against the `x-kubernetes-validations` rules of `schema`.
pub fn cel_errors(schema: &Value, object: &Value) -> Vec<String> {
    match kube::core::cel::Validator::new().validate(schema, object, None) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}
