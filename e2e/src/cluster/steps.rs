//! The suite's steps, in the order a user meets them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::api::{
    DeleteParams, DynamicObject, ListParams, LogParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{ApiResource, Discovery};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::apply::{self, Manifest};
use super::helm::{Helm, Release};
use super::node_probe::{self, Mount};
use super::poll::{self, Look};
use super::{ClusterError, Steps, SuiteConfig};

const SHIM_LABEL: &str = "spore.dev/shim";
const SHIM: &str = "/opt/spore/bin/containerd-shim-spore-v1";
const BUSYBOX_TAG: &str = "1.36";
const SECOND: Duration = Duration::from_secs(1);

/// What a WasmApp of `examples/apps/` should come to.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Ready,
    /// A command: its container exits 0 and logs this.
    Completes {
        logs: &'static str,
    },
    Degraded {
        reason: &'static str,
    },
}

fn expected(name: &str) -> Expected {
    match name {
        "broken-app" => Expected::Degraded {
            reason: "MissingReference",
        },
        "hello-cli" => Expected::Completes {
            logs: "hello from Wasm",
        },
        "hello-js" | "hello-python" => Expected::Completes {
            logs: "Hello, Kubernetes",
        },
        _ => Expected::Ready,
    }
}

/// What an HTTP app answers on `/`, where the example says (empty: any non-empty body).
fn expected_body(name: &str) -> &'static str {
    match name {
        "hello-http-js" | "hello-http-python" => "Hello, Kubernetes",
        _ => "",
    }
}

fn wasmapps_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("spore.dev", "v1alpha1", "WasmApp"),
        "wasmapps",
    )
}

/// Runs the whole suite; returns the table of steps and times.
pub async fn run(config: SuiteConfig) -> Result<String, ClusterError> {
    let mut steps = Steps::default();
    let result = run_steps(&config, &mut steps).await;
    let summary = steps.summary();
    match result {
        Ok(()) => Ok(summary),
        Err(err) => {
            if let Ok(client) = super::connect(&config.kubeconfig).await {
                for namespace in [config.namespace.as_str(), config.apps_namespace.as_str()] {
                    diagnose(&client, namespace).await;
                }
            }
            println!("{summary}");
            Err(err)
        }
    }
}

/// What a user would look at after a failure: each pod's state and the latest warnings.
async fn diagnose(client: &kube::Client, namespace: &str) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = pods.list(&ListParams::default()).await {
        for pod in list.items {
            let status = pod.status.clone().unwrap_or_default();
            println!(
                "e2e: diagnose: pod {namespace}/{} {}: {}",
                pod.name_any(),
                status.phase.clone().unwrap_or_default(),
                node_probe::containers(&status)
            );
        }
    }
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), namespace);
    if let Ok(list) = events.list(&ListParams::default()).await {
        let warnings: Vec<_> = list
            .items
            .iter()
            .filter(|e| e.type_.as_deref() == Some("Warning"))
            .collect();
        for event in warnings.iter().rev().take(10).rev() {
            println!(
                "e2e: diagnose: event {namespace} {} {}: {}",
                event.involved_object.name.clone().unwrap_or_default(),
                event.reason.clone().unwrap_or_default(),
                event.message.clone().unwrap_or_default()
            );
        }
    }
}

