//! Each CEL rule of the CRD parses, stays within the apiserver's cost budget, and gives the
//! right verdict on good and bad objects (kube-cel: the `cel` interpreter plus the Kubernetes
//! CEL libraries).

use kube::core::cel::{cel::Program, compile_schema, estimate_rule_cost};
use serde_json::{Value, json};

use crate::support::{cel_errors, schema};

/// (JSON path of the schema node, rule, message) for every `x-kubernetes-validations` entry.
fn rules(node: &Value, path: &str, out: &mut Vec<(String, String, String, Value)>) {
    if let Some(list) = node
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for rule in list {
            out.push((
                path.to_string(),
                rule["rule"].as_str().expect("rule text").to_string(),
                rule["message"].as_str().unwrap_or_default().to_string(),
                node.clone(),
            ));
        }
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            rules(child, &format!("{path}.{name}"), out);
        }
    }
    if let Some(items) = node.get("items") {
        rules(items, &format!("{path}[]"), out);
    }
}

fn all_rules() -> Vec<(String, String, String, Value)> {
    let mut out = Vec::new();
    rules(&schema(), "", &mut out);
    out
}

#[test]
fn every_rule_parses_has_a_message_and_fits_the_cost_budget() {
    let found = all_rules();
    let paths: Vec<&str> = found.iter().map(|(p, ..)| p.as_str()).collect();
    for expected in [
        "",
        ".spec",
        ".spec.image",
        ".spec.replicas",
        ".spec.runtimeClassName",
        ".spec.http.port",
        ".spec.http.path",
        ".spec.autoscaling",
        ".spec.autoscaling.minReplicas",
        ".spec.autoscaling.maxReplicas",
        ".spec.autoscaling.targetCPUUtilizationPercentage",
        ".spec.volumes[]",
    ] {
        assert!(
            paths.contains(&expected),
            "no rule at {expected:?}; found {paths:?}"
        );
    }
    for (path, rule, message, node) in &found {
        if let Err(e) = Program::compile(rule) {
            panic!("rule at {path:?} does not parse: {rule}\n{e}");
        }
        assert!(!message.is_empty(), "rule at {path:?} has no message");
        let compiled = compile_schema(node);
        assert!(
            !compiled.has_errors(),
            "rule at {path:?} fails to compile: {:?}",
            compiled.compilation_errors()
        );
        let warnings = estimate_rule_cost(rule, &compiled);
        assert!(
            warnings.is_empty(),
            "rule at {path:?} is too costly: {warnings:?}"
        );
    }
}

