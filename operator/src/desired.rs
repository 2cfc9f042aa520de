//! Pure: a WasmApp plus the objects it references become the Deployment, Service and
//! HorizontalPodAutoscaler the operator applies, or a [`SpecError`] saying why they cannot.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, HTTPGetAction, PodSpec, PodTemplateSpec, Probe, Service,
    ServicePort, ServiceSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use regex::Regex;
use sha2::{Digest, Sha256};

use crate::crd::{
    self, AutoscalingSpec, HttpSpec, MAX_REPLICAS, MAX_VOLUMES, ServiceType, WasmApp, WasmAppSpec,
};
use crate::image_ref::{ImageRefError, validate_image_reference};
use crate::references::{MissingReference, ReferencedObjects, references};

/// Label every owned object and pod carries: the WasmApp's name. The pod selector.
pub const APP_LABEL: &str = "spore.dev/app";
/// Pod-template annotation holding the hash of referenced Secrets and ConfigMaps.
pub const CONFIG_HASH_ANNOTATION: &str = "spore.dev/config-hash";
/// Name of the Wasm container in the pod.
pub const WASM_CONTAINER: &str = "app";
/// Name of the container port and the Service port.
pub const HTTP_PORT_NAME: &str = "http";
/// Port the Service listens on.
pub const SERVICE_PORT: i32 = 80;
/// CPU utilisation an autoscaler aims at when the spec names none.
pub const DEFAULT_TARGET_CPU: i32 = 80;

#[allow(clippy::expect_used)] // a constant pattern, compiled in the tests
static DNS_1035_LABEL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new("^[a-z]([-a-z0-9]*[a-z0-9])?$").expect("the DNS-1035 pattern compiles")
});

/// Why a WasmApp's spec cannot be turned into running objects.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// The name is not usable for a Service.
    #[error(
        "name {0:?} is not a DNS-1035 label (at most 63 lowercase letters, digits and '-', starting with a letter)"
    )]
    InvalidName(String),
    /// The object has no namespace.
    #[error("WasmApp has no namespace")]
    MissingNamespace,
    /// The image reference does not parse.
    #[error(transparent)]
    InvalidImage(#[from] ImageRefError),
    /// `replicas` and `autoscaling` together.
    #[error("replicas and autoscaling are mutually exclusive: set one of them")]
    ReplicasWithAutoscaling,
    /// `replicas` outside 0..=1000.
    #[error("replicas {0} is outside 0..={MAX_REPLICAS}")]
    ReplicasOutOfRange(i32),
    /// `http.port` outside 1..=65535.
    #[error("http.port {0} is outside 1..=65535")]
    PortOutOfRange(i32),
    /// `http.path` not starting with '/'.
    #[error("http.path {0:?} must start with '/'")]
    InvalidPath(String),
    /// Bad autoscaling bounds or target.
    #[error("autoscaling: {0}")]
    InvalidAutoscaling(String),
    /// A volume with zero or several sources.
    #[error(
        "volume {name:?} has {sources} sources; it needs exactly one of configMap, secret, emptyDir"
    )]
    VolumeSources {
        /// Volume name.
        name: String,
        /// How many sources it has.
        sources: usize,
    },
    /// Two volumes with one name.
    #[error("volume name {0:?} is used twice")]
    DuplicateVolume(String),
    /// More volumes or mounts than allowed.
    #[error("{what} has {count} entries, more than the {MAX_VOLUMES} allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its length.
        count: usize,
    },
    /// A mount naming no volume of the app.
    #[error("volumeMount {mount_path:?} refers to volume {volume:?}, which is not in volumes")]
    UnknownVolume {
        /// The mount's path.
        mount_path: String,
        /// The volume it names.
        volume: String,
    },
    /// A sidecar clashing with the Wasm container or another sidecar.
    #[error("container name {0:?} is used twice (the Wasm container is named \"app\")")]
    DuplicateContainer(String),
    /// A required Secret, ConfigMap or key is missing.
    #[error("{0}")]
    MissingReference(MissingReference),
}

