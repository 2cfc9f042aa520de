//! `spore-bench kubelet` (issue 16): the pod bench's start and memory figures through a real
//! kubelet, so that users see what they will get. Side A runs Wasm pods on the `spore`
//! RuntimeClass, side B busybox pods on the node's default runtime (runc), taking turns, as
//! `spore-bench pod` does through the CRI alone.
//!
//! The cluster comes from a kubeconfig and must have one node, and the bench runs on that node:
//! it reads the kubelet's log files (a container's first line) and the pods' cgroups and the
//! shims in `/proc` (PSS). Container start inside a running pod is not measured here: a kubelet
//! restarts a container only after its crash back-off (10 s at first), so what a user would
//! time is the back-off.

mod manifest;
mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use k8s_openapi::api::node::v1::RuntimeClass;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};

use super::fixture::{machine_line, wasm_image};
use super::pod::{
    IDLE_MEMORY_LIMIT, IDLE_PORT, Memory, MemoryRows, SETTLE, answer_one_request, node_used_kib,
    print_memory, wait_first_line,
};
use super::pss::{pss_by_command_kib, total_pss_kib};
use super::stats::{Summary, Table, fmt_ms, millis, ratio};
use super::{BenchArgs, BenchError};
use crate::cluster::ClusterError;
use crate::cluster::poll::{self, Look};
use crate::image::busybox;
use manifest::{CONTAINER, SIDE_LABEL, Shape, Workload};

const NAMESPACE: &str = "spore-bench";
/// From a pod's creation to its first log line, and to its phase in the API.
const START_LIMIT: Duration = Duration::from_secs(120);
/// From a delete to the pod's object being gone (the kubelet has stopped it).
const GONE_LIMIT: Duration = Duration::from_secs(180);
/// For a thousand pods to be running with an IP, or to go.
const SERVE_LIMIT: Duration = Duration::from_secs(1800);
/// Container states that will not get better by waiting. Not `CreateContainerError`: a
/// thousand runc pods started at once on 2 cores make containerd's CreateContainer outlast the
/// kubelet's 2-minute request timeout, and the kubelet tries again.
const STUCK_REASONS: [&str; 4] = [
    "ErrImagePull",
    "ImagePullBackOff",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
];

/// What one side runs.
struct Side {
    tag: char,
    label: String,
    wasm: bool,
    echo: Workload,
    idle: Workload,
}

impl Side {
    /// `runtime_class` `runc` means the node's default runtime: no `runtimeClassName`.
    fn new(tag: char, runtime_class: &str, wasm_image: &str, busybox_image: &str) -> Side {
        let class = (runtime_class != "runc").then(|| runtime_class.to_owned());
        let wasm = runtime_class.starts_with(spore_format::RUNTIME_HANDLER);
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (image, echo, idle, what) = if wasm {
            (
                wasm_image,
                strings(&["/hello.wasm"]),
                strings(&["/hello-http.wasm"]),
                "Wasm examples/rust/hello, hello-http",
            )
        } else {
            (
                busybox_image,
                strings(&["/bin/echo", "hello"]),
                strings(&["/bin/busybox", "httpd", "-f", "-p", "8080"]),
                "busybox echo, httpd -f",
            )
        };
        let workload = |command| Workload {
            runtime_class: class.clone(),
            image: image.to_owned(),
            command,
        };
        Side {
            tag,
            label: format!(
                "{tag}: RuntimeClass `{}`, {what}",
                class.as_deref().unwrap_or("(none: the node's runc)")
            ),
            wasm,
            echo: workload(echo),
            idle: workload(idle),
        }
    }

    fn pod_name(&self, what: &str, i: impl std::fmt::Display) -> String {
        format!("{what}-{}-{i}", self.tag.to_ascii_lowercase())
    }
}

/// One pod's start, in ms from its creation.
#[derive(Clone, Copy, Debug)]
struct Latency {
    first_line: f64,
    /// Until the API shows the pod `Succeeded` (what `kubectl get` shows).
    api_succeeded: f64,
}

pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    let cluster = &args.cluster;
    let kubeconfig = cluster.kubeconfig.clone().ok_or_else(|| {
        BenchError::Usage("kubelet: set SPORE_E2E_KUBECONFIG or --kubeconfig".into())
    })?;
    let registry = cluster.registry.clone().ok_or_else(|| {
        BenchError::Usage(
            "kubelet: set SPORE_E2E_REGISTRY or --registry (a registry the node pulls from)".into(),
        )
    })?;
    let client = crate::cluster::connect(&kubeconfig).await?;
    let node = single_node(&client).await?;
    println!("## spore-bench kubelet\n");
    println!("machine: {}", machine_line());
    println!("node: {node}\n");

    let wasm_image = wasm_image()?.push_http(&registry, "spore/bench-wasm", "1")?;
    let busybox_image = busybox()?
        .build()?
        .push_http(&registry, "spore/bench-busybox", "1")?;
    let sides = [
        Side::new('A', &args.handler_a, &wasm_image, &busybox_image),
        Side::new('B', &args.handler_b, &wasm_image, &busybox_image),
    ];
    let classes: Api<RuntimeClass> = Api::all(client.clone());
    for side in &sides {
        if let Some(class) = &side.echo.runtime_class
            && classes.get_opt(class).await?.is_none()
        {
            return Err(BenchError::Cluster(format!(
                "RuntimeClass {class} does not exist: install Spore on the cluster first"
            )));
        }
    }
    ensure_namespace(&client).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);

    if !args.skip_latency {
        eprintln!(
            "latency: {} pods per side and shape after one warm-up, interleaved",
            args.n
        );
        // [with the token, without][side]
        let mut samples = [vec![Vec::new(); sides.len()], vec![Vec::new(); sides.len()]];
        for i in 0..=args.n {
            for (v, token) in [true, false].into_iter().enumerate() {
                let shape = Shape {
                    serving: false,
                    token,
                    memory_limit_mib: IDLE_MEMORY_LIMIT >> 20,
                };
                for (s, side) in sides.iter().enumerate() {
                    let name = side.pod_name(if token { "lat" } else { "lat-bare" }, i);
                    let sample = pod_latency(&pods, side, &name, shape, &cluster.pod_logs).await?;
                    if i > 0 {
                        samples[v][s].push(sample);
                    }
                }
            }
        }
        print_latency(
            args.n,
            "pods as users write them: the namespace's service account token mounted (a projected volume)",
            &sides,
            &samples[0],
        );
        print_latency(
            args.n,
            "pods without volumes (`automountServiceAccountToken: false`)",
            &sides,
            &samples[1],
        );
    }

    if !args.skip_memory {
        let mut rows = Vec::new();
        for side in &sides {
            eprintln!("memory: {}", side.label);
            let measured =
                pod_memory(&pods, side, &args.pod_counts, &cluster.containerd_socket).await;
            let deleted = delete_side(&pods, side).await;
            rows.push(MemoryRows {
                tag: side.tag,
                label: side.label.clone(),
                measured: measured?,
            });
            deleted?;
        }
        println!(
            "### Memory of idle pods through the kubelet: PSS of every process in the pods' cgroups, of their sandboxes' shims, and of Spore's fork server\n"
        );
        print_memory(&rows);
    }

    let namespaces: Api<Namespace> = Api::all(client);
    namespaces
        .delete(NAMESPACE, &DeleteParams::default())
        .await?;
    Ok(())
}

/// The one node's name, kubelet and runtime; the bench reads that node's files, so it needs
/// a cluster of one node and must run on it.
async fn single_node(client: &kube::Client) -> Result<String, BenchError> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&ListParams::default()).await?;
    let [node] = &list.items[..] else {
        return Err(BenchError::Cluster(format!(
            "the bench reads the node's files, so it needs a cluster of one node and runs on it; this one has {}",
            list.items.len()
        )));
    };
    let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
    Ok(format!(
        "{}, kubelet {}, {}",
        node.metadata.name.as_deref().unwrap_or("?"),
        info.map_or("?", |i| i.kubelet_version.as_str()),
        info.map_or("?", |i| i.container_runtime_version.as_str()),
    ))
}