async fn run_steps(config: &SuiteConfig, steps: &mut Steps) -> Result<(), ClusterError> {
    let client = super::connect(&config.kubeconfig).await?;
    let busybox = format!("{}/busybox:{BUSYBOX_TAG}", config.registry);
    let helm = Helm::find(&config.repo_root)?;
    println!("e2e: {}", helm.describe());
    let release = Release {
        helm: &helm,
        kubeconfig: &config.kubeconfig,
        namespace: &config.namespace,
        name: &config.release,
    };
    let work = tempfile::tempdir().map_err(|source| ClusterError::Io {
        what: "creating",
        path: PathBuf::from("a temporary directory"),
        source,
    })?;

    let nodes = steps
        .run("the cluster answers and has nodes without Spore", async {
            let version = client.apiserver_version().await?;
            let nodes: Api<Node> = Api::all(client.clone());
            let list = nodes.list(&ListParams::default()).await?;
            let names: Vec<String> = list.items.iter().map(|n| n.name_any()).collect();
            if names.is_empty() {
                return Err(ClusterError::Check("the cluster has no nodes".into()));
            }
            if let Some(node) = list
                .items
                .iter()
                .find(|n| n.labels().contains_key(SHIM_LABEL))
            {
                return Err(ClusterError::Check(format!(
                    "node {} already carries {SHIM_LABEL}: Spore is installed; uninstall it first",
                    node.name_any()
                )));
            }
            println!(
                "e2e:      Kubernetes {}, nodes {names:?}",
                version.git_version
            );
            Ok(names)
        })
        .await?;

    steps
        .run(
            "push busybox (the probes' and the sidecar's image)",
            async {
                let layout = crate::image::busybox()?
                    .build()?
                    .write_layout(&work.path().join("busybox"), BUSYBOX_TAG)?;
                let (host, prefix) = match config.registry.split_once('/') {
                    Some((host, prefix)) => (host.to_owned(), format!("{prefix}/")),
                    None => (config.registry.clone(), String::new()),
                };
                layout.push_with_skopeo(&host, &format!("{prefix}busybox"), BUSYBOX_TAG)?;
                Ok(())
            },
        )
        .await?;

    let apps_ns = config.apps_namespace.as_str();
    ensure_namespace(&client, apps_ns).await?;

    let before = steps
        .run("read each node's containerd config before install", async {
            let mut before = BTreeMap::new();
            for node in &nodes {
                let state = node_state(&client, apps_ns, node, &busybox, config).await?;
                if state.shim {
                    return Err(ClusterError::Check(format!(
                        "{node} already has {SHIM}: Spore was not uninstalled"
                    )));
                }
                println!(
                    "e2e:      {node}: {} sha256 {}",
                    config.containerd_config, state.config_sha
                );
                before.insert(node.clone(), state.config_sha);
            }
            Ok(before)
        })
        .await?;

    let images = work.path().join("images.yaml");
    std::fs::write(
        &images,
        serde_json::to_string(&json!({
            "operator": {"image": {"repository": format!("{}/spore-operator", config.registry),
                                   "tag": config.tag, "pullPolicy": "IfNotPresent"}},
            "nodeInstaller": {"image": {"repository": format!("{}/spore-node-installer", config.registry),
                                        "tag": config.tag, "pullPolicy": "IfNotPresent"}}
        }))
        .unwrap_or_default(),
    )
    .map_err(|source| ClusterError::Io {
        what: "writing",
        path: images.clone(),
        source,
    })?;
    let mut values = vec![images];
    values.extend(config.values_files.iter().cloned());
    let chart = config.repo_root.join("charts/spore");

    steps
        .run(
            "helm install (waits for the operator and the node installer)",
            async {
                let out = release.install(&chart, &values, Duration::from_secs(300))?;
                println!("e2e:      {out}");
                Ok(())
            },
        )
        .await?;

    steps
        .run(
            "the installer patched containerd and labelled every node",
            async {
                let nodes_api: Api<Node> = Api::all(client.clone());
                poll::until(
                    "every node labelled spore.dev/shim=ready",
                    Duration::from_secs(180),
                    2 * SECOND,
                    || async {
                        let ready = nodes_api
                            .list(&ListParams::default().labels(&format!("{SHIM_LABEL}=ready")))
                            .await?
                            .items
                            .len();
                        Ok(if ready == nodes.len() {
                            Look::Done(())
                        } else {
                            Look::NotYet(format!("{ready} of {} nodes labelled", nodes.len()))
                        })
                    },
                )
                .await?;
                for node in &nodes {
                    let state = node_state(&client, apps_ns, node, &busybox, config).await?;
                    if !state.shim || !state.runtime_registered {
                        return Err(ClusterError::Check(format!(
                            "{node}: shim present {}, spore runtime in {} {}",
                            state.shim, config.containerd_config, state.runtime_registered
                        )));
                    }
                }
                Ok(())
            },
        )
        .await?;

    steps
        .run("the spore RuntimeClass selects the labelled nodes", async {
            let classes: Api<RuntimeClass> = Api::all(client.clone());
            let class = classes.get("spore").await?;
            let selector = class
                .scheduling
                .and_then(|s| s.node_selector)
                .unwrap_or_default();
            if class.handler != "spore"
                || selector.get(SHIM_LABEL).map(String::as_str) != Some("ready")
            {
                return Err(ClusterError::Check(format!(
                    "RuntimeClass spore has handler {:?} and node selector {selector:?}",
                    class.handler
                )));
            }
            Ok(())
        })
        .await?;

    let manifests = steps
        .run("apply every manifest of examples/apps", async {
            let mut manifests =
                apply::read_dir(&config.repo_root.join("examples/apps"), &config.registry)?;
            for manifest in &mut manifests {
                apply::pin_images(manifest, &config.registry)?;
            }
            let discovery = Discovery::new(client.clone()).run().await?;
            for manifest in &manifests {
                apply::apply(&client, &discovery, apps_ns, manifest).await?;
            }
            println!("e2e:      {} objects applied", manifests.len());
            Ok(manifests)
        })
        .await?;
    let wasmapps: Vec<&Manifest> = manifests.iter().filter(|m| m.kind() == "WasmApp").collect();

    for app in &wasmapps {
        let name = app.object.name_any();
        let want = expected(&name);
        steps
            .run(
                &format!("{name} reaches {want:?}"),
                reach(&client, apps_ns, &name, &want),
            )
            .await?;
    }

    for app in wasmapps
        .iter()
        .filter(|m| !m.object.data["spec"]["http"].is_null())
    {
        let name = app.object.name_any();
        if expected(&name) != Expected::Ready {
            continue;
        }
        steps
            .run(&format!("{name} answers through its Service from an ordinary pod"), async {
                let services: Api<Service> = Api::namespaced(client.clone(), apps_ns);
                let service = services.get(&name).await?;
                let spec = service.spec.unwrap_or_default();
                let ip = spec.cluster_ip.unwrap_or_default();
                let port = spec.ports.unwrap_or_default().first().map(|p| p.port).unwrap_or(80);
                ready_endpoints(&client, apps_ns, &name).await?;
                // busybox's nc, not its wget: Debian's static busybox 1.35 wget segfaults. nc
                // closes the connection when its input ends, so the input stays open until the
                // server has answered (and closed: HTTP/1.0). The
                // Service answers once kube-proxy has programmed it, a moment after its
                // endpoints are ready: the pod asks once a second for 60 s and prints the answer
                // it stopped at.
                let request = format!("GET / HTTP/1.0\\r\\nHost: {name}\\r\\n\\r\\n");
                let script = format!(
                    "for i in $(seq 60); do out=$( (printf '{request}'; sleep 2) | nc -w 5 {ip} {port}); \
                     case \"$out\" in 'HTTP/1.'?' 200 '*) printf '%s' \"$out\"; exit 0 ;; esac; \
                     sleep 1; done; printf 'no 200 in 60 tries; the last answer: %s' \"$out\"; exit 1"
                );
                let node = &nodes[0];
                let answer = node_probe::run(&client, apps_ns, node, &busybox, &format!("http-{name}"), &script, Mount::Nothing).await?;
                // the log API gives lines, so the answer's CRLFs come back as LFs
                let answer = answer.replace("\r\n", "\n");
                let (head, body) = answer.split_once("\n\n").unwrap_or((answer.as_str(), ""));
                let status = head.lines().next().unwrap_or_default();
                let want = expected_body(&name);
                if !status.contains(" 200 ") || body.trim().is_empty() || !body.contains(want) {
                    return Err(ClusterError::Check(format!(
                        "{name} at {ip}:{port} answered {answer:?}, expected 200 and {want:?}"
                    )));
                }
                println!("e2e:      {ip}:{port} said {:?}", body.trim().chars().take(60).collect::<String>());
                Ok(())
            })
            .await?;
    }

    steps
        .run(
            "kubectl logs: the command app's log holds its greeting",
            async {
                let pods: Api<Pod> = Api::namespaced(client.clone(), apps_ns);
                let list = pods
                    .list(&ListParams::default().labels("spore.dev/app=hello-cli"))
                    .await?;
                let pod = list
                    .items
                    .first()
                    .ok_or_else(|| ClusterError::Check("hello-cli has no pod".into()))?;
                let name = pod.name_any();
                let text = logs_now_and_before(&pods, &name).await;
                if !text.contains("hello from Wasm") {
                    return Err(ClusterError::Check(format!(
                        "{name}'s log lacks its greeting: {text:?}"
                    )));
                }
                Ok(())
            },
        )
        .await?;

    steps
        .run(
            "kubectl scale wa hello-http-js --replicas=2 (the scale subresource)",
            scale(&client, apps_ns, "hello-http-js", 2),
        )
        .await?;
    steps
        .run(
            "kubectl scale wa hello-http-js --replicas=1",
            scale(&client, apps_ns, "hello-http-js", 1),
        )
        .await?;

    steps
        .run(
            "the autoscaled app has its HPA, able to scale, at its minimum",
            async {
                let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), apps_ns);
                poll::until(
                    "hello-http's HPA AbleToScale=True",
                    Duration::from_secs(120),
                    2 * SECOND,
                    || async {
                        let Some(hpa) = hpas.get_opt("hello-http").await? else {
                            return Ok(Look::NotYet("no HPA hello-http".into()));
                        };
                        let spec = hpa.spec.clone().unwrap_or_default();
                        if spec.scale_target_ref.kind != "Deployment"
                            || spec.scale_target_ref.name != "hello-http"
                        {
                            return Err(ClusterError::Check(format!(
                                "HPA targets {:?}",
                                spec.scale_target_ref
                            )));
                        }
                        let able = hpa
                            .status
                            .and_then(|s| s.conditions)
                            .unwrap_or_default()
                            .into_iter()
                            .find(|c| c.type_ == "AbleToScale");
                        Ok(match able {
                            Some(c) if c.status == "True" => Look::Done(()),
                            other => Look::NotYet(format!("AbleToScale {other:?}")),
                        })
                    },
                )
                .await?;
                let deployments: Api<Deployment> = Api::namespaced(client.clone(), apps_ns);
                let ready = deployments
                    .get("hello-http")
                    .await?
                    .status
                    .and_then(|s| s.ready_replicas)
                    .unwrap_or(0);
                if ready < 2 {
                    return Err(ClusterError::Check(format!(
                        "hello-http has {ready} ready replicas, its minimum is 2"
                    )));
                }
                Ok(())
            },
        )
        .await?;

    steps
        .run(
            "helm upgrade with changed values rolls the operator",
            async {
                let pods: Api<Pod> = Api::namespaced(client.clone(), &config.namespace);
                let selector = format!(
                    "app.kubernetes.io/instance={},app.kubernetes.io/component=operator",
                    config.release
                );
                let old: Vec<String> = pods
                    .list(&ListParams::default().labels(&selector))
                    .await?
                    .items
                    .iter()
                    .map(|p| p.name_any())
                    .collect();
                let changed = work.path().join("upgrade.yaml");
                std::fs::write(&changed, "operator:\n  logLevel: debug\n").map_err(|source| {
                    ClusterError::Io {
                        what: "writing",
                        path: changed.clone(),
                        source,
                    }
                })?;
                let mut upgraded = values.clone();
                upgraded.push(changed);
                let out = release.upgrade(&chart, &upgraded, Duration::from_secs(300))?;
                println!("e2e:      {out}");
                poll::until(
                    "new operator pods, ready, the old ones gone",
                    Duration::from_secs(180),
                    2 * SECOND,
                    || async {
                        let now = pods
                            .list(&ListParams::default().labels(&selector))
                            .await?
                            .items;
                        let fresh = now
                            .iter()
                            .filter(|p| !old.contains(&p.name_any()) && pod_ready(p))
                            .count();
                        let stale = now.iter().filter(|p| old.contains(&p.name_any())).count();
                        Ok(if fresh > 0 && stale == 0 {
                            Look::Done(())
                        } else {
                            Look::NotYet(format!("{fresh} new ready, {stale} old left"))
                        })
                    },
                )
                .await?;
                Ok(())
            },
        )
        .await?;
    // The apps keep running across an operator roll.
    steps
        .run(
            "hello-http is still Ready after the operator's roll",
            reach(&client, apps_ns, "hello-http", &Expected::Ready),
        )
        .await?;

    steps
        .run("delete the apps (kubectl delete namespace)", async {
            let namespaces: Api<Namespace> = Api::all(client.clone());
            namespaces.delete(apps_ns, &DeleteParams::default()).await?;
            poll::until(
                "the apps namespace to go",
                Duration::from_secs(180),
                2 * SECOND,
                || async {
                    Ok(match namespaces.get_opt(apps_ns).await? {
                        None => Look::Done(()),
                        Some(ns) => Look::NotYet(format!("{:?}", ns.status.and_then(|s| s.phase))),
                    })
                },
            )
            .await
        })
        .await?;

    steps
        .run(
            "helm uninstall (the pre-delete hook restores every node)",
            async {
                let out = release.uninstall(Duration::from_secs(600))?;
                println!("e2e:      {out}");
                Ok(())
            },
        )
        .await?;

    steps
        .run(
            "every node has its containerd config back, no shim, no label",
            async {
                ensure_namespace(&client, apps_ns).await?;
                let nodes_api: Api<Node> = Api::all(client.clone());
                for node in &nodes {
                    if nodes_api.get(node).await?.labels().contains_key(SHIM_LABEL) {
                        return Err(ClusterError::Check(format!(
                            "{node} still carries {SHIM_LABEL}"
                        )));
                    }
                    let state = node_state(&client, apps_ns, node, &busybox, config).await?;
                    if state.shim {
                        return Err(ClusterError::Check(format!("{node} still has {SHIM}")));
                    }
                    let was = before.get(node).map(String::as_str).unwrap_or_default();
                    if state.config_sha != was {
                        return Err(ClusterError::Check(format!(
                            "{node}'s {} is {} after uninstall, was {was}",
                            config.containerd_config, state.config_sha
                        )));
                    }
                }
                let namespaces: Api<Namespace> = Api::all(client.clone());
                namespaces.delete(apps_ns, &DeleteParams::default()).await?;
                Ok(())
            },
        )
        .await?;

    steps
        .run(
            "no object of the release is left",
            leftovers(&client, config),
        )
        .await?;
    Ok(())
}

