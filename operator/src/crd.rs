//! The `WasmApp` custom resource (`spore.dev/v1alpha1`): its spec, status and the CRD generated
//! from them, validation rules included.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    LocalObjectReference, Probe, ResourceRequirements, SecretVolumeSource, Toleration,
    TopologySpreadConstraint, VolumeMount,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::core::Rule;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::image_ref::IMAGE_REFERENCE_PATTERN;

/// Runtime class used when the spec names none.
pub const DEFAULT_RUNTIME_CLASS: &str = spore_format::RUNTIME_HANDLER;
/// Port an HTTP app listens on when the spec names none.
pub const DEFAULT_HTTP_PORT: i32 = 8080;
/// Path probed for health when the spec names none.
pub const DEFAULT_HTTP_PATH: &str = "/";
/// Replicas when neither `replicas` nor `autoscaling` is given.
pub const DEFAULT_REPLICAS: i32 = 1;
/// Lower bound of an autoscaler when `minReplicas` is not given.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;
/// Upper bound accepted for `replicas` and `maxReplicas`.
pub const MAX_REPLICAS: i32 = 1000;
/// Most volumes (and volume mounts) a WasmApp may declare.
pub const MAX_VOLUMES: usize = 64;
/// Longest image reference accepted.
pub const MAX_IMAGE_LENGTH: usize = 512;

/// A WebAssembly application: the operator turns it into a Deployment running on the `spore`
/// runtime class, a Service when it serves HTTP and an autoscaler when asked for.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "spore.dev",
    version = "v1alpha1",
    kind = "WasmApp",
    namespaced,
    shortname = "wa",
    status = "WasmAppStatus",
    derive = "PartialEq",
    doc = "A WebAssembly application run by Spore as Kubernetes pods",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether every wanted replica is ready"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "string",
        json_path = ".status.replicasSummary",
        description = "Ready replicas out of wanted replicas"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "In-cluster address of the app's Service"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.lastFailure.reason",
        description = "Why the Wasm container last failed"
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = name_rule()
)]
#[x_kube(validation = replicas_autoscaling_rule())]
#[serde(rename_all = "camelCase")]
pub struct WasmAppSpec {
    /// OCI reference of the Wasm image, e.g. `registry.example.com/hello:1.0` or `repo@sha256:...`.
    #[schemars(length(min = 1, max = 512))]
    #[x_kube(validation = image_rule())]
    pub image: String,

    /// Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Fixed number of pods (default 1). Not allowed together with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 0 && self <= 1000").message("replicas must be between 0 and 1000"))]
    pub replicas: Option<i32>,

    /// Arguments passed to the component (after the module name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,

    /// Environment of the component; `valueFrom` may read Secrets, ConfigMaps and pod fields.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,

    /// Whole Secrets or ConfigMaps exposed as environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,

    /// CPU and memory requests and limits of the Wasm container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Runtime class of the pods (default `spore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.size() > 0").message("runtimeClassName must not be empty"))]
    pub runtime_class_name: Option<String>,

    /// Set for apps that serve HTTP (`wasi:http/incoming-handler`); absent for command apps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSpec>,

    /// Scale with CPU load through a HorizontalPodAutoscaler. Not allowed together with `replicas`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Volumes of the pod (ConfigMaps, Secrets, emptyDir): mounted ones become the guest's
    /// preopened directories.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub volumes: Vec<WasmVolume>,

    /// Where the volumes appear inside the Wasm container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub volume_mounts: Vec<VolumeMount>,

    /// Ordinary (non-Wasm) containers that run in the same pod, e.g. a log shipper.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sidecars: Vec<Container>,

    /// Extra labels for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_labels: BTreeMap<String, String>,

    /// Extra annotations for the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// Node labels the pods must match (on top of the runtime class's own scheduling).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Tolerations of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Affinity of the pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// Topology spread constraints of the pods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// Service account the pods run as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Probes of the Wasm container; HTTP apps default to an HTTP GET on `http.path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<ProbesSpec>,
}

