use super::*;
use crate::crd::{ProbesSpec, WasmVolume};
use crate::references::RefKind;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    Affinity, ConfigMap, ConfigMapVolumeSource, EmptyDirVolumeSource, EnvFromSource, EnvVarSource,
    ExecAction, LocalObjectReference, NodeAffinity, NodeSelector, NodeSelectorRequirement,
    NodeSelectorTerm, ResourceRequirements, Secret, SecretEnvSource, SecretKeySelector, Toleration,
    TopologySpreadConstraint, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

fn app(spec: WasmAppSpec) -> WasmApp {
    let mut app = WasmApp::new("hello", spec);
    app.metadata.namespace = Some("default".into());
    app.metadata.uid = Some("uid-1".into());
    app
}

fn spec(image: &str) -> WasmAppSpec {
    WasmAppSpec {
        image: image.into(),
        ..Default::default()
    }
}

fn http_spec() -> WasmAppSpec {
    WasmAppSpec {
        http: Some(HttpSpec::default()),
        ..spec("registry.example.com/hello:1.0")
    }
}

fn build(spec: WasmAppSpec) -> DesiredObjects {
    desired(&app(spec), &ReferencedObjects::default()).expect("desired")
}

fn pod_spec(objects: &DesiredObjects) -> &PodSpec {
    objects
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
}

fn wasm(objects: &DesiredObjects) -> &Container {
    &pod_spec(objects).containers[0]
}

fn template_annotations(objects: &DesiredObjects) -> &BTreeMap<String, String> {
    objects
        .deployment
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .expect("annotations")
}

fn err(spec: WasmAppSpec) -> SpecError {
    desired(&app(spec), &ReferencedObjects::default()).expect_err("should be rejected")
}

#[test]
fn command_app_defaults() {
    let objects = build(spec("hello:1"));
    let deployment = &objects.deployment;
    assert_eq!(deployment.metadata.name.as_deref(), Some("hello"));
    assert_eq!(deployment.metadata.namespace.as_deref(), Some("default"));
    let dspec = deployment.spec.as_ref().expect("spec");
    assert_eq!(dspec.replicas, Some(1));
    assert_eq!(
        dspec.selector.match_labels,
        Some(BTreeMap::from([(APP_LABEL.into(), "hello".into())]))
    );
    let pod = pod_spec(&objects);
    assert_eq!(pod.runtime_class_name.as_deref(), Some("spore"));
    assert_eq!(pod.containers.len(), 1);
    let c = wasm(&objects);
    assert_eq!(c.name, "app");
    assert_eq!(c.image.as_deref(), Some("hello:1"));
    assert_eq!(c.ports, None);
    assert_eq!(c.readiness_probe, None);
    assert_eq!(c.liveness_probe, None);
    assert_eq!(c.env, None);
    assert_eq!(objects.service, None);
    assert_eq!(objects.hpa, None);
    assert!(template_annotations(&objects).contains_key(CONFIG_HASH_ANNOTATION));
}

#[test]
fn owner_reference_points_at_the_app_as_controller() {
    let objects = build(http_spec());
    for meta in [
        &objects.deployment.metadata,
        &objects.service.as_ref().expect("service").metadata,
    ] {
        let owners = meta.owner_references.as_ref().expect("owners");
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "WasmApp");
        assert_eq!(owners[0].api_version, "spore.dev/v1alpha1");
        assert_eq!(owners[0].name, "hello");
        assert_eq!(owners[0].uid, "uid-1");
        assert_eq!(owners[0].controller, Some(true));
        let labels = meta.labels.as_ref().expect("labels");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "spore-operator");
        assert_eq!(labels["app.kubernetes.io/name"], "hello");
        assert_eq!(labels[APP_LABEL], "hello");
    }
}

