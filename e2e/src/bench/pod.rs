//! `spore-bench pod` (issues 3 and 16): time from RunPodSandbox to a container's first log
//! line, and the PSS each additional idle pod adds, for CRI runtime handlers on one containerd,
//! taking turns. Side A is `spore`, side B `runc` and side C `spore-runc-sandbox` (Spore with
//! runc running the sandbox) unless `--handler-a/-b/-c` say otherwise; every side is compared
//! with B. A Spore side runs Wasm guests, any other handler busybox.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use super::fixture::{Fixture, machine_line};
use super::pss::{pod_processes, process_pss_kib, pss_by_command_kib, total_pss_kib};
use super::stats::{Summary, Table, fmt_ms, millis, ratio};
use super::{BenchArgs, BenchError};
use crate::cri_log::read_cri_log;
use crate::pod::QosClass;
use crate::{ContainerSpec, Containerd, CriClient, Pod, PodSpec};

const POD_NAMESPACE: &str = "default";
const LOG_LIMIT: Duration = Duration::from_secs(60);
/// How long pods sit idle before their memory is read.
pub(super) const SETTLE: Duration = Duration::from_secs(10);

/// What one side runs.
#[derive(Clone, Debug)]
struct Side {
    tag: char,
    handler: String,
    /// A container that prints one line and exits (the latency test).
    echo: Vec<String>,
    echo_label: &'static str,
    /// An HTTP server on port 8080 that stays up idle (the memory test); each answers one
    /// request before its memory is read.
    idle: Vec<String>,
    idle_label: &'static str,
    image: String,
}

impl Side {
    fn new(tag: char, handler: &str, fixture: &Fixture) -> Side {
        let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        if is_spore(handler) {
            Side {
                tag,
                handler: handler.into(),
                echo: strings(&["/hello.wasm"]),
                echo_label: "Wasm examples/rust/hello",
                idle: strings(&["/hello-http.wasm"]),
                idle_label: "Wasm hello-http (idle wasi:http server)",
                image: fixture.wasm_image.clone(),
            }
        } else {
            Side {
                tag,
                handler: handler.into(),
                echo: strings(&["/bin/echo", "hello"]),
                echo_label: "busybox echo",
                idle: strings(&["/bin/busybox", "httpd", "-f", "-p", "8080"]),
                idle_label: "busybox httpd -f",
                image: fixture.busybox_image.clone(),
            }
        }
    }

    fn label(&self, workload: &str) -> String {
        format!("{}: handler `{}`, {workload}", self.tag, self.handler)
    }
}

/// Whether `handler` runs Spore's shim (the suite's containerd has two such handlers).
fn is_spore(handler: &str) -> bool {
    handler == spore_format::RUNTIME_HANDLER || handler == crate::config::SPORE_RUNC_SANDBOX_HANDLER
}

/// One pod's start, in milliseconds from the moment RunPodSandbox was sent.
#[derive(Clone, Copy, Debug)]
struct Latency {
    sandbox: f64,
    create: f64,
    start: f64,
    first_line: f64,
    total: f64,
}

/// The memory of the pods of one side at one count.
#[derive(Clone, Debug)]
pub(super) struct Memory {
    pub pods: usize,
    pub processes: usize,
    pub total_kib: u64,
    pub base_kib: u64,
    /// `None` where the bench does not know containerd's process (on a cluster's node).
    pub containerd_growth_kib: Option<i64>,
    /// PSS by process name, e.g. the shims apart from pause and the containers.
    pub by_command: Vec<(String, u64)>,
    /// Seconds from the first RunPodSandbox of this row's pods until the last of them answered
    /// its request.
    pub start_secs: f64,
    /// The node's memory in use (`MemTotal - MemAvailable`) above what it was before the first
    /// pod, in KiB: page cache, kernel objects (network devices, namespaces, cgroups) and
    /// containerd included.
    pub node_growth_kib: i64,
}

/// Memory limit of each idle pod's container and of the pod, as the kubelet sets them from a pod
/// spec's `resources.limits.memory`.
pub(super) const IDLE_MEMORY_LIMIT: i64 = 64 << 20;

pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    println!("## spore-bench pod\n");
    println!("machine: {}", machine_line());
    println!(
        "shim: {}\n",
        args.shim_dir.join(spore_format::SHIM_BINARY).display()
    );
    let fixture = Fixture::start(&args.shim_dir, true, &args.containerd_env)?;
    let mut cri = CriClient::for_containerd(&fixture.containerd).await?;
    cri.pull_image(&fixture.wasm_image).await?;
    cri.pull_image(&fixture.busybox_image).await?;
    let mut sides = vec![
        Side::new('A', &args.handler_a, &fixture),
        Side::new('B', &args.handler_b, &fixture),
    ];
    if let Some(handler) = &args.handler_c {
        sides.push(Side::new('C', handler, &fixture));
    }

    if !args.skip_latency {
        eprintln!(
            "latency: {} pods per side after one warm-up, interleaved",
            args.n
        );
        let mut samples: Vec<Vec<Latency>> = vec![Vec::new(); sides.len()];
        for i in 0..=args.n {
            for (s, side) in sides.iter().enumerate() {
                let name = format!("lat-{}-{i}", side.tag.to_ascii_lowercase());
                let sample = pod_latency(&mut cri, side, &name).await?;
                if i > 0 {
                    samples[s].push(sample);
                }
            }
        }
        print_latency(args.n, &sides, &samples);

        eprintln!(
            "container start in a running pod: {} restarts per side, interleaved",
            args.n
        );
        let mut pods = Vec::new();
        for side in &sides {
            let name = format!("restart-{}", side.tag.to_ascii_lowercase());
            let pod = cri
                .run_pod(PodSpec::new(&name, POD_NAMESPACE, &side.handler))
                .await?;
            pods.push(pod);
        }
        let mut restarts: Vec<Vec<Latency>> = vec![Vec::new(); sides.len()];
        let mut measured = Ok(());
        'rounds: for attempt in 0..=args.n {
            for (s, side) in sides.iter().enumerate() {
                match start_in_pod(&mut cri, side, &pods[s], attempt as u32).await {
                    Ok(sample) if attempt > 0 => restarts[s].push(sample),
                    Ok(_) => {}
                    Err(err) => {
                        measured = Err(err);
                        break 'rounds;
                    }
                }
            }
        }
        for pod in &pods {
            teardown(&mut cri, pod).await?;
        }
        measured?;
        print_restarts(args.n, &sides, &restarts);
    }

    if !args.skip_memory {
        let mut rows = Vec::new();
        for side in &sides {
            eprintln!("memory: {} idle pods, {}", side.handler, side.idle_label);
            let measured =
                pod_memory(&mut cri, &fixture.containerd, side, &args.pod_counts).await?;
            rows.push(MemoryRows {
                tag: side.tag,
                label: side.label(side.idle_label),
                measured,
            });
        }
        println!(
            "### Memory of idle pods: PSS of every process the pods add (shims, pause, containers)\n"
        );
        print_memory(&rows);
    }

    drop(cri);
    let leftovers = fixture.containerd.shutdown();
    if !leftovers.is_empty() {
        eprintln!("warning: containerd left {leftovers:?}");
    }
    Ok(())
}

async fn pod_latency(cri: &mut CriClient, side: &Side, name: &str) -> Result<Latency, BenchError> {
    let spec = ContainerSpec::new("main", &side.image).command(side.echo.clone());
    let t0 = Instant::now();
    let pod = cri
        .run_pod(PodSpec::new(name, POD_NAMESPACE, &side.handler))
        .await?;
    let sandbox = t0.elapsed();
    let container = cri.create_container(&pod, &spec).await?;
    let create = t0.elapsed();
    cri.start_container(&container.id).await?;
    let start = t0.elapsed();
    wait_first_line(&container.log_path, LOG_LIMIT).await?;
    let first_line = t0.elapsed();
    teardown(cri, &pod).await?;
    Ok(Latency {
        sandbox: millis(sandbox),
        create: millis(create - sandbox),
        start: millis(start - create),
        first_line: millis(first_line - start),
        total: millis(first_line),
    })
}

/// CreateContainer + StartContainer of the echo container, attempt `attempt`, into `pod`
/// (running, its earlier attempts exited): what a kubelet's restart in a pod pays. The
/// `sandbox` figure is 0.
async fn start_in_pod(
    cri: &mut CriClient,
    side: &Side,
    pod: &Pod,
    attempt: u32,
) -> Result<Latency, BenchError> {
    let spec = ContainerSpec::new("main", &side.image)
        .command(side.echo.clone())
        .attempt(attempt);
    let t0 = Instant::now();
    let container = cri.create_container(pod, &spec).await?;
    let create = t0.elapsed();
    cri.start_container(&container.id).await?;
    let start = t0.elapsed();
    wait_first_line(&container.log_path, LOG_LIMIT).await?;
    let first_line = t0.elapsed();
    Ok(Latency {
        sandbox: 0.0,
        create: millis(create),
        start: millis(start - create),
        first_line: millis(first_line - start),
        total: millis(first_line),
    })
}

