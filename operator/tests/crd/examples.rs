//! Every WasmApp manifest under `examples/apps` and in the docs validates against the generated
//! schema and its CEL rules, and turns into objects (or, for the deliberately bad one, into the
//! error it is meant to show).

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use serde_json::Value;
use spore_operator::crd::WasmApp;
use spore_operator::desired::{SpecError, desired};
use spore_operator::references::ReferencedObjects;

use crate::support::{cel_errors, documents, repo_root, schema, schema_errors};

fn example_files() -> Vec<PathBuf> {
    let dir = repo_root().join("examples/apps");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    files
}

/// The ```yaml blocks of a Markdown file.
fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```yaml") => current = Some(String::new()),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn wasm_apps(docs: &[Value]) -> Vec<&Value> {
    docs.iter().filter(|d| d["kind"] == "WasmApp").collect()
}

fn assert_valid(origin: &str, app: &Value) {
    let schema = schema();
    let errors = schema_errors(&schema, app);
    assert!(errors.is_empty(), "{origin}: schema errors: {errors:#?}");
    let errors = cel_errors(&schema, app);
    assert!(
        errors.is_empty(),
        "{origin}: CEL rule failures: {errors:#?}"
    );
}

/// The Secrets and ConfigMaps shipped in the same file.
fn referenced(docs: &[Value]) -> ReferencedObjects {
    let mut found = ReferencedObjects::default();
    for doc in docs {
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        match doc["kind"].as_str() {
            Some("Secret") => {
                let secret: Secret = serde_json::from_value(doc.clone()).expect("Secret");
                found.secrets.insert(name, secret);
            }
            Some("ConfigMap") => {
                let cm: ConfigMap = serde_json::from_value(doc.clone()).expect("ConfigMap");
                found.config_maps.insert(name, cm);
            }
            _ => {}
        }
    }
    found
}

fn parse_app(value: &Value) -> WasmApp {
    let mut app: WasmApp = serde_json::from_value(value.clone()).expect("WasmApp deserializes");
    app.metadata
        .namespace
        .get_or_insert_with(|| "default".into());
    app
}

#[test]
fn example_manifests_validate_and_reconcile() {
    let files = example_files();
    let mut apps = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(file).expect("read example");
        let docs = documents(&text);
        let in_file = wasm_apps(&docs);
        assert!(!in_file.is_empty(), "{name} holds no WasmApp");
        let found = referenced(&docs);
        for value in in_file {
            assert_valid(&name, value);
            let app = parse_app(value);
            let outcome = desired(&app, &found);
            if name.starts_with("bad-") {
                assert!(
                    matches!(outcome, Err(SpecError::MissingReference(_))),
                    "{name} should fail with a missing reference, got {outcome:?}"
                );
            } else {
                let objects = outcome.unwrap_or_else(|e| panic!("{name}: {e}"));
                assert_eq!(objects.deployment.metadata.name, app.metadata.name);
            }
            apps.push(app);
        }
    }
    // the three kinds of app the docs promise, and the broken one
    assert!(apps.iter().any(|a| a.spec.http.is_none()), "no command app");
    assert!(
        apps.iter()
            .any(|a| a.spec.http.is_some() && a.spec.autoscaling.is_some()),
        "no autoscaled HTTP app"
    );
    assert!(
        apps.iter().any(|a| !a.spec.sidecars.is_empty()
            && a.spec.volumes.iter().any(|v| v.config_map.is_some())),
        "no app with a sidecar and a ConfigMap volume"
    );
    assert!(
        files.iter().any(|f| f
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("bad-"))),
        "no deliberately bad app"
    );
    // a WasmApp per example language, each naming an example that is in examples/
    for (language, suffix) in [("js", "-js"), ("python", "-python")] {
        let examples: Vec<String> = apps
            .iter()
            .filter_map(|a| {
                let name = a.spec.image.rsplit('/').next()?.split(':').next()?;
                name.strip_suffix(suffix).map(str::to_string)
            })
            .collect();
        assert!(!examples.is_empty(), "no WasmApp runs a {language} example");
        for example in examples {
            let dir = repo_root().join("examples").join(language).join(&example);
            assert!(dir.is_dir(), "{} is missing", dir.display());
        }
    }
}

#[test]
fn wasm_apps_in_the_docs_validate() {
    let mut checked = 0;
    for doc in ["docs/operator.md", "README.md"] {
        let path = repo_root().join(doc);
        // the README is optional while the project is young; the operator guide is not
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(_) if doc == "README.md" => continue,
            Err(e) => panic!("read {}: {e}", path.display()),
        };
        for block in yaml_blocks(&text) {
            let docs = documents(&block);
            for value in wasm_apps(&docs) {
                assert_valid(doc, value);
                parse_app(value);
                checked += 1;
            }
        }
    }
    assert!(checked > 0, "docs/operator.md shows no WasmApp manifest");
}

#[test]
fn schema_rejects_wrong_types() {
    let schema = schema();
    let app = serde_json::json!({
        "apiVersion": "spore.dev/v1alpha1", "kind": "WasmApp", "metadata": {"name": "x"},
        "spec": {"image": "hello:1", "replicas": "three", "http": {"serviceType": "Ingress"}}
    });
    let errors = schema_errors(&schema, &app);
    assert!(
        errors.iter().any(|e| e.contains("/spec/replicas")),
        "{errors:#?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("/spec/http/serviceType")),
        "{errors:#?}"
    );
    let no_image = serde_json::json!({
        "apiVersion": "spore.dev/v1alpha1", "kind": "WasmApp", "metadata": {"name": "x"},
        "spec": {}
    });
    let errors = schema_errors(&schema, &no_image);
    assert!(errors.iter().any(|e| e.contains("image")), "{errors:#?}");
}