impl SpecError {
    /// The condition and event reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SpecError::MissingReference(_) => "MissingReference",
            SpecError::InvalidImage(_) => "InvalidImage",
            _ => "InvalidSpec",
        }
    }
}

/// Everything the operator applies for one WasmApp.
#[derive(Debug, Clone, PartialEq)]
pub struct DesiredObjects {
    /// Always present.
    pub deployment: Deployment,
    /// Present for HTTP apps unless `serviceType: None`.
    pub service: Option<Service>,
    /// Present when autoscaling is asked for.
    pub hpa: Option<HorizontalPodAutoscaler>,
    /// Hash of the pod template; a change means a rollout.
    pub template_hash: String,
}

/// Labels on every object made for `name`.
pub fn common_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), name.to_string()),
        (
            "app.kubernetes.io/managed-by".to_string(),
            crate::FIELD_MANAGER.to_string(),
        ),
        (APP_LABEL.to_string(), name.to_string()),
    ])
}

/// Labels selecting the pods of `name`.
pub fn selector_labels(name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(APP_LABEL.to_string(), name.to_string())])
}

/// The label selector string (`spore.dev/app=NAME`), as the scale subresource reports it.
pub fn selector_string(name: &str) -> String {
    format!("{APP_LABEL}={name}")
}

/// The in-cluster URL of an app's Service.
pub fn service_url(name: &str, namespace: &str, cluster_domain: &str) -> String {
    format!("http://{name}.{namespace}.svc.{cluster_domain}")
}

/// Checks the spec for what the schema also checks (an old CRD may have let it in) and more.
pub fn validate_spec(app: &WasmApp) -> Result<(), SpecError> {
    let name = app.name_any();
    if name.len() > 63 || !DNS_1035_LABEL.is_match(&name) {
        return Err(SpecError::InvalidName(name));
    }
    if app.namespace().is_none() {
        return Err(SpecError::MissingNamespace);
    }
    let spec = &app.spec;
    validate_image_reference(&spec.image)?;
    if spec.replicas.is_some() && spec.autoscaling.is_some() {
        return Err(SpecError::ReplicasWithAutoscaling);
    }
    if let Some(replicas) = spec.replicas
        && !(0..=MAX_REPLICAS).contains(&replicas)
    {
        return Err(SpecError::ReplicasOutOfRange(replicas));
    }
    if let Some(http) = &spec.http {
        validate_http(http)?;
    }
    if let Some(auto) = &spec.autoscaling {
        validate_autoscaling(auto)?;
    }
    validate_volumes(spec)?;
    let mut containers = BTreeSet::from([WASM_CONTAINER.to_string()]);
    for sidecar in &spec.sidecars {
        if !containers.insert(sidecar.name.clone()) {
            return Err(SpecError::DuplicateContainer(sidecar.name.clone()));
        }
    }
    Ok(())
}

fn validate_http(http: &HttpSpec) -> Result<(), SpecError> {
    if let Some(port) = http.port
        && !(1..=65535).contains(&port)
    {
        return Err(SpecError::PortOutOfRange(port));
    }
    if let Some(path) = &http.path
        && !path.starts_with('/')
    {
        return Err(SpecError::InvalidPath(path.clone()));
    }
    Ok(())
}

fn validate_autoscaling(auto: &AutoscalingSpec) -> Result<(), SpecError> {
    let min = auto.min_replicas.unwrap_or(crd::DEFAULT_MIN_REPLICAS);
    let max = auto.max_replicas;
    if !(1..=MAX_REPLICAS).contains(&min) {
        return Err(SpecError::InvalidAutoscaling(format!(
            "minReplicas {min} is outside 1..={MAX_REPLICAS}"
        )));
    }
    if !(1..=MAX_REPLICAS).contains(&max) {
        return Err(SpecError::InvalidAutoscaling(format!(
            "maxReplicas {max} is outside 1..={MAX_REPLICAS}"
        )));
    }
    if min > max {
        return Err(SpecError::InvalidAutoscaling(format!(
            "minReplicas {min} exceeds maxReplicas {max}"
        )));
    }
    if let Some(target) = auto.target_cpu_utilization_percentage
        && !(1..=1000).contains(&target)
    {
        return Err(SpecError::InvalidAutoscaling(format!(
            "targetCPUUtilizationPercentage {target} is outside 1..=1000"
        )));
    }
    Ok(())
}