#[test]
fn http_app_defaults_port_probes_and_service() {
    let objects = build(http_spec());
    let c = wasm(&objects);
    let ports = c.ports.as_ref().expect("ports");
    assert_eq!(ports[0].container_port, 8080);
    assert_eq!(ports[0].name.as_deref(), Some("http"));
    let env = c.env.as_ref().expect("env");
    assert_eq!(env[0].name, "PORT");
    assert_eq!(env[0].value.as_deref(), Some("8080"));
    for probe in [&c.readiness_probe, &c.liveness_probe] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .expect("httpGet");
        assert_eq!(get.path.as_deref(), Some("/"));
        assert_eq!(get.port, IntOrString::String("http".into()));
    }
    let service = objects.service.as_ref().expect("service");
    let sspec = service.spec.as_ref().expect("spec");
    assert_eq!(sspec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(sspec.selector, Some(selector_labels("hello")));
    let port = &sspec.ports.as_ref().expect("ports")[0];
    assert_eq!(port.port, 80);
    assert_eq!(port.target_port, Some(IntOrString::String("http".into())));
    assert_eq!(service.metadata.annotations, None);
}

#[test]
fn http_port_path_service_type_and_annotations_are_used() {
    let objects = build(WasmAppSpec {
        http: Some(HttpSpec {
            port: Some(9000),
            path: Some("/healthz".into()),
            service_type: Some(ServiceType::LoadBalancer),
            service_annotations: BTreeMap::from([("lb/kind".into(), "nlb".into())]),
        }),
        ..spec("hello:1")
    });
    let c = wasm(&objects);
    assert_eq!(c.ports.as_ref().expect("ports")[0].container_port, 9000);
    assert_eq!(
        c.env.as_ref().expect("env")[0].value.as_deref(),
        Some("9000")
    );
    let path = c
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref())
        .and_then(|g| g.path.as_deref());
    assert_eq!(path, Some("/healthz"));
    let service = objects.service.as_ref().expect("service");
    assert_eq!(
        service.spec.as_ref().and_then(|s| s.type_.as_deref()),
        Some("LoadBalancer")
    );
    assert_eq!(
        service.metadata.annotations,
        Some(BTreeMap::from([("lb/kind".into(), "nlb".into())]))
    );
}

#[test]
fn node_port_and_no_service() {
    let node_port = build(WasmAppSpec {
        http: Some(HttpSpec {
            service_type: Some(ServiceType::NodePort),
            ..Default::default()
        }),
        ..spec("hello:1")
    });
    assert_eq!(
        node_port
            .service
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.type_.as_deref()),
        Some("NodePort")
    );
    let none = build(WasmAppSpec {
        http: Some(HttpSpec {
            service_type: Some(ServiceType::None),
            ..Default::default()
        }),
        ..spec("hello:1")
    });
    assert_eq!(none.service, None);
    // still an HTTP app: port and probes stay
    assert!(wasm(&none).ports.is_some());
}

#[test]
fn user_port_env_is_kept() {
    let objects = build(WasmAppSpec {
        env: vec![EnvVar {
            name: "PORT".into(),
            value: Some("1234".into()),
            value_from: None,
        }],
        ..http_spec()
    });
    let env = wasm(&objects).env.as_ref().expect("env");
    assert_eq!(env.len(), 1);
    assert_eq!(env[0].value.as_deref(), Some("1234"));
}