/// Creates the bench's namespace (waiting out an earlier run's deletion) and waits for its
/// `default` ServiceAccount, which pods need before they are admitted.
async fn ensure_namespace(client: &kube::Client) -> Result<(), BenchError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let exists = poll::until(
        &format!("namespace {NAMESPACE} of an earlier run to go"),
        GONE_LIMIT,
        Duration::from_millis(500),
        || async {
            Ok(match namespaces.get_opt(NAMESPACE).await? {
                Some(ns) if ns.metadata.deletion_timestamp.is_some() => {
                    Look::NotYet("terminating".into())
                }
                found => Look::Done(found.is_some()),
            })
        },
    )
    .await?;
    if !exists {
        let ns: Namespace = serde_json::from_value(serde_json::json!({
            "metadata": {"name": NAMESPACE}
        }))
        .map_err(|e| BenchError::Cluster(e.to_string()))?;
        namespaces.create(&PostParams::default(), &ns).await?;
    }
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
    poll::until(
        &format!("the default ServiceAccount of {NAMESPACE}"),
        Duration::from_secs(60),
        Duration::from_millis(200),
        || async {
            Ok(match accounts.get_opt("default").await? {
                Some(_) => Look::Done(()),
                None => Look::NotYet("not made yet".into()),
            })
        },
    )
    .await?;
    Ok(())
}

/// Creates a pod of the side's echo workload and times its first log line (in the kubelet's
/// file) and its `Succeeded` phase (in the API); deletes it and waits for it to go.
async fn pod_latency(
    pods: &Api<Pod>,
    side: &Side,
    name: &str,
    shape: Shape,
    pod_logs: &Path,
) -> Result<Latency, BenchError> {
    let pod = manifest::pod(name, side.tag, &side.echo, shape)
        .map_err(|e| BenchError::Cluster(format!("pod {name}: {e}")))?;
    let t0 = Instant::now();
    let created = pods.create(&PostParams::default(), &pod).await?;
    let uid = created.metadata.uid.unwrap_or_default();
    let log = node::container_log(pod_logs, NAMESPACE, name, &uid, CONTAINER);
    let measured = async {
        wait_first_line(&log, START_LIMIT).await?;
        let first_line = millis(t0.elapsed());
        wait_for_phase(pods, name, "Succeeded").await?;
        Ok::<_, BenchError>(Latency {
            first_line,
            api_succeeded: millis(t0.elapsed()),
        })
    }
    .await;
    let measured = match measured {
        Ok(latency) => Ok(latency),
        Err(err) => Err(BenchError::Cluster(format!(
            "{err}; pod {name}: {}",
            describe(pods.get_opt(name).await.ok().flatten().as_ref())
        ))),
    };
    delete_and_wait(pods, name).await?;
    measured
}

async fn wait_for_phase(pods: &Api<Pod>, name: &str, phase: &str) -> Result<(), BenchError> {
    poll::until(
        &format!("pod {name} to be {phase}"),
        START_LIMIT,
        Duration::from_millis(10),
        || async {
            let pod = pods.get_opt(name).await?;
            let now = pod
                .as_ref()
                .and_then(|p| p.status.as_ref())
                .and_then(|s| s.phase.as_deref());
            Ok(if now == Some(phase) {
                Look::Done(())
            } else {
                Look::NotYet(format!("phase {}", now.unwrap_or("?")))
            })
        },
    )
    .await?;
    Ok(())
}

