//! `spore-bench languages` (issue 17): the Rust, JavaScript and Python examples side by side on
//! one containerd through the CRI: each component's size, a pod's start to its first log line
//! (command) or first answer (HTTP) with a cold compile cache (the first pod of the component)
//! and a warm one (later pods, compiled code from the node's cache), and the HTTP handler's
//! requests per second over keep-alive connections.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::fixture::{Fixture, guest_path, machine_line};
use super::stats::{Summary, Table, fmt_ms, millis};
use super::{BenchArgs, BenchError};
use crate::cri_log::read_cri_log;
use crate::{ContainerSpec, CriClient, PodSpec};

const LIMIT: Duration = Duration::from_secs(300);
/// Each load run lasts this long; the table shows the median of `LOAD_RUNS`.
const LOAD_RUN: Duration = Duration::from_secs(5);
const LOAD_RUNS: usize = 3;
const CONNECTIONS: [usize; 2] = [1, 16];
const MEMORY_LIMIT: i64 = 256 << 20;

struct Language {
    name: &'static str,
    command: PathBuf,
    http: PathBuf,
}

fn languages() -> Vec<Language> {
    let example = crate::tools::example_path;
    vec![
        Language {
            name: "Rust",
            command: guest_path("hello"),
            http: guest_path("hello-http"),
        },
        Language {
            name: "JavaScript",
            command: example("js", "hello"),
            http: example("js", "hello-http"),
        },
        Language {
            name: "Python",
            command: example("python", "hello"),
            http: example("python", "hello-http"),
        },
    ]
}

struct Measured {
    name: &'static str,
    command_size: u64,
    http_size: u64,
    command_cold: f64,
    command_warm: Option<Summary>,
    http_cold: f64,
    http_warm: Option<Summary>,
    /// Requests per second at each of `CONNECTIONS`.
    rps: Vec<f64>,
}

pub async fn run(args: &BenchArgs) -> Result<(), BenchError> {
    println!("## spore-bench languages\n");
    println!("machine: {}", machine_line());
    let fixture = Fixture::start(&args.shim_dir, true, &args.containerd_env)?;
    let mut cri = CriClient::for_containerd(&fixture.containerd).await?;
    let mut rows = Vec::new();
    for language in languages() {
        eprintln!("{}: pushing its command and HTTP components", language.name);
        let (command, command_size) =
            push(&fixture, &mut cri, &language, &language.command, "cmd").await?;
        let (http, http_size) = push(&fixture, &mut cri, &language, &language.http, "http").await?;
        let mut command_starts = Vec::new();
        let mut http_starts = Vec::new();
        for i in 0..=args.n {
            let tag = format!("{}-{i}", language.name.to_ascii_lowercase());
            command_starts.push(command_start(&mut cri, &command, &tag).await?);
            http_starts.push(http_start(&mut cri, &http, &tag, None).await?.0);
        }
        eprintln!("{}: load, {LOAD_RUNS} x {LOAD_RUN:?}", language.name);
        let tag = format!("{}-load", language.name.to_ascii_lowercase());
        let (_, rps) = http_start(&mut cri, &http, &tag, Some(&CONNECTIONS)).await?;
        rows.push(Measured {
            name: language.name,
            command_size,
            http_size,
            command_cold: command_starts[0],
            command_warm: Summary::of(&command_starts[1..]),
            http_cold: http_starts[0],
            http_warm: Summary::of(&http_starts[1..]),
            rps,
        });
    }
    print_table(args.n, &rows);
    drop(cri);
    let leftovers = fixture.containerd.shutdown();
    if !leftovers.is_empty() {
        eprintln!("warning: containerd left {leftovers:?}");
    }
    Ok(())
}

/// One of a language's components, as `spore/bench-LANGUAGE-KIND:1`.
async fn push(
    fixture: &Fixture,
    cri: &mut CriClient,
    language: &Language,
    wasm: &std::path::Path,
    kind: &str,
) -> Result<(String, u64), BenchError> {
    let repo = format!("spore/bench-{}-{kind}", language.name.to_ascii_lowercase());
    fixture.push_component(cri, wasm, &repo).await
}

