//! `spore-bench http` (issue 18): HTTP throughput and latency of a `wasi:http/proxy` component
//! served by Spore, by runwasi's `containerd-shim-wasmtime-v1` (when it is on `PATH`) through
//! the same private containerd and CRI, and by `wasmtime serve` (the same wasmtime as the shim)
//! as a process in a runc pod's network namespace (so every request crosses the same CNI
//! bridge), in one run: `hello-http` (`GET /`) and `json-api` (`POST /quote`, an
//! order of about 5 KiB parsed and answered with a quote of about 4 KiB), `wrk` at each
//! connection count, the servers taking turns round by round; the table shows medians.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::fixture::{Fixture, guest_path, machine_line};
use super::stats::{Summary, Table, ratio};
use super::wrk::{self, Load, WrkRun};
use super::{BenchArgs, BenchError};
use crate::{ContainerSpec, CriClient, Pod, PodSpec};

/// runwasi's wasmtime shim and its containerd runtime type.
pub const RUNWASI_SHIM: &str = "containerd-shim-wasmtime-v1";
const RUNWASI_RUNTIME: &str = "io.containerd.wasmtime.v1";
const RUNWASI_HANDLER: &str = "wasmtime";
/// Every pod gets the same limit, as a kubelet would from the pod spec.
const MEMORY_LIMIT: i64 = 256 << 20;
/// How long a server has to answer its health path after it starts.
const START_LIMIT: Duration = Duration::from_secs(120);
/// Unmeasured load before a server's first measured run (caches, pool slots, TCP).
const WARM_UP: Duration = Duration::from_secs(2);
/// The port every server listens on inside its pod (Spore's and runwasi's default).
const POD_PORT: u16 = 8080;

/// One component and the request its load sends.
struct Workload {
    name: &'static str,
    wasm: PathBuf,
    load: Load,
}

fn workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "hello",
            wasm: guest_path("hello-http"),
            load: Load::Get { path: "/".into() },
        },
        Workload {
            name: "json",
            wasm: guest_path("json-api"),
            load: Load::PostJson {
                path: "/quote".into(),
                body: crate::tools::repo_root().join("examples/rust/json-api/order.json"),
            },
        },
    ]
}

/// Who serves.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Server {
    /// A CRI pod on a runtime handler of the bench's containerd.
    Pod {
        label: &'static str,
        handler: &'static str,
    },
    /// `wasmtime serve` in a runc pod's network namespace.
    WasmtimeServe { binary: PathBuf, version: String },
}

impl Server {
    fn label(&self) -> &str {
        match self {
            Server::Pod { label, .. } => label,
            Server::WasmtimeServe { .. } => "wasmtime serve",
        }
    }
}

/// A started server: its pod, where it listens, and for `wasmtime serve` its process (in the
/// network namespace of the pod, a runc pod with no containers).
struct Running {
    pod: Pod,
    host: String,
    process: Option<Child>,
}

/// The figures of one (workload, server, connections) cell over the rounds.
#[derive(Default)]
struct Cell {
    runs: Vec<WrkRun>,
}

impl Cell {
    fn median(&self, field: impl Fn(&WrkRun) -> f64) -> f64 {
        let samples: Vec<f64> = self.runs.iter().map(field).collect();
        Summary::of(&samples).map_or(f64::NAN, |s| s.median)
    }
}

pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    println!("## spore-bench http\n");
    println!("machine: {}", machine_line());
    let mut servers = vec![Server::Pod {
        label: "spore",
        handler: "spore",
    }];
    let mut runtimes = Vec::new();
    match crate::tools::which(RUNWASI_SHIM) {
        Some(path) => {
            println!("peer shim: {}", path.display());
            runtimes.push((RUNWASI_HANDLER.to_string(), RUNWASI_RUNTIME.to_string()));
            servers.push(Server::Pod {
                label: "runwasi",
                handler: RUNWASI_HANDLER,
            });
        }
        None => println!("peer shim: none ({RUNWASI_SHIM} is not on PATH; its column is left out)"),
    }
    let wasmtime = args
        .wasmtime
        .clone()
        .unwrap_or_else(|| crate::tools::repo_root().join(".tools/wasmtime-cli/bin/wasmtime"));
    match wasmtime_version(&wasmtime) {
        Some(version) => {
            println!("wasmtime serve: {version} ({})", wasmtime.display());
            servers.push(Server::WasmtimeServe {
                binary: wasmtime,
                version,
            });
        }
        None => println!(
            "wasmtime serve: none ({} does not run; its column is left out)",
            wasmtime.display()
        ),
    }
    let fixture =
        Fixture::start_with_runtimes(&args.shim_dir, true, &runtimes, &args.containerd_env)?;
    let mut cri = CriClient::for_containerd(&fixture.containerd).await?;
    let scratch = tempfile::tempdir().map_err(|source| BenchError::Io {
        path: std::env::temp_dir(),
        source,
    })?;
    let duration = args.seconds;
    let connections = &args.connections;
    println!(
        "load: wrk, {}s per run, {} rounds, connections {connections:?}\n",
        duration.as_secs(),
        args.n
    );

    let workloads = workloads();
    let mut images = Vec::new();
    for workload in &workloads {
        let repo = format!("spore/bench-http-{}", workload.name);
        images.push(
            fixture
                .push_component(&mut cri, &workload.wasm, &repo)
                .await?
                .0,
        );
    }
    // cells[workload][server][connection count]
    let mut cells: Vec<Vec<Vec<Cell>>> = workloads
        .iter()
        .map(|_| {
            servers
                .iter()
                .map(|_| connections.iter().map(|_| Cell::default()).collect())
                .collect()
        })
        .collect();
    for round in 0..args.n {
        for (w, workload) in workloads.iter().enumerate() {
            for (s, server) in servers.iter().enumerate() {
                let tag = format!("{}-{}-{round}", workload.name, s);
                let running = match start(&mut cri, server, workload, &images[w], &tag).await {
                    Ok(running) => running,
                    Err(err) => {
                        let log = fixture.containerd.log();
                        let kept = std::env::temp_dir().join("spore-bench-http-containerd.log");
                        let _ = std::fs::write(&kept, &log);
                        eprintln!("{}", log_tail(&log, LOG_TAIL_LINES));
                        eprintln!("containerd's whole log: {}", kept.display());
                        return Err(err);
                    }
                };
                let host = running.host.clone();
                let load = workload.load.clone();
                let dir = scratch.path().to_path_buf();
                let conns = connections.clone();
                let runs = tokio::task::spawn_blocking(move || {
                    wrk::run(&host, &load, 16, WARM_UP, &dir)?;
                    conns
                        .iter()
                        .map(|&c| wrk::run(&host, &load, c, duration, &dir))
                        .collect::<Result<Vec<_>, _>>()
                })
                .await
                .map_err(|e| BenchError::Load(format!("the load thread failed: {e}")))??;
                stop(&mut cri, running).await?;
                for (c, run) in runs.into_iter().enumerate() {
                    eprintln!(
                        "round {round}: {} {} {} conns: {:.0} req/s, p50 {:.0} us, p99 {:.0} us{}",
                        workload.name,
                        server.label(),
                        connections[c],
                        run.requests_per_second,
                        run.p50_us,
                        run.p99_us,
                        if run.errors > 0 {
                            format!(", {} errors", run.errors)
                        } else {
                            String::new()
                        }
                    );
                    cells[w][s][c].runs.push(run);
                }
            }
        }
    }
    print_table(&workloads, &servers, connections, &cells, args);
    drop(cri);
    let leftovers = fixture.containerd.shutdown();
    if !leftovers.is_empty() {
        eprintln!("warning: containerd left {leftovers:?}");
    }
    Ok(())
}

/// Lines of containerd's log shown when a server does not come up.
const LOG_TAIL_LINES: usize = 30;

/// The last `n` lines of `log`, for a failure's context.
fn log_tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let tail = &lines[lines.len().saturating_sub(n)..];
    format!(
        "containerd's log, last {} lines:\n{}",
        tail.len(),
        tail.join("\n")
    )
}