/// The pod's phase and its container's state, for a message.
fn describe(pod: Option<&Pod>) -> String {
    let Some(status) = pod.and_then(|p| p.status.as_ref()) else {
        return "gone".into();
    };
    let mut text = format!("phase {}", status.phase.as_deref().unwrap_or("?"));
    for container in status.container_statuses.iter().flatten() {
        if let Some(waiting) = container.state.as_ref().and_then(|s| s.waiting.as_ref()) {
            text.push_str(&format!(
                ", waiting: {} {}",
                waiting.reason.as_deref().unwrap_or(""),
                waiting.message.as_deref().unwrap_or("")
            ));
        }
        if let Some(done) = container.state.as_ref().and_then(|s| s.terminated.as_ref()) {
            text.push_str(&format!(
                ", exited {} {} {}",
                done.exit_code,
                done.reason.as_deref().unwrap_or(""),
                done.message.as_deref().unwrap_or("")
            ));
        }
    }
    text
}

/// A container state reason that waiting will not cure, if the pod has one.
fn stuck(pod: &Pod) -> Option<String> {
    let statuses = pod.status.as_ref()?.container_statuses.as_ref()?;
    statuses.iter().find_map(|c| {
        let reason = c.state.as_ref()?.waiting.as_ref()?.reason.as_deref()?;
        STUCK_REASONS.contains(&reason).then(|| describe(Some(pod)))
    })
}

async fn delete_and_wait(pods: &Api<Pod>, name: &str) -> Result<(), BenchError> {
    match pods.delete(name, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
        Err(err) => return Err(err.into()),
    }
    poll::until(
        &format!("pod {name} to go"),
        GONE_LIMIT,
        Duration::from_millis(50),
        || async {
            Ok(match pods.get_opt(name).await? {
                None => Look::Done(()),
                Some(pod) => Look::NotYet(describe(Some(&pod))),
            })
        },
    )
    .await?;
    Ok(())
}

fn side_selector(side: &Side) -> ListParams {
    ListParams::default().labels(&format!("{SIDE_LABEL}={}", side.tag))
}

/// Deletes every pod of the side and waits for them to go (a kubelet stops a thousand in
/// minutes).
async fn delete_side(pods: &Api<Pod>, side: &Side) -> Result<(), BenchError> {
    pods.delete_collection(&DeleteParams::default(), &side_selector(side))
        .await?;
    poll::until(
        &format!("the pods of side {} to go", side.tag),
        SERVE_LIMIT,
        Duration::from_millis(500),
        || async {
            Ok(match pods.list(&side_selector(side)).await?.items.len() {
                0 => Look::Done(()),
                left => Look::NotYet(format!("{left} left")),
            })
        },
    )
    .await?;
    Ok(())
}

/// Creates idle serving pods `names` of the side, waits until each runs with an IP and has
/// answered one GET; returns their UIDs.
async fn start_serving(
    pods: &Api<Pod>,
    side: &Side,
    names: &[String],
) -> Result<BTreeSet<String>, BenchError> {
    let mut uids = BTreeSet::new();
    for name in names {
        let shape = Shape {
            serving: true,
            token: true,
            memory_limit_mib: IDLE_MEMORY_LIMIT >> 20,
        };
        let pod = manifest::pod(name, side.tag, &side.idle, shape)
            .map_err(|e| BenchError::Cluster(format!("pod {name}: {e}")))?;
        let created = pods.create(&PostParams::default(), &pod).await?;
        uids.insert(created.metadata.uid.unwrap_or_default());
    }
    let wanted: BTreeSet<&str> = names.iter().map(String::as_str).collect();
    let ips: BTreeMap<String, String> = poll::until(
        &format!("{} pods of side {} to run", wanted.len(), side.tag),
        SERVE_LIMIT,
        Duration::from_millis(500),
        || async {
            let list = pods.list(&side_selector(side)).await?;
            let mut ips = BTreeMap::new();
            for pod in &list.items {
                let name = pod.metadata.name.clone().unwrap_or_default();
                if !wanted.contains(name.as_str()) {
                    continue;
                }
                if let Some(why) = stuck(pod) {
                    return Err(ClusterError::Check(format!("pod {name}: {why}")));
                }
                let status = pod.status.as_ref();
                let running = status.and_then(|s| s.phase.as_deref()) == Some("Running");
                if let Some(ip) = status.and_then(|s| s.pod_ip.clone()).filter(|_| running) {
                    ips.insert(name, ip);
                }
            }
            Ok(if ips.len() == wanted.len() {
                Look::Done(ips)
            } else {
                Look::NotYet(format!("{} running", ips.len()))
            })
        },
    )
    .await?;
    for ip in ips.values() {
        answer_one_request(&format!("http://{ip}:{IDLE_PORT}/"), side.wasm).await?;
    }
    Ok(uids)
}