/// Stops and removes `pod`. containerd 2.1.9's runc shim sometimes closes its connection when
/// containerd kills a container that has just exited, and StopPodSandbox fails with `ttrpc:
/// closed` (seen with runc on both sides, no Spore pod involved): the kubelet then calls
/// StopPodSandbox again, and so does the bench, once, saying so.
async fn teardown(cri: &mut CriClient, pod: &Pod) -> Result<(), BenchError> {
    match cri.teardown_pod(pod).await {
        Err(err) if err.to_string().contains("ttrpc: closed") => {
            eprintln!(
                "note: {} ({}): StopPodSandbox failed with `ttrpc: closed`; stopping it again",
                pod.spec.name, pod.spec.handler
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(cri.teardown_pod(pod).await?)
        }
        other => Ok(other?),
    }
}

/// Polls the CRI log every 2 ms until it holds a complete line.
pub(super) async fn wait_first_line(path: &Path, limit: Duration) -> Result<(), BenchError> {
    let started = Instant::now();
    loop {
        if read_cri_log(path).is_ok_and(|lines| !lines.is_empty()) {
            return Ok(());
        }
        if started.elapsed() >= limit {
            return Err(BenchError::Timeout {
                what: format!("a line in {}", path.display()),
                secs: limit.as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn pod_memory(
    cri: &mut CriClient,
    containerd: &Containerd,
    side: &Side,
    counts: &[usize],
) -> Result<Vec<Memory>, BenchError> {
    // One pod first, unmeasured: whichever side runs first would otherwise pay the idle
    // guest's compile (memory the shim keeps in its heap) in its first row.
    let spec = ContainerSpec::new("idle", &side.image)
        .command(side.idle.clone())
        .memory_limit(IDLE_MEMORY_LIMIT);
    let warm = format!("mem-{}-warm", side.tag.to_ascii_lowercase());
    let warm = start_idle_pod(cri, side, &warm, &spec).await?;
    teardown(cri, &warm).await?;
    wait_for_no_shims(containerd).await;
    let (base_kib, _) = total_pss_kib(&pod_processes(containerd, &[]));
    let containerd_pss = || {
        containerd
            .pid()
            .and_then(|pid| i32::try_from(pid).ok())
            .and_then(process_pss_kib)
            .map_or(0, |kib| i64::try_from(kib).unwrap_or(i64::MAX))
    };
    let containerd_base = containerd_pss();
    let node_base = node_used_kib();
    let mut pods: Vec<Pod> = Vec::new();
    let mut measured = Vec::new();
    let mut outcome = Ok(());
    'counts: for &count in counts {
        let started = Instant::now();
        while pods.len() < count {
            let name = format!("mem-{}-{}", side.tag.to_ascii_lowercase(), pods.len());
            match start_idle_pod(cri, side, &name, &spec).await {
                Ok(pod) => pods.push(pod),
                Err(err) => {
                    outcome = Err(err);
                    break 'counts;
                }
            }
            if pods.len().is_multiple_of(100) {
                eprintln!("  {} pods serving", pods.len());
            }
        }
        let start_secs = started.elapsed().as_secs_f64();
        tokio::time::sleep(SETTLE).await;
        let pids: BTreeSet<i32> = pod_processes(containerd, &pods);
        let (total_kib, processes) = total_pss_kib(&pids);
        measured.push(Memory {
            pods: count,
            processes,
            total_kib,
            base_kib,
            containerd_growth_kib: Some(containerd_pss() - containerd_base),
            by_command: pss_by_command_kib(&pids).into_iter().collect(),
            start_secs,
            node_growth_kib: node_used_kib() - node_base,
        });
        eprintln!(
            "  {count} pods: {processes} processes, {:.1} MiB PSS, started and answering in {start_secs:.1} s",
            total_kib as f64 / 1024.0
        );
    }
    for pod in &pods {
        teardown(cri, pod).await?;
    }
    outcome.map(|()| measured)
}

/// The node's memory in use, `MemTotal - MemAvailable` of `/proc/meminfo`, in KiB (0 when it
/// cannot be read).
pub(super) fn node_used_kib() -> i64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let field = |name: &str| {
        text.lines().find_map(|line| {
            line.strip_prefix(name)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse::<i64>()
                .ok()
        })
    };
    match (field("MemTotal:"), field("MemAvailable:")) {
        (Some(total), Some(available)) => total - available,
        _ => 0,
    }
}

async fn start_idle_pod(
    cri: &mut CriClient,
    side: &Side,
    name: &str,
    spec: &ContainerSpec,
) -> Result<Pod, BenchError> {
    let mut pod_spec = PodSpec::new(name, POD_NAMESPACE, &side.handler);
    pod_spec.memory_limit = spec.memory_limit;
    pod_spec.qos = QosClass::Burstable;
    let pod = cri.run_pod(pod_spec).await?;
    let started = async {
        let container = cri.run_container(&pod, spec).await?;
        cri.wait_for_state(
            &container.id,
            k8s_cri::v1::ContainerState::ContainerRunning,
            LOG_LIMIT,
        )
        .await?;
        let ip = cri
            .pod_ip(&pod.id)
            .await?
            .ok_or_else(|| BenchError::Load(format!("pod {name} has no IP")))?;
        answer_one_request(
            &format!("http://{ip}:{IDLE_PORT}/"),
            is_spore(&side.handler),
        )
        .await
    }
    .await;
    match started {
        Ok(()) => Ok(pod),
        Err(err) => {
            let _ = cri.teardown_pod(&pod).await;
            Err(err)
        }
    }
}

/// The port the idle servers listen on (Spore's default `PORT`, and busybox httpd's `-p`).
pub(super) const IDLE_PORT: u16 = 8080;

/// Waits until the server at `url` answers a `GET` (a listener comes up a moment after
/// StartContainer returns): a Wasm server (`wasm`) must answer 200, busybox httpd any status (it
/// has no index page to serve).
pub(super) async fn answer_one_request(url: &str, wasm: bool) -> Result<(), BenchError> {
    let t0 = Instant::now();
    loop {
        let url_owned = url.to_owned();
        let answer =
            tokio::task::spawn_blocking(move || crate::http::request("GET", &url_owned, &[], b""))
                .await
                .map_err(|e| BenchError::Load(e.to_string()))?;
        match answer {
            Ok(response) if !wasm || response.status == 200 => return Ok(()),
            Ok(response) => {
                return Err(BenchError::Load(format!(
                    "{url} answered {}: {}",
                    response.status,
                    response.text()
                )));
            }
            Err(_) if t0.elapsed() < LOG_LIMIT => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
            Err(err) => return Err(BenchError::Load(format!("{url}: {err}"))),
        }
    }
}

/// Shims of pods torn down just before may take a moment to exit.
async fn wait_for_no_shims(containerd: &Containerd) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !containerd.shim_processes().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn print_latency(n: usize, sides: &[Side], samples: &[Vec<Latency>]) {
    println!(
        "### Pod start: RunPodSandbox → the container's first log line (ms, N={n} each, interleaved, one warm-up discarded)\n"
    );
    print_starts(sides, samples, true);
}

fn print_restarts(n: usize, sides: &[Side], samples: &[Vec<Latency>]) {
    println!(
        "### Container start in a running pod: CreateContainer → the container's first log line (ms, N={n} each, attempts 1..N after attempt 0, interleaved)\n"
    );
    print_starts(sides, samples, false);
}

/// The table of start samples per side, then every side against B (index 1); `sandbox` adds
/// the RunPodSandbox columns.
fn print_starts(sides: &[Side], samples: &[Vec<Latency>], sandbox: bool) {
    let mut header = vec!["pod", "median", "p10", "p90"];
    if sandbox {
        header.extend(["RunPodSandbox (median)", "sandbox share"]);
    }
    header.extend(["CreateContainer", "StartContainer", "started → first line"]);
    let mut table = Table::new(header);
    let median = |s: usize, f: fn(&Latency) -> f64| {
        let v: Vec<f64> = samples[s].iter().map(f).collect();
        Summary::of(&v).map_or(f64::NAN, |x| x.median)
    };
    let totals: Vec<Option<Summary>> = (0..sides.len())
        .map(|s| Summary::of(&samples[s].iter().map(|l| l.total).collect::<Vec<_>>()))
        .collect();
    let phases: [fn(&Latency) -> f64; 3] = [|l| l.create, |l| l.start, |l| l.first_line];
    for (s, side) in sides.iter().enumerate() {
        let Some(total) = totals[s] else { continue };
        let mut row = vec![
            side.label(side.echo_label),
            fmt_ms(total.median),
            fmt_ms(total.p10),
            fmt_ms(total.p90),
        ];
        if sandbox {
            let share = median(s, |l| l.sandbox);
            row.extend([
                fmt_ms(share),
                format!("{:.0} %", 100.0 * share / total.median),
            ]);
        }
        row.extend(phases.iter().map(|f| fmt_ms(median(s, *f))));
        table.row(row);
    }
    for (s, side) in sides.iter().enumerate().filter(|(s, _)| *s != 1) {
        let (Some(x), Some(b)) = (totals[s], totals[1]) else {
            continue;
        };
        let cell = |f: fn(&Latency) -> f64| ratio(median(s, f), median(1, f));
        let mut row = vec![
            format!("ratio {} / B", side.tag),
            ratio(x.median, b.median),
            ratio(x.p10, b.p10),
            ratio(x.p90, b.p90),
        ];
        if sandbox {
            row.extend([cell(|l| l.sandbox), String::new()]);
        }
        row.extend(phases.iter().map(|f| cell(*f)));
        table.row(row);
    }
    println!("{}", table.render());
}

/// One side's memory rows, for [`print_memory`].
pub(super) struct MemoryRows {
    pub tag: char,
    pub label: String,
    pub measured: Vec<Memory>,
}

/// The memory table; every side is compared with the second (B).
pub(super) fn print_memory(rows: &[MemoryRows]) {
    println!(
        "Each pod has a {} MiB memory limit (pod and container) and answers one GET before it counts as started. per pod = (total at N − total at 0) / N; total at 0 is what this containerd's shims held before the first pod; marginal = (total at N − total at the previous row) / (pods added). Start times are for the pods added in that row.\n",
        IDLE_MEMORY_LIMIT >> 20
    );
    let mut table = Table::new([
        "pod",
        "pods",
        "processes",
        "total PSS (MiB)",
        "PSS per pod (MiB)",
        "marginal PSS per pod since previous row (MiB)",
        "containerd's own PSS growth per pod (MiB)",
        "node memory in use, growth per pod (MiB)",
        "start to all answering (s)",
        "per pod by process name (MiB)",
    ]);
    let mib = |kib: f64| format!("{:.2}", kib / 1024.0);
    for side in rows {
        let mut previous = (0usize, None::<u64>);
        for m in &side.measured {
            let per_pod = (m.total_kib as f64 - m.base_kib as f64) / m.pods as f64;
            let before = previous.1.unwrap_or(m.base_kib);
            let marginal = (m.total_kib as f64 - before as f64) / (m.pods - previous.0) as f64;
            previous = (m.pods, Some(m.total_kib));
            table.row([
                side.label.clone(),
                m.pods.to_string(),
                m.processes.to_string(),
                mib(m.total_kib as f64),
                mib(per_pod),
                mib(marginal),
                m.containerd_growth_kib
                    .map_or("n/a".into(), |kib| mib(kib as f64 / m.pods as f64)),
                mib(m.node_growth_kib as f64 / m.pods as f64),
                format!("{:.1}", m.start_secs),
                m.by_command
                    .iter()
                    .map(|(command, kib)| {
                        format!("{command} {:.2}", *kib as f64 / 1024.0 / m.pods as f64)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ]);
        }
    }
    // Per-pod PSS of every side against B's at the same count.
    let per_pod = |m: &Memory| (m.total_kib as f64 - m.base_kib as f64) / m.pods as f64;
    if let Some(reference) = rows.get(1) {
        for side in rows
            .iter()
            .enumerate()
            .filter(|(s, _)| *s != 1)
            .map(|(_, r)| r)
        {
            for m in &side.measured {
                let Some(b) = reference.measured.iter().find(|b| b.pods == m.pods) else {
                    continue;
                };
                table.row([
                    format!("ratio {} / B", side.tag),
                    m.pods.to_string(),
                    String::new(),
                    String::new(),
                    ratio(per_pod(m), per_pod(b)),
                    String::new(),
                    String::new(),
                    ratio(m.node_growth_kib as f64, b.node_growth_kib as f64),
                    ratio(m.start_secs, b.start_secs),
                    String::new(),
                ]);
            }
        }
    }
    println!("{}", table.render());
}