fn validate_volumes(spec: &WasmAppSpec) -> Result<(), SpecError> {
    for (what, count) in [
        ("volumes", spec.volumes.len()),
        ("volumeMounts", spec.volume_mounts.len()),
    ] {
        if count > MAX_VOLUMES {
            return Err(SpecError::TooMany { what, count });
        }
    }
    let mut names = BTreeSet::new();
    for volume in &spec.volumes {
        let sources = usize::from(volume.config_map.is_some())
            + usize::from(volume.secret.is_some())
            + usize::from(volume.empty_dir.is_some());
        if sources != 1 {
            return Err(SpecError::VolumeSources {
                name: volume.name.clone(),
                sources,
            });
        }
        if !names.insert(volume.name.as_str()) {
            return Err(SpecError::DuplicateVolume(volume.name.clone()));
        }
    }
    if let Some(mount) = spec
        .volume_mounts
        .iter()
        .find(|m| !names.contains(m.name.as_str()))
    {
        return Err(SpecError::UnknownVolume {
            mount_path: mount.mount_path.clone(),
            volume: mount.name.clone(),
        });
    }
    Ok(())
}

/// The objects to apply for `app`, given the Secrets and ConfigMaps found.
pub fn desired(app: &WasmApp, found: &ReferencedObjects) -> Result<DesiredObjects, SpecError> {
    validate_spec(app)?;
    let refs = references(&app.spec);
    if let Some(missing) = found.first_missing(&refs) {
        return Err(SpecError::MissingReference(missing));
    }
    let config_hash = found.content_hash(&refs);
    let name = app.name_any();
    let namespace = app.namespace().ok_or(SpecError::MissingNamespace)?;
    let owner = app
        .controller_owner_ref(&())
        .into_iter()
        .collect::<Vec<_>>();
    let meta = |annotations: Option<BTreeMap<String, String>>| ObjectMeta {
        name: Some(name.clone()),
        namespace: Some(namespace.clone()),
        labels: Some(common_labels(&name)),
        annotations,
        owner_references: Some(owner.clone()),
        ..Default::default()
    };

    let template = pod_template(&name, &app.spec, &config_hash);
    let template_hash = hash_template(&template);
    let deployment = Deployment {
        metadata: meta(None),
        spec: Some(DeploymentSpec {
            // with autoscaling the HPA owns the replica count: leave the field to it
            replicas: match app.spec.autoscaling {
                Some(_) => None,
                None => Some(app.spec.replicas.unwrap_or(crd::DEFAULT_REPLICAS)),
            },
            selector: LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..Default::default()
            },
            template,
            ..Default::default()
        }),
        status: None,
    };

    let service = app.spec.http.as_ref().and_then(|http| {
        let type_ = http.service_type.unwrap_or_default();
        let type_name = match type_ {
            ServiceType::None => return None,
            ServiceType::ClusterIP => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        };
        let annotations =
            (!http.service_annotations.is_empty()).then(|| http.service_annotations.clone());
        Some(Service {
            metadata: meta(annotations),
            spec: Some(ServiceSpec {
                type_: Some(type_name.to_string()),
                selector: Some(selector_labels(&name)),
                ports: Some(vec![ServicePort {
                    name: Some(HTTP_PORT_NAME.to_string()),
                    port: SERVICE_PORT,
                    target_port: Some(IntOrString::String(HTTP_PORT_NAME.to_string())),
                    protocol: Some("TCP".to_string()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: None,
        })
    });

    let hpa = app
        .spec
        .autoscaling
        .as_ref()
        .map(|auto| HorizontalPodAutoscaler {
            metadata: meta(None),
            spec: Some(HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".to_string()),
                    kind: "Deployment".to_string(),
                    name: name.clone(),
                },
                min_replicas: Some(auto.min_replicas.unwrap_or(crd::DEFAULT_MIN_REPLICAS)),
                max_replicas: auto.max_replicas,
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".to_string(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".to_string(),
                        target: MetricTarget {
                            type_: "Utilization".to_string(),
                            average_utilization: Some(
                                auto.target_cpu_utilization_percentage
                                    .unwrap_or(DEFAULT_TARGET_CPU),
                            ),
                            ..Default::default()
                        },
                    }),
                    ..Default::default()
                }]),
                behavior: None,
            }),
            status: None,
        });

    Ok(DesiredObjects {
        deployment,
        service,
        hpa,
        template_hash,
    })
}