async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), ClusterError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    poll::until(
        &format!("namespace {name} to be usable"),
        Duration::from_secs(180),
        SECOND,
        || async {
            Ok(match namespaces.get_opt(name).await? {
                Some(ns) if ns.metadata.deletion_timestamp.is_none() => Look::Done(()),
                Some(_) => Look::NotYet("terminating".into()),
                None => {
                    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}}))
                        .map_err(|e| ClusterError::Check(e.to_string()))?;
                    namespaces.create(&PostParams::default(), &ns).await?;
                    Look::Done(())
                }
            })
        },
    )
    .await
}

struct NodeState {
    config_sha: String,
    shim: bool,
    runtime_registered: bool,
}

async fn node_state(
    client: &kube::Client,
    namespace: &str,
    node: &str,
    busybox: &str,
    config: &SuiteConfig,
) -> Result<NodeState, ClusterError> {
    let file = format!("/host{}", config.containerd_config);
    let script = format!(
        "if [ -f {file} ]; then sha256sum {file} | cut -d' ' -f1; else echo absent; fi; \
         if [ -e /host{SHIM} ]; then echo shim; else echo no-shim; fi; \
         if grep -q io.containerd.spore.v1 {file} 2>/dev/null; then echo runtime; else echo no-runtime; fi"
    );
    let out = node_probe::run(
        client,
        namespace,
        node,
        busybox,
        "spore-e2e-node-probe",
        &script,
        Mount::HostRoot,
    )
    .await?;
    let lines: Vec<&str> = out.lines().collect();
    let [sha, shim, runtime] = lines[..] else {
        return Err(ClusterError::Check(format!(
            "node probe on {node} printed {out:?}"
        )));
    };
    Ok(NodeState {
        config_sha: sha.to_owned(),
        shim: shim == "shim",
        runtime_registered: runtime == "runtime",
    })
}