/// How an HTTP app is served.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HttpSpec {
    /// Port the component listens on, given to it as `PORT` (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 65535").message("port must be between 1 and 65535"))]
    pub port: Option<i32>,

    /// Path probed for readiness and liveness (default `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('/')").message("path must start with '/'"))]
    pub path: Option<String>,

    /// Kind of Service in front of the app (default ClusterIP); `None` makes no Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<ServiceType>,

    /// Annotations for the Service, e.g. for a cloud load balancer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub service_annotations: BTreeMap<String, String>,
}

/// Kind of Service made for an HTTP app.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
    /// No Service at all.
    None,
}

/// CPU-based autoscaling.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("!has(self.minReplicas) || self.minReplicas <= self.maxReplicas").message("minReplicas must not exceed maxReplicas"))]
#[serde(rename_all = "camelCase")]
pub struct AutoscalingSpec {
    /// Fewest pods (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("minReplicas must be between 1 and 1000"))]
    pub min_replicas: Option<i32>,

    /// Most pods.
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("maxReplicas must be between 1 and 1000"))]
    pub max_replicas: i32,

    /// Average CPU use, in percent of the requested CPU, that the autoscaler aims at (default 80).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "targetCPUUtilizationPercentage"
    )]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 1000").message("targetCPUUtilizationPercentage must be between 1 and 1000"))]
    pub target_cpu_utilization_percentage: Option<i32>,
}

/// A pod volume: exactly one of `configMap`, `secret`, `emptyDir`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.configMap) ? 1 : 0) + (has(self.secret) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) == 1").message("a volume needs exactly one of configMap, secret, emptyDir"))]
#[serde(rename_all = "camelCase")]
pub struct WasmVolume {
    /// Name that `volumeMounts` refer to.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Files from a ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// Files from a Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// A scratch directory that lives as long as the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
}

/// Probe overrides for the Wasm container.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ProbesSpec {
    /// Replaces the default readiness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<Probe>,
    /// Replaces the default liveness probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness: Option<Probe>,
    /// A startup probe (none by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup: Option<Probe>,
}