async fn pod_memory(
    pods: &Api<Pod>,
    side: &Side,
    counts: &[usize],
    socket: &Path,
) -> Result<Vec<Memory>, BenchError> {
    // One pod first, unmeasured, as in the CRI bench: the idle guest's compile is not a pod's.
    let warm = side.pod_name("mem", "warm");
    start_serving(pods, side, std::slice::from_ref(&warm)).await?;
    delete_and_wait(pods, &warm).await?;
    let (base_kib, _) = total_pss_kib(&node::shims(socket, &BTreeSet::new()));
    let node_base = node_used_kib();
    let hierarchies: Vec<PathBuf> = crate::cgroup::hierarchies();
    let mut uids = BTreeSet::new();
    let mut measured = Vec::new();
    for &count in counts {
        let started = Instant::now();
        let names: Vec<String> = (uids.len()..count)
            .map(|i| side.pod_name("mem", i))
            .collect();
        uids.extend(start_serving(pods, side, &names).await?);
        let start_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(SETTLE).await;
        let cgroups = node::pod_cgroups(&hierarchies, &uids);
        if cgroups.len() < uids.len() {
            return Err(BenchError::Cluster(format!(
                "the cgroups of {} of {} pods are not on this machine: run the bench on the node",
                uids.len() - cgroups.len(),
                uids.len()
            )));
        }
        let dirs: Vec<PathBuf> = cgroups.values().flatten().cloned().collect();
        let mut pids = node::shims(socket, &node::child_names(&dirs));
        for dir in &dirs {
            pids.extend(node::processes_under(dir));
        }
        let (total_kib, processes) = total_pss_kib(&pids);
        eprintln!(
            "  {count} pods: {processes} processes, {:.1} MiB PSS, started and answering in {start_secs:.1} s",
            total_kib as f64 / 1024.0
        );
        measured.push(Memory {
            pods: count,
            processes,
            total_kib,
            base_kib,
            containerd_growth_kib: None,
            by_command: pss_by_command_kib(&pids).into_iter().collect(),
            start_secs,
            node_growth_kib: node_used_kib() - node_base,
        });
    }
    Ok(measured)
}

fn print_latency(n: usize, pods: &str, sides: &[Side], samples: &[Vec<Latency>]) {
    println!(
        "### Pod start through the kubelet, {pods}: pod created → the container's first line in the kubelet's log file, and → `Succeeded` in the API (ms, N={n} each, interleaved, one warm-up discarded)\n"
    );
    let mut table = Table::new([
        "pod",
        "first line: median",
        "p10",
        "p90",
        "API shows Succeeded: median",
    ]);
    let summary = |s: usize, f: fn(&Latency) -> f64| {
        Summary::of(&samples[s].iter().map(f).collect::<Vec<_>>())
    };
    let first = |l: &Latency| l.first_line;
    let api = |l: &Latency| l.api_succeeded;
    for (s, side) in sides.iter().enumerate() {
        let (Some(line), Some(api)) = (summary(s, first), summary(s, api)) else {
            continue;
        };
        table.row([
            side.label.clone(),
            fmt_ms(line.median),
            fmt_ms(line.p10),
            fmt_ms(line.p90),
            fmt_ms(api.median),
        ]);
    }
    if let (Some(a), Some(b), Some(a_api), Some(b_api)) = (
        summary(0, first),
        summary(1, first),
        summary(0, api),
        summary(1, api),
    ) {
        table.row([
            "ratio A / B".to_owned(),
            ratio(a.median, b.median),
            ratio(a.p10, b.p10),
            ratio(a.p90, b.p90),
            ratio(a_api.median, b_api.median),
        ]);
    }
    println!("{}", table.render());
}