fn pod_template(name: &str, spec: &WasmAppSpec, config_hash: &str) -> PodTemplateSpec {
    let mut labels = spec.pod_labels.clone();
    labels.extend(common_labels(name));
    let mut annotations = spec.pod_annotations.clone();
    annotations.insert(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string());

    let mut containers = vec![wasm_container(spec)];
    containers.extend(spec.sidecars.iter().cloned());
    let volumes: Vec<Volume> = spec
        .volumes
        .iter()
        .map(|v| Volume {
            name: v.name.clone(),
            config_map: v.config_map.clone(),
            secret: v.secret.clone(),
            empty_dir: v.empty_dir.clone(),
            ..Default::default()
        })
        .collect();

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            runtime_class_name: Some(
                spec.runtime_class_name
                    .clone()
                    .unwrap_or_else(|| crd::DEFAULT_RUNTIME_CLASS.to_string()),
            ),
            containers,
            volumes: non_empty(volumes),
            image_pull_secrets: non_empty(spec.image_pull_secrets.clone()),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: non_empty(spec.tolerations.clone()),
            affinity: spec.affinity.clone(),
            topology_spread_constraints: non_empty(spec.topology_spread_constraints.clone()),
            service_account_name: spec.service_account_name.clone(),
            ..Default::default()
        }),
    }
}

fn wasm_container(spec: &WasmAppSpec) -> Container {
    let mut env = spec.env.clone();
    let mut ports = None;
    let mut readiness = None;
    let mut liveness = None;
    if let Some(http) = &spec.http {
        let port = http.port.unwrap_or(crd::DEFAULT_HTTP_PORT);
        let path = http
            .path
            .clone()
            .unwrap_or_else(|| crd::DEFAULT_HTTP_PATH.to_string());
        if !env.iter().any(|e| e.name == "PORT") {
            env.insert(
                0,
                EnvVar {
                    name: "PORT".to_string(),
                    value: Some(port.to_string()),
                    value_from: None,
                },
            );
        }
        ports = Some(vec![ContainerPort {
            name: Some(HTTP_PORT_NAME.to_string()),
            container_port: port,
            protocol: Some("TCP".to_string()),
            ..Default::default()
        }]);
        let probe = Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path),
                port: IntOrString::String(HTTP_PORT_NAME.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        };
        readiness = Some(probe.clone());
        liveness = Some(probe);
    }
    let probes = spec.probes.clone().unwrap_or_default();
    Container {
        name: WASM_CONTAINER.to_string(),
        image: Some(spec.image.clone()),
        args: non_empty(spec.args.clone()),
        env: non_empty(env),
        env_from: non_empty(spec.env_from.clone()),
        resources: spec.resources.clone(),
        ports,
        volume_mounts: non_empty(spec.volume_mounts.clone()),
        readiness_probe: probes.readiness.or(readiness),
        liveness_probe: probes.liveness.or(liveness),
        startup_probe: probes.startup,
        ..Default::default()
    }
}

fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

fn hash_template(template: &PodTemplateSpec) -> String {
    // serde_json writes struct fields in a fixed order and maps sorted (BTreeMap): stable
    let bytes = serde_json::to_vec(template).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..8])
}

#[cfg(test)]
#[path = "desired_tests.rs"]
mod tests;