fn object(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "spore.dev/v1alpha1", "kind": "WasmApp",
           "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// Asserts `spec` passes every rule.
fn accepts(spec: Value) {
    let errors = cel_errors(&schema(), &object("app", spec.clone()));
    assert!(errors.is_empty(), "{spec} was rejected: {errors:?}");
}

/// Asserts `spec` fails with exactly the rule whose message contains `message`.
fn rejects(spec: Value, message: &str) {
    rejects_object(object("app", spec), message);
}

fn rejects_object(obj: Value, message: &str) {
    let errors = cel_errors(&schema(), &obj);
    assert_eq!(
        errors.len(),
        1,
        "{obj}: expected one failure, got {errors:?}"
    );
    assert!(
        errors[0].contains(message),
        "{obj}: {errors:?} lacks {message:?}"
    );
}

#[test]
fn good_objects_pass() {
    accepts(json!({"image": "hello"}));
    accepts(json!({"image": "registry.example.com:5000/team/app:v1.2", "replicas": 0}));
    accepts(json!({"image": format!("ghcr.io/a/b@sha256:{}", "a".repeat(64)), "replicas": 1000}));
    accepts(json!({"image": "app:1", "http": {"port": 1, "path": "/"}}));
    accepts(json!({"image": "app:1", "http": {"port": 65535, "path": "/healthz"}}));
    accepts(json!({"image": "app:1", "autoscaling": {"maxReplicas": 3}}));
    accepts(json!({"image": "app:1",
        "autoscaling": {"minReplicas": 3, "maxReplicas": 3, "targetCPUUtilizationPercentage": 1000}}));
    accepts(json!({"image": "app:1", "runtimeClassName": "spore",
        "volumes": [{"name": "a", "configMap": {"name": "c"}}, {"name": "b", "secret": {"secretName": "s"}},
                    {"name": "c", "emptyDir": {}}]}));
}

#[test]
fn replicas_and_autoscaling_exclude_each_other() {
    rejects(
        json!({"image": "app:1", "replicas": 2, "autoscaling": {"maxReplicas": 3}}),
        "replicas and autoscaling are mutually exclusive",
    );
}

#[test]
fn ranges_are_enforced() {
    rejects(
        json!({"image": "app:1", "replicas": -1}),
        "replicas must be between 0 and 1000",
    );
    rejects(
        json!({"image": "app:1", "replicas": 1001}),
        "replicas must be between 0 and 1000",
    );
    rejects(
        json!({"image": "app:1", "http": {"port": 0}}),
        "port must be between 1 and 65535",
    );
    rejects(
        json!({"image": "app:1", "http": {"port": 65536}}),
        "port must be between 1 and 65535",
    );
    rejects(
        json!({"image": "app:1", "http": {"path": "healthz"}}),
        "path must start with '/'",
    );
    rejects(
        json!({"image": "app:1", "autoscaling": {"minReplicas": 5, "maxReplicas": 2}}),
        "minReplicas must not exceed maxReplicas",
    );
    rejects(
        json!({"image": "app:1", "autoscaling": {"minReplicas": 0, "maxReplicas": 2}}),
        "minReplicas must be between 1 and 1000",
    );
    rejects(
        json!({"image": "app:1", "autoscaling": {"maxReplicas": 1001}}),
        "maxReplicas must be between 1 and 1000",
    );
    rejects(
        json!({"image": "app:1", "autoscaling": {"maxReplicas": 2, "targetCPUUtilizationPercentage": 0}}),
        "targetCPUUtilizationPercentage must be between 1 and 1000",
    );
    rejects(
        json!({"image": "app:1", "runtimeClassName": ""}),
        "runtimeClassName must not be empty",
    );
}

#[test]
fn volumes_need_exactly_one_source() {
    rejects(
        json!({"image": "app:1", "volumes": [{"name": "v"}]}),
        "a volume needs exactly one of configMap, secret, emptyDir",
    );
    rejects(
        json!({"image": "app:1", "volumes": [{"name": "v", "emptyDir": {}, "configMap": {"name": "c"}}]}),
        "a volume needs exactly one of configMap, secret, emptyDir",
    );
}

#[test]
fn image_references_must_parse() {
    for bad in [
        "Hello",
        "app::1",
        "app:",
        "/app",
        "app/",
        "app@sha256:abc",
        "http://reg/app",
        "a b",
    ] {
        rejects(json!({"image": bad}), "image must be an OCI reference");
    }
}

#[test]
fn names_must_suit_a_service() {
    for bad in ["1app", "my.app", "App", "app-"] {
        rejects_object(
            object(bad, json!({"image": "app:1"})),
            "metadata.name must be a DNS-1035 label",
        );
    }
    let long = "a".repeat(64);
    rejects_object(
        object(&long, json!({"image": "app:1"})),
        "metadata.name must be a DNS-1035 label",
    );
    assert!(
        cel_errors(
            &schema(),
            &object(&"a".repeat(63), json!({"image": "app:1"}))
        )
        .is_empty()
    );
}

#[test]
fn cel_and_the_operator_agree_on_images() {
    use spore_operator::image_ref::validate_image_reference;
    let digest = format!("sha256:{}", "0".repeat(64));
    let cases = [
        "hello",
        "hello:1.0",
        "localhost:5000/x/y:z",
        "UPPER",
        "a::b",
        "x@sha256:12",
        "reg.io/app@",
        "reg.io:port/app",
        "a__b/c..d",
        "a.b/c-d_e",
    ];
    let with_digest = format!("reg.io/app:1@{digest}");
    for image in cases.iter().copied().chain([with_digest.as_str()]) {
        let cel_ok = cel_errors(&schema(), &object("app", json!({"image": image}))).is_empty();
        let rust_ok = validate_image_reference(image).is_ok();
        assert_eq!(cel_ok, rust_ok, "CEL and operator disagree on {image:?}");
    }
}