/// What the operator last saw of a WasmApp.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct WasmAppStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Pods that exist (the scale subresource reads this).
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/wanted`, shown by `kubectl get wa`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_summary: Option<String>,
    /// Label selector of the pods (the scale subresource reads this).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// `Ready`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// In-cluster address of the app's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Digest of the image the pods run, once a pod reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    /// The most recent failure of the Wasm container, from pod status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<ContainerFailure>,
    /// Hash of the pod template last applied; a change means a rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_template_hash: Option<String>,
}

/// Why a Wasm container failed, as its pod reports it.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContainerFailure {
    /// Pod the failure was seen in.
    pub pod: String,
    /// Container that failed (the Wasm container).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub container: String,
    /// When it failed: the container's exit, when it exited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Time>,
    /// Short machine-readable reason, e.g. `CrashLoopBackOff` or `Error`.
    pub reason: String,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Exit code when the container terminated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// `metadata.name` must suit a Service name too (a DNS-1035 label).
fn name_rule() -> Rule {
    Rule::new("self.metadata.name.size() <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')")
        .message("metadata.name must be a DNS-1035 label: at most 63 lowercase letters, digits and '-', starting with a letter")
}

fn replicas_autoscaling_rule() -> Rule {
    Rule::new("!(has(self.replicas) && has(self.autoscaling))")
        .message("replicas and autoscaling are mutually exclusive: set one of them")
}

fn image_rule() -> Rule {
    Rule::new(format!("self.matches('{IMAGE_REFERENCE_PATTERN}')")).message(
        "image must be an OCI reference such as registry.example.com/app:1.0 or repo@sha256:<hex>",
    )
}

/// Header written above the generated CRD YAML.
const CRD_HEADER: &str = "# Generated by `spore-operator crd`; do not edit.\n\
# Regenerate with: cargo run -p spore-operator -- crd > crds/wasmapp.yaml\n";

/// The `WasmApp` CustomResourceDefinition.
pub fn crd() -> CustomResourceDefinition {
    WasmApp::crd()
}

/// The CRD as YAML, exactly as `spore-operator crd` prints it and `crds/wasmapp.yaml` holds it.
pub fn crd_yaml() -> Result<String, serde_yaml::Error> {
    Ok(format!("{CRD_HEADER}{}", serde_yaml::to_string(&crd())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema_json() -> serde_json::Value {
        let crd = crd();
        let version = &crd.spec.versions[0];
        serde_json::to_value(
            version
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .expect("schema"),
        )
        .expect("json")
    }

    #[test]
    fn crd_names_group_version_and_short_name() {
        let crd = crd();
        assert_eq!(crd.metadata.name.as_deref(), Some("wasmapps.spore.dev"));
        assert_eq!(crd.spec.group, "spore.dev");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.kind, "WasmApp");
        assert_eq!(crd.spec.names.short_names, Some(vec!["wa".to_string()]));
        assert_eq!(crd.spec.versions.len(), 1);
        assert_eq!(crd.spec.versions[0].name, "v1alpha1");
    }

    #[test]
    fn crd_has_scale_and_status_subresources() {
        let crd = crd();
        let sub = crd.spec.versions[0]
            .subresources
            .as_ref()
            .expect("subresources");
        assert!(sub.status.is_some());
        let scale = sub.scale.as_ref().expect("scale");
        assert_eq!(scale.spec_replicas_path, ".spec.replicas");
        assert_eq!(scale.status_replicas_path, ".status.replicas");
        assert_eq!(
            scale.label_selector_path.as_deref(),
            Some(".status.selector")
        );
    }

    #[test]
    fn crd_printer_columns_are_ready_replicas_url_reason_age() {
        let crd = crd();
        let cols = crd.spec.versions[0]
            .additional_printer_columns
            .as_ref()
            .expect("columns");
        let names: Vec<&str> = cols.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["Ready", "Replicas", "URL", "Reason", "Age"]);
        assert_eq!(cols[3].json_path, ".status.lastFailure.reason");
        assert_eq!(cols[4].type_, "date");
    }

    #[test]
    fn crd_schema_carries_the_cel_rules() {
        let text = serde_json::to_string(&schema_json()).expect("json");
        for needle in [
            "replicas and autoscaling are mutually exclusive",
            "port must be between 1 and 65535",
            "minReplicas must not exceed maxReplicas",
            "a volume needs exactly one of configMap, secret, emptyDir",
            "image must be an OCI reference",
            "metadata.name must be a DNS-1035 label",
        ] {
            assert!(text.contains(needle), "schema lacks rule: {needle}");
        }
    }

    #[test]
    fn spec_requires_image_only() {
        let schema = schema_json();
        let required = &schema["properties"]["spec"]["required"];
        assert_eq!(required, &serde_json::json!(["image"]));
    }

    #[test]
    fn spec_round_trips_through_yaml() {
        let yaml = r#"
image: registry.example.com/hello:1.0
http:
  port: 9000
  serviceType: NodePort
autoscaling:
  maxReplicas: 5
  targetCPUUtilizationPercentage: 70
"#;
        let spec: WasmAppSpec = serde_yaml::from_str(yaml).expect("parse");
        assert_eq!(spec.image, "registry.example.com/hello:1.0");
        let http = spec.http.as_ref().expect("http");
        assert_eq!(http.port, Some(9000));
        assert_eq!(http.service_type, Some(ServiceType::NodePort));
        let auto = spec.autoscaling.as_ref().expect("autoscaling");
        assert_eq!(auto.target_cpu_utilization_percentage, Some(70));
        let back = serde_json::to_value(&spec).expect("json");
        assert_eq!(back["autoscaling"]["targetCPUUtilizationPercentage"], 70);
        assert!(back.get("replicas").is_none());
    }

    #[test]
    fn crd_yaml_starts_with_regeneration_hint() {
        let yaml = crd_yaml().expect("yaml");
        assert!(yaml.starts_with("# Generated by `spore-operator crd`"));
        assert!(yaml.contains("kind: CustomResourceDefinition"));
    }
}