/// Waits until the Service `name` has a ready endpoint (its EndpointSlices).
async fn ready_endpoints(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<(), ClusterError> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), namespace);
    let selector = format!("kubernetes.io/service-name={name}");
    poll::until(
        &format!("a ready endpoint behind Service {name}"),
        Duration::from_secs(120),
        SECOND,
        || async {
            let ready = slices
                .list(&ListParams::default().labels(&selector))
                .await?
                .items
                .iter()
                .flat_map(|slice| slice.endpoints.iter())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(false))
                .count();
            Ok(if ready > 0 {
                Look::Done(())
            } else {
                Look::NotYet("no ready endpoint".into())
            })
        },
    )
    .await
}

/// What `kubectl logs` and `kubectl logs --previous` show of `pod`, one after the other (a
/// restarted command's output may be in either; a missing one reads as empty).
async fn logs_now_and_before(pods: &Api<Pod>, pod: &str) -> String {
    let now = pods
        .logs(pod, &LogParams::default())
        .await
        .unwrap_or_default();
    let previous = pods
        .logs(
            pod,
            &LogParams {
                previous: true,
                ..LogParams::default()
            },
        )
        .await
        .unwrap_or_default();
    format!("{now}\n{previous}")
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn condition<'a>(app: &'a DynamicObject, type_: &str) -> Option<&'a serde_json::Value> {
    app.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