/// `wasmtime --version`'s answer, when the binary runs.
fn wasmtime_version(binary: &Path) -> Option<String> {
    let output = Command::new(binary).arg("--version").output().ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

async fn start(
    cri: &mut CriClient,
    server: &Server,
    workload: &Workload,
    image: &str,
    tag: &str,
) -> Result<Running, BenchError> {
    // `wasmtime serve` runs in the network namespace of a runc pod, so that its requests take
    // the same path (CNI bridge and veth) as the pods'.
    let handler = match server {
        Server::Pod { handler, .. } => handler,
        Server::WasmtimeServe { .. } => "runc",
    };
    let pod = cri
        .run_pod(PodSpec::new(&format!("http-{tag}"), "default", handler))
        .await?;
    let running = match launch(cri, server, workload, image, &pod).await {
        Ok((host, process)) => Running { pod, host, process },
        Err(err) => {
            cri.teardown_pod(&pod).await?;
            return Err(err);
        }
    };
    let url = format!("http://{}/healthz", running.host);
    let t0 = Instant::now();
    while !crate::http::request("GET", &url, &[], b"").is_ok_and(|r| r.status == 200) {
        if t0.elapsed() > START_LIMIT {
            let what = format!("{} to answer {url}", server.label());
            stop(cri, running).await?;
            return Err(BenchError::Timeout {
                what,
                secs: START_LIMIT.as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(running)
}

/// Starts what serves in `pod`: its container, or the `wasmtime serve` process in its network
/// namespace. Returns the address it serves at and that process.
async fn launch(
    cri: &mut CriClient,
    server: &Server,
    workload: &Workload,
    image: &str,
    pod: &Pod,
) -> Result<(String, Option<Child>), BenchError> {
    let ip = cri.pod_ip(&pod.id).await?.ok_or(BenchError::Timeout {
        what: "the pod's IP".into(),
        secs: 0.0,
    })?;
    let host = format!("{ip}:{POD_PORT}");
    match server {
        Server::Pod { .. } => {
            let spec = ContainerSpec::new("main", image).memory_limit(MEMORY_LIMIT);
            cri.run_container(pod, &spec).await?;
            Ok((host, None))
        }
        Server::WasmtimeServe { binary, .. } => {
            let netns = cri
                .pod_netns_path(&pod.id)
                .await?
                .ok_or(BenchError::Timeout {
                    what: "the runc pod's network namespace".into(),
                    secs: 0.0,
                })?;
            let child = Command::new("nsenter")
                .arg(format!("--net={}", netns.display()))
                .arg(binary)
                .args(["serve", "-Scli", "--addr", &format!("0.0.0.0:{POD_PORT}")])
                .arg(&workload.wasm)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|source| BenchError::Spawn {
                    what: format!("nsenter {} serve", binary.display()),
                    source,
                })?;
            Ok((host, Some(child)))
        }
    }
}

async fn stop(cri: &mut CriClient, running: Running) -> Result<(), BenchError> {
    if let Some(mut child) = running.process {
        let _ = child.kill();
        let _ = child.wait();
    }
    cri.teardown_pod(&running.pod).await?;
    Ok(())
}

fn print_table(
    workloads: &[Workload],
    servers: &[Server],
    connections: &[usize],
    cells: &[Vec<Vec<Cell>>],
    args: &BenchArgs,
) {
    println!(
        "### HTTP: req/s and latency (wrk, keep-alive, median of {} runs of {}s; servers take turns)\n",
        args.n,
        args.seconds.as_secs()
    );
    for server in servers {
        if let Server::WasmtimeServe { version, .. } = server {
            println!(
                "`wasmtime serve` is {version}, run as `wasmtime serve -Scli` in a runc pod's network namespace (outside its cgroup)."
            );
        }
    }
    let mut header = vec!["workload".to_string(), "conns".into()];
    for server in servers {
        let label = server.label();
        header.extend([
            format!("{label} req/s"),
            format!("{label} p50 (us)"),
            format!("{label} p99 (us)"),
        ]);
    }
    for server in &servers[1..] {
        header.push(format!("spore / {}", server.label()));
    }
    header.push("errors".into());
    let mut table = Table::new(header);
    for (w, workload) in workloads.iter().enumerate() {
        for (c, conns) in connections.iter().enumerate() {
            let mut row = vec![workload.name.to_string(), conns.to_string()];
            let mut errors = 0;
            for cell in cells[w].iter().map(|by_conns| &by_conns[c]) {
                row.extend([
                    format!("{:.0}", cell.median(|r| r.requests_per_second)),
                    format!("{:.0}", cell.median(|r| r.p50_us)),
                    format!("{:.0}", cell.median(|r| r.p99_us)),
                ]);
                errors += cell.runs.iter().map(|r| r.errors).sum::<u64>();
            }
            let spore = cells[w][0][c].median(|r| r.requests_per_second);
            for peer in &cells[w][1..] {
                row.push(ratio(spore, peer[c].median(|r| r.requests_per_second)));
            }
            row.push(errors.to_string());
            table.row(row);
        }
    }
    println!("{}", table.render());
}