#[test]
fn replicas_args_env_resources_runtime_class() {
    let resources = ResourceRequirements {
        limits: Some(BTreeMap::from([("memory".into(), Quantity("64Mi".into()))])),
        ..Default::default()
    };
    let objects = build(WasmAppSpec {
        replicas: Some(3),
        args: vec!["--verbose".into(), "x".into()],
        env: vec![EnvVar {
            name: "GREETING".into(),
            value: Some("hi".into()),
            value_from: None,
        }],
        env_from: vec![EnvFromSource {
            prefix: Some("P_".into()),
            ..Default::default()
        }],
        resources: Some(resources.clone()),
        runtime_class_name: Some("spore-fast".into()),
        image_pull_secrets: vec![LocalObjectReference {
            name: "regcred".into(),
        }],
        ..spec("hello:1")
    });
    assert_eq!(
        objects.deployment.spec.as_ref().and_then(|s| s.replicas),
        Some(3)
    );
    let c = wasm(&objects);
    assert_eq!(c.args, Some(vec!["--verbose".into(), "x".into()]));
    assert_eq!(c.env.as_ref().expect("env")[0].name, "GREETING");
    assert_eq!(
        c.env_from.as_ref().expect("envFrom")[0].prefix.as_deref(),
        Some("P_")
    );
    assert_eq!(c.resources, Some(resources));
    let pod = pod_spec(&objects);
    assert_eq!(pod.runtime_class_name.as_deref(), Some("spore-fast"));
    assert_eq!(
        pod.image_pull_secrets,
        Some(vec![LocalObjectReference {
            name: "regcred".into()
        }])
    );
}

#[test]
fn zero_replicas_is_allowed() {
    let objects = build(WasmAppSpec {
        replicas: Some(0),
        ..spec("hello:1")
    });
    assert_eq!(
        objects.deployment.spec.as_ref().and_then(|s| s.replicas),
        Some(0)
    );
}

#[test]
fn autoscaling_makes_an_hpa_and_leaves_replicas_to_it() {
    let objects = build(WasmAppSpec {
        autoscaling: Some(AutoscalingSpec {
            min_replicas: Some(2),
            max_replicas: 10,
            target_cpu_utilization_percentage: Some(60),
        }),
        ..http_spec()
    });
    assert_eq!(
        objects.deployment.spec.as_ref().and_then(|s| s.replicas),
        None
    );
    let hpa = objects.hpa.as_ref().expect("hpa");
    let hspec = hpa.spec.as_ref().expect("spec");
    assert_eq!(hspec.scale_target_ref.kind, "Deployment");
    assert_eq!(hspec.scale_target_ref.name, "hello");
    assert_eq!(
        hspec.scale_target_ref.api_version.as_deref(),
        Some("apps/v1")
    );
    assert_eq!(hspec.min_replicas, Some(2));
    assert_eq!(hspec.max_replicas, 10);
    let metric = &hspec.metrics.as_ref().expect("metrics")[0];
    let resource = metric.resource.as_ref().expect("resource");
    assert_eq!(resource.name, "cpu");
    assert_eq!(resource.target.type_, "Utilization");
    assert_eq!(resource.target.average_utilization, Some(60));
}

#[test]
fn autoscaling_defaults() {
    let objects = build(WasmAppSpec {
        autoscaling: Some(AutoscalingSpec {
            max_replicas: 4,
            ..Default::default()
        }),
        ..spec("hello:1")
    });
    let hspec = objects
        .hpa
        .as_ref()
        .and_then(|h| h.spec.as_ref())
        .expect("hpa");
    assert_eq!(hspec.min_replicas, Some(1));
    let target = &hspec.metrics.as_ref().expect("metrics")[0]
        .resource
        .as_ref()
        .expect("resource")
        .target;
    assert_eq!(target.average_utilization, Some(80));
}