async fn reach(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    want: &Expected,
) -> Result<(), ClusterError> {
    let apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &wasmapps_resource());
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    // The interpreters' components compile for several seconds on a first pod.
    poll::until(
        &format!("{name} to reach {want:?}"),
        Duration::from_secs(300),
        2 * SECOND,
        || async {
            let app = apps.get(name).await?;
            let show = |c: Option<&serde_json::Value>| {
                c.map(|c| format!("{} {} {}", c["status"], c["reason"], c["message"]))
                    .unwrap_or_else(|| "none".into())
            };
            Ok(match want {
                Expected::Ready => match condition(&app, "Ready") {
                    Some(c) if c["status"] == "True" => Look::Done(()),
                    c => Look::NotYet(format!("Ready: {}", show(c))),
                },
                Expected::Degraded { reason } => match condition(&app, "Degraded") {
                    Some(c) if c["status"] == "True" && c["reason"] == *reason => Look::Done(()),
                    c => Look::NotYet(format!("Degraded: {}", show(c))),
                },
                Expected::Completes { logs } => {
                    let list = pods
                        .list(&ListParams::default().labels(&format!("spore.dev/app={name}")))
                        .await?;
                    let exited_zero = list.items.iter().find(|pod| {
                        pod.status
                            .as_ref()
                            .and_then(|s| s.container_statuses.as_ref())
                            .is_some_and(|cs| {
                                cs.iter().any(|c| {
                                    let now = c.state.as_ref().and_then(|s| s.terminated.as_ref());
                                    let last =
                                        c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
                                    now.or(last).is_some_and(|t| t.exit_code == 0)
                                })
                            })
                    });
                    match exited_zero {
                        Some(pod) => {
                            let pod_name = pod.name_any();
                            let text = logs_now_and_before(&pods, &pod_name).await;
                            if text.contains(logs) {
                                Look::Done(())
                            } else {
                                Look::NotYet(format!("{pod_name} exited 0, log {text:?}"))
                            }
                        }
                        None => {
                            Look::NotYet(format!("{} pods, none exited 0 yet", list.items.len()))
                        }
                    }
                }
            })
        },
    )
    .await
}