/// RunPodSandbox to the command's first log line, in ms.
async fn command_start(cri: &mut CriClient, image: &str, tag: &str) -> Result<f64, BenchError> {
    let spec = ContainerSpec::new("main", image).memory_limit(MEMORY_LIMIT);
    let t0 = Instant::now();
    let pod = cri
        .run_pod(PodSpec::new(&format!("cmd-{tag}"), "default", "spore"))
        .await?;
    let container = cri.run_container(&pod, &spec).await?;
    loop {
        if read_cri_log(&container.log_path).is_ok_and(|lines| !lines.is_empty()) {
            break;
        }
        if t0.elapsed() > LIMIT {
            return Err(BenchError::Timeout {
                what: format!("a line in {}", container.log_path.display()),
                secs: LIMIT.as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = millis(t0.elapsed());
    cri.teardown_pod(&pod).await?;
    Ok(elapsed)
}

/// RunPodSandbox to the handler's first 200 answer, in ms; with `load`, then the requests per
/// second at each connection count (median of `LOAD_RUNS`).
async fn http_start(
    cri: &mut CriClient,
    image: &str,
    tag: &str,
    load: Option<&[usize]>,
) -> Result<(f64, Vec<f64>), BenchError> {
    let spec = ContainerSpec::new("main", image).memory_limit(MEMORY_LIMIT);
    let t0 = Instant::now();
    let pod = cri
        .run_pod(PodSpec::new(&format!("http-{tag}"), "default", "spore"))
        .await?;
    cri.run_container(&pod, &spec).await?;
    let ip = cri.pod_ip(&pod.id).await?.ok_or(BenchError::Timeout {
        what: "the pod's IP".into(),
        secs: 0.0,
    })?;
    let host = format!("{ip}:8080");
    loop {
        if crate::http::request("GET", &format!("http://{host}/"), &[], b"")
            .is_ok_and(|r| r.status == 200)
        {
            break;
        }
        if t0.elapsed() > LIMIT {
            return Err(BenchError::Timeout {
                what: format!("a 200 answer from {host}"),
                secs: LIMIT.as_secs_f64(),
            });
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let started = millis(t0.elapsed());
    let mut rps = Vec::new();
    for &connections in load.unwrap_or_default() {
        let host = host.clone();
        let runs: Vec<f64> = tokio::task::spawn_blocking(move || {
            (0..LOAD_RUNS)
                .map(|_| requests_per_second(&host, connections))
                .collect()
        })
        .await
        .map_err(|e| BenchError::Spawn {
            what: "the load generator".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        eprintln!("  {connections} connections: {runs:.0?} req/s");
        rps.push(Summary::of(&runs).map_or(f64::NAN, |s| s.median));
    }
    cri.teardown_pod(&pod).await?;
    Ok((started, rps))
}

/// `GET /` over `connections` keep-alive connections for `LOAD_RUN`; answers other than 200
/// are not counted.
fn requests_per_second(host: &str, connections: usize) -> f64 {
    let ok = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(connections + 1));
    let workers: Vec<_> = (0..connections)
        .map(|_| {
            let (ok, stop, ready, host) =
                (ok.clone(), stop.clone(), ready.clone(), host.to_string());
            std::thread::spawn(move || {
                let mut connection = crate::http::KeepAlive::connect(&host).ok();
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    let answer = match connection.as_mut() {
                        Some(c) => c.get("/"),
                        None => break,
                    };
                    match answer {
                        Ok(r) if r.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) => {}
                        Err(_) => connection = crate::http::KeepAlive::connect(&host).ok(),
                    }
                }
            })
        })
        .collect();
    ready.wait();
    let t0 = Instant::now();
    std::thread::sleep(LOAD_RUN);
    let counted = ok.load(Ordering::Relaxed);
    let elapsed = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    counted as f64 / elapsed.as_secs_f64()
}

fn print_table(n: usize, rows: &[Measured]) {
    println!(
        "### Examples by language: size, pod start (RunPodSandbox → first log line / first 200 answer; cold = the component's first pod, compiled; warm = median of the next {n} pods, from the compile cache), req/s (`GET /`, keep-alive, median of {LOAD_RUNS} x {}s)\n",
        LOAD_RUN.as_secs()
    );
    let mut header = vec![
        "language".to_string(),
        "command size".into(),
        "HTTP size".into(),
        "command start cold (ms)".into(),
        "command start warm (ms)".into(),
        "HTTP start cold (ms)".into(),
        "HTTP start warm (ms)".into(),
    ];
    header.extend(CONNECTIONS.iter().map(|c| format!("req/s, {c} conn.")));
    let mut table = Table::new(header);
    let size = |bytes: u64| {
        if bytes >= 1 << 20 {
            format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
        } else {
            format!("{:.0} KiB", bytes as f64 / 1024.0)
        }
    };
    let warm = |s: &Option<Summary>| s.map_or("n/a".into(), |s| fmt_ms(s.median));
    for row in rows {
        let mut cells = vec![
            row.name.to_string(),
            size(row.command_size),
            size(row.http_size),
            fmt_ms(row.command_cold),
            warm(&row.command_warm),
            fmt_ms(row.http_cold),
            warm(&row.http_warm),
        ];
        cells.extend(row.rps.iter().map(|r| format!("{r:.0}")));
        table.row(cells);
    }
    println!("{}", table.render());
}