#[test]
fn volumes_mounts_and_sidecars() {
    let objects = build(WasmAppSpec {
        volumes: vec![
            WasmVolume {
                name: "site".into(),
                config_map: Some(ConfigMapVolumeSource {
                    name: "site-files".into(),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            },
            WasmVolume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            },
        ],
        volume_mounts: vec![VolumeMount {
            name: "site".into(),
            mount_path: "/site".into(),
            read_only: Some(true),
            ..Default::default()
        }],
        sidecars: vec![Container {
            name: "shipper".into(),
            image: Some("busybox:1".into()),
            ..Default::default()
        }],
        ..spec("hello:1")
    });
    let pod = pod_spec(&objects);
    let volumes = pod.volumes.as_ref().expect("volumes");
    assert_eq!(volumes.len(), 2);
    assert_eq!(volumes[0].name, "site");
    assert_eq!(
        volumes[0].config_map.as_ref().map(|c| c.name.as_str()),
        Some("site-files")
    );
    assert!(volumes[1].empty_dir.is_some());
    let mounts = wasm(&objects).volume_mounts.as_ref().expect("mounts");
    assert_eq!(mounts[0].mount_path, "/site");
    assert_eq!(pod.containers.len(), 2);
    assert_eq!(pod.containers[1].name, "shipper");
    assert_eq!(pod.containers[1].image.as_deref(), Some("busybox:1"));
}

#[test]
fn scheduling_fields_and_pod_metadata() {
    let affinity = Affinity {
        node_affinity: Some(NodeAffinity {
            required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                node_selector_terms: vec![NodeSelectorTerm {
                    match_expressions: Some(vec![NodeSelectorRequirement {
                        key: "zone".into(),
                        operator: "In".into(),
                        values: Some(vec!["a".into()]),
                    }]),
                    ..Default::default()
                }],
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let objects = build(WasmAppSpec {
        pod_labels: BTreeMap::from([
            ("team".into(), "edge".into()),
            // the operator's own labels win
            (APP_LABEL.into(), "hijack".into()),
        ]),
        pod_annotations: BTreeMap::from([("note".into(), "x".into())]),
        node_selector: BTreeMap::from([("disk".into(), "ssd".into())]),
        tolerations: vec![Toleration {
            key: Some("dedicated".into()),
            operator: Some("Exists".into()),
            ..Default::default()
        }],
        affinity: Some(affinity.clone()),
        topology_spread_constraints: vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "zone".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            ..Default::default()
        }],
        service_account_name: Some("runner".into()),
        ..spec("hello:1")
    });
    let template = &objects.deployment.spec.as_ref().expect("spec").template;
    let meta = template.metadata.as_ref().expect("meta");
    let labels = meta.labels.as_ref().expect("labels");
    assert_eq!(labels["team"], "edge");
    assert_eq!(labels[APP_LABEL], "hello");
    assert_eq!(meta.annotations.as_ref().expect("ann")["note"], "x");
    let pod = pod_spec(&objects);
    assert_eq!(
        pod.node_selector,
        Some(BTreeMap::from([("disk".into(), "ssd".into())]))
    );
    assert_eq!(
        pod.tolerations.as_ref().expect("tol")[0].key.as_deref(),
        Some("dedicated")
    );
    assert_eq!(pod.affinity, Some(affinity));
    assert_eq!(
        pod.topology_spread_constraints.as_ref().expect("tsc")[0].topology_key,
        "zone"
    );
    assert_eq!(pod.service_account_name.as_deref(), Some("runner"));
}

#[test]
fn probe_overrides_replace_defaults() {
    let exec = Probe {
        exec: Some(ExecAction {
            command: Some(vec!["true".into()]),
        }),
        ..Default::default()
    };
    let objects = build(WasmAppSpec {
        probes: Some(ProbesSpec {
            readiness: Some(exec.clone()),
            liveness: None,
            startup: Some(exec.clone()),
        }),
        ..http_spec()
    });
    let c = wasm(&objects);
    assert_eq!(c.readiness_probe, Some(exec.clone()));
    assert!(
        c.liveness_probe
            .as_ref()
            .is_some_and(|p| p.http_get.is_some())
    );
    assert_eq!(c.startup_probe, Some(exec));
}

#[test]
fn probes_on_a_command_app_are_only_the_given_ones() {
    let probe = Probe {
        period_seconds: Some(7),
        ..Default::default()
    };
    let objects = build(WasmAppSpec {
        probes: Some(ProbesSpec {
            liveness: Some(probe.clone()),
            ..Default::default()
        }),
        ..spec("hello:1")
    });
    assert_eq!(wasm(&objects).liveness_probe, Some(probe));
    assert_eq!(wasm(&objects).readiness_probe, None);
}

#[test]
fn config_hash_follows_referenced_secret_content() {
    let spec = WasmAppSpec {
        env: vec![EnvVar {
            name: "TOKEN".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: "creds".into(),
                    key: "token".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        }],
        ..spec("hello:1")
    };
    let with = |value: &str| {
        let mut found = ReferencedObjects::default();
        found.secrets.insert(
            "creds".into(),
            Secret {
                data: Some(BTreeMap::from([(
                    "token".into(),
                    ByteString(value.as_bytes().to_vec()),
                )])),
                ..Default::default()
            },
        );
        desired(&app(spec.clone()), &found).expect("desired")
    };
    let one = with("one");
    let two = with("two");
    let hash_one = template_annotations(&one)[CONFIG_HASH_ANNOTATION].clone();
    let hash_two = template_annotations(&two)[CONFIG_HASH_ANNOTATION].clone();
    assert_ne!(hash_one, hash_two);
    assert_ne!(one.template_hash, two.template_hash);
    assert_eq!(
        hash_one,
        template_annotations(&with("one"))[CONFIG_HASH_ANNOTATION]
    );
}

#[test]
fn config_map_volume_content_moves_the_hash() {
    let spec = WasmAppSpec {
        volumes: vec![WasmVolume {
            name: "site".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: "site-files".into(),
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..spec("hello:1")
    };
    let with = |index: &str| {
        let mut found = ReferencedObjects::default();
        found.config_maps.insert(
            "site-files".into(),
            ConfigMap {
                data: Some(BTreeMap::from([("index.html".into(), index.into())])),
                ..Default::default()
            },
        );
        desired(&app(spec.clone()), &found).expect("desired")
    };
    assert_ne!(
        template_annotations(&with("a"))[CONFIG_HASH_ANNOTATION],
        template_annotations(&with("b"))[CONFIG_HASH_ANNOTATION]
    );
}

#[test]
fn missing_secret_is_a_spec_error() {
    let error = err(WasmAppSpec {
        env_from: vec![EnvFromSource {
            secret_ref: Some(SecretEnvSource {
                name: "absent".into(),
                optional: None,
            }),
            ..Default::default()
        }],
        ..spec("hello:1")
    });
    match &error {
        SpecError::MissingReference(missing) => {
            assert_eq!(missing.kind, RefKind::Secret);
            assert_eq!(missing.name, "absent");
        }
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(error.reason(), "MissingReference");
    assert_eq!(error.to_string(), "Secret \"absent\" does not exist");
}

#[test]
fn bad_image_is_a_spec_error() {
    let error = err(spec("Not A/Valid::Image"));
    assert!(matches!(error, SpecError::InvalidImage(_)), "{error:?}");
    assert_eq!(error.reason(), "InvalidImage");
    assert!(matches!(
        err(spec("")),
        SpecError::InvalidImage(ImageRefError::Empty)
    ));
}

#[test]
fn replicas_with_autoscaling_is_rejected() {
    let error = err(WasmAppSpec {
        replicas: Some(2),
        autoscaling: Some(AutoscalingSpec {
            max_replicas: 3,
            ..Default::default()
        }),
        ..spec("hello:1")
    });
    assert_eq!(error, SpecError::ReplicasWithAutoscaling);
    assert_eq!(error.reason(), "InvalidSpec");
}

#[test]
fn out_of_range_numbers_are_rejected() {
    assert_eq!(
        err(WasmAppSpec {
            replicas: Some(-1),
            ..spec("hello:1")
        }),
        SpecError::ReplicasOutOfRange(-1)
    );
    assert_eq!(
        err(WasmAppSpec {
            replicas: Some(1001),
            ..spec("hello:1")
        }),
        SpecError::ReplicasOutOfRange(1001)
    );
    for port in [0, 65536, -5] {
        assert_eq!(
            err(WasmAppSpec {
                http: Some(HttpSpec {
                    port: Some(port),
                    ..Default::default()
                }),
                ..spec("hello:1")
            }),
            SpecError::PortOutOfRange(port)
        );
    }
    assert_eq!(
        err(WasmAppSpec {
            http: Some(HttpSpec {
                path: Some("health".into()),
                ..Default::default()
            }),
            ..spec("hello:1")
        }),
        SpecError::InvalidPath("health".into())
    );
}

#[test]
fn bad_autoscaling_is_rejected() {
    let case = |min: Option<i32>, max: i32, target: Option<i32>| {
        err(WasmAppSpec {
            autoscaling: Some(AutoscalingSpec {
                min_replicas: min,
                max_replicas: max,
                target_cpu_utilization_percentage: target,
            }),
            ..spec("hello:1")
        })
        .to_string()
    };
    assert_eq!(
        case(Some(5), 2, None),
        "autoscaling: minReplicas 5 exceeds maxReplicas 2"
    );
    assert_eq!(
        case(Some(0), 2, None),
        "autoscaling: minReplicas 0 is outside 1..=1000"
    );
    assert_eq!(
        case(None, 0, None),
        "autoscaling: maxReplicas 0 is outside 1..=1000"
    );
    assert_eq!(
        case(None, 3, Some(0)),
        "autoscaling: targetCPUUtilizationPercentage 0 is outside 1..=1000"
    );
}

#[test]
fn bad_volumes_are_rejected() {
    let two_sources = WasmVolume {
        name: "v".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: "c".into(),
            ..Default::default()
        }),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    assert_eq!(
        err(WasmAppSpec {
            volumes: vec![two_sources],
            ..spec("hello:1")
        }),
        SpecError::VolumeSources {
            name: "v".into(),
            sources: 2
        }
    );
    let empty = WasmVolume {
        name: "e".into(),
        ..Default::default()
    };
    assert_eq!(
        err(WasmAppSpec {
            volumes: vec![empty],
            ..spec("hello:1")
        }),
        SpecError::VolumeSources {
            name: "e".into(),
            sources: 0
        }
    );
    let scratch = WasmVolume {
        name: "s".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    assert_eq!(
        err(WasmAppSpec {
            volumes: vec![scratch.clone(), scratch.clone()],
            ..spec("hello:1")
        }),
        SpecError::DuplicateVolume("s".into())
    );
    assert_eq!(
        err(WasmAppSpec {
            volumes: vec![scratch],
            volume_mounts: vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/data".into(),
                ..Default::default()
            }],
            ..spec("hello:1")
        }),
        SpecError::UnknownVolume {
            mount_path: "/data".into(),
            volume: "nope".into()
        }
    );
}

#[test]
fn sidecar_named_app_is_rejected() {
    assert_eq!(
        err(WasmAppSpec {
            sidecars: vec![Container {
                name: "app".into(),
                ..Default::default()
            }],
            ..spec("hello:1")
        }),
        SpecError::DuplicateContainer("app".into())
    );
}

#[test]
fn name_must_be_a_dns_label_and_namespace_present() {
    let mut bad = app(spec("hello:1"));
    bad.metadata.name = Some("My.App".into());
    assert_eq!(
        desired(&bad, &ReferencedObjects::default()),
        Err(SpecError::InvalidName("My.App".into()))
    );
    let mut no_ns = app(spec("hello:1"));
    no_ns.metadata.namespace = None;
    assert_eq!(
        desired(&no_ns, &ReferencedObjects::default()),
        Err(SpecError::MissingNamespace)
    );
}

#[test]
fn template_hash_is_stable_and_tracks_the_template() {
    let a = build(http_spec());
    let b = build(http_spec());
    assert_eq!(a.template_hash, b.template_hash);
    assert_eq!(a.template_hash.len(), 16);
    let c = build(WasmAppSpec {
        image: "registry.example.com/hello:2.0".into(),
        ..http_spec()
    });
    assert_ne!(a.template_hash, c.template_hash);
}

#[test]
fn url_and_selector_helpers() {
    assert_eq!(
        service_url("hello", "web", "cluster.local"),
        "http://hello.web.svc.cluster.local"
    );
    assert_eq!(selector_string("hello"), "spore.dev/app=hello");
}