async fn scale(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    replicas: i32,
) -> Result<(), ClusterError> {
    let apps: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &wasmapps_resource());
    // what `kubectl scale wa NAME --replicas=N` sends
    apps.patch_scale(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    poll::until(
        &format!("{name} at {replicas} ready replicas"),
        Duration::from_secs(180),
        2 * SECOND,
        || async {
            let deployment = deployments.get(name).await?;
            let wanted = deployment
                .spec
                .as_ref()
                .and_then(|s| s.replicas)
                .unwrap_or(1);
            let status = deployment.status.unwrap_or_default();
            let scale = apps.get_scale(name).await?;
            let seen = scale.status.map(|s| s.replicas).unwrap_or(-1);
            Ok(
                if wanted == replicas
                    && status.ready_replicas.unwrap_or(0) == replicas
                    && status.replicas.unwrap_or(0) == replicas
                    && seen == replicas
                {
                    Look::Done(())
                } else {
                    Look::NotYet(format!(
                        "deployment wants {wanted}, {} ready of {}; WasmApp scale status {seen}",
                        status.ready_replicas.unwrap_or(0),
                        status.replicas.unwrap_or(0)
                    ))
                },
            )
        },
    )
    .await
}

/// Lists every kind the chart creates, by the release's instance label.
async fn leftovers(client: &kube::Client, config: &SuiteConfig) -> Result<(), ClusterError> {
    let selector = format!("app.kubernetes.io/instance={}", config.release);
    let discovery = Discovery::new(client.clone()).run().await?;
    let kinds = [
        ("", "v1", "Pod"),
        ("", "v1", "Service"),
        ("", "v1", "ServiceAccount"),
        ("", "v1", "ConfigMap"),
        ("apps", "v1", "Deployment"),
        ("apps", "v1", "DaemonSet"),
        ("batch", "v1", "Job"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        ("node.k8s.io", "v1", "RuntimeClass"),
        ("coordination.k8s.io", "v1", "Lease"),
    ];
    poll::until(
        "the release's objects to be gone",
        Duration::from_secs(120),
        2 * SECOND,
        || async {
            let mut left = Vec::new();
            for (group, version, kind) in kinds {
                let gvk = kube::api::GroupVersionKind::gvk(group, version, kind);
                let Some((resource, _)) = discovery.resolve_gvk(&gvk) else {
                    continue;
                };
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                for object in api
                    .list(&ListParams::default().labels(&selector))
                    .await?
                    .items
                {
                    left.push(format!(
                        "{kind} {}/{}",
                        object.namespace().unwrap_or_default(),
                        object.name_any()
                    ));
                }
            }
            Ok(if left.is_empty() {
                Look::Done(())
            } else {
                Look::NotYet(left.join(", "))
            })
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_app_has_an_expectation_that_names_a_state() {
        let dir = crate::tools::repo_root().join("examples/apps");
        let manifests = apply::read_dir(&dir, "r.test").expect("examples");
        let apps: Vec<String> = manifests
            .iter()
            .filter(|m| m.kind() == "WasmApp")
            .map(|m| m.object.name_any())
            .collect();
        assert!(apps.contains(&"broken-app".to_owned()), "{apps:?}");
        assert!(
            apps.contains(&"hello-http-js".to_owned()),
            "the scale step uses hello-http-js: {apps:?}"
        );
        assert!(
            apps.contains(&"hello-http".to_owned()),
            "the HPA step uses hello-http: {apps:?}"
        );
        assert_eq!(
            expected("broken-app"),
            Expected::Degraded {
                reason: "MissingReference"
            }
        );
    }
}
