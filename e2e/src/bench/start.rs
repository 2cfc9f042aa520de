//! `spore-bench start` (issue 2): wall time of create+start+exit+delete of one short task
//! through containerd with `ctr run --rm`, Spore (`examples/rust/hello`) against runc (busybox
//! `echo`), interleaved, then the same tasks split into phases with `ctr container create`,
//! `ctr task start -d`, the bundle's files and containerd's task events; then the compile
//! cache's cold and warm columns for a small and a large guest (`cache_cols`).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use super::ctr_events::EventStream;
use super::fixture::{Fixture, machine_line};
use super::stats::{Summary, Table, fmt_ms, millis, ratio};
use super::{BenchArgs, BenchError};
use crate::Containerd;
use crate::containerd::CtrOutput;

const NAMESPACE: &str = "default";
const SPORE_RUNTIME: &str = spore_format::RUNTIME_TYPE;
const EVENT_LIMIT: Duration = Duration::from_secs(30);

/// One side of the comparison.
struct Side {
    label: &'static str,
    short: &'static str,
    runtime: Option<&'static str>,
    image: String,
    argv: Vec<&'static str>,
    expect: &'static str,
}

impl Side {
    fn runtime_args(&self) -> Vec<&str> {
        match self.runtime {
            Some(runtime) => vec!["--runtime", runtime],
            None => Vec::new(),
        }
    }
}

/// Milliseconds each phase of one task took.
#[derive(Clone, Debug, Default)]
struct Phases {
    /// `ctr container create`: metadata and the rootfs snapshot (ctr's own start-up included).
    container_create: f64,
    /// `ctr task start -d` launched until containerd wrote the bundle (`config.json`).
    until_bundle: f64,
    /// Bundle written until the shim answered `start` (the `address`/`bootstrap.json` file).
    shim_spawn: f64,
    /// Shim up until it published `/tasks/create` (Create: rootfs, spec, IO, and for Spore
    /// loading and compiling the Wasm).
    create: f64,
    /// `/tasks/create` until `/tasks/start`.
    start: f64,
    /// `/tasks/start` until `/tasks/exit`.
    run: f64,
    /// The whole `ctr task start -d`.
    task_start_cmd: f64,
    /// `ctr task delete` (Delete, and the shim's shutdown).
    task_delete: f64,
    /// `ctr container delete` (metadata, snapshot).
    container_delete: f64,
}

pub fn run(args: &BenchArgs) -> Result<(), BenchError> {
    println!("## spore-bench start\n");
    println!("machine: {}", machine_line());
    println!(
        "shim: {}\n",
        args.shim_dir.join(spore_format::SHIM_BINARY).display()
    );
    let fixture = Fixture::start(&args.shim_dir, false, &args.containerd_env)?;
    let containerd = &fixture.containerd;
    containerd.ctr_pull(NAMESPACE, &fixture.wasm_image)?;
    containerd.ctr_pull(NAMESPACE, &fixture.busybox_image)?;
    let sides = [
        Side {
            label: "spore: examples/rust/hello (`/hello.wasm`)",
            short: "spore",
            runtime: Some(SPORE_RUNTIME),
            image: fixture.wasm_image.clone(),
            argv: vec!["/hello.wasm"],
            expect: "Hello",
        },
        Side {
            label: "runc: busybox `/bin/echo hello`",
            short: "runc",
            runtime: None,
            image: fixture.busybox_image.clone(),
            argv: vec!["/bin/echo", "hello"],
            expect: "hello",
        },
    ];

    let mut ctr_alone = Vec::new();
    for _ in 0..5 {
        ctr_alone.push(millis(ctr_timed(containerd, &["version"])?.0));
    }

    eprintln!(
        "ctr run --rm: {} runs per side after one warm-up, interleaved",
        args.n
    );
    let mut e2e: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut warmups = [0.0; 2];
    let mut silent = [0usize; 2];
    for i in 0..=args.n {
        for (s, side) in sides.iter().enumerate() {
            let (took, printed) = run_rm(containerd, side, &format!("rm-{}-{i}", side.short))?;
            let took = millis(took);
            silent[s] += usize::from(!printed);
            if i == 0 {
                warmups[s] = took;
            } else {
                e2e[s].push(took);
            }
        }
    }

    eprintln!(
        "phases: {} runs per side after one warm-up, interleaved",
        args.n
    );
    let mut events = EventStream::start(containerd)?;
    let mut phases: [Vec<Phases>; 2] = [Vec::new(), Vec::new()];
    for i in 0..=args.n {
        for (s, side) in sides.iter().enumerate() {
            let id = format!("ph-{}-{i}", side.short);
            let measured = phased(containerd, &mut events, side, &id, i == 0)?;
            if i > 0 {
                phases[s].push(measured);
            }
        }
    }
    drop(events);

    print_results(args.n, &sides, &e2e, warmups, silent, &phases, &ctr_alone);
    if !args.skip_cache {
        super::cache_cols::run(&fixture, args.cache_n)?;
    }
    let leftovers = fixture.containerd.shutdown();
    if !leftovers.is_empty() {
        eprintln!("warning: containerd left {leftovers:?}");
    }
    Ok(())
}

fn ctr_timed(containerd: &Containerd, args: &[&str]) -> Result<(Duration, CtrOutput), BenchError> {
    let started = Instant::now();
    let out = containerd.ctr_in(NAMESPACE, args)?;
    let took = started.elapsed();
    if !out.success() {
        return Err(BenchError::Ctr {
            args: args.join(" "),
            status: out.status,
            stderr: out.stderr,
        });
    }
    Ok((took, out))
}

/// Runs the task once; returns how long it took and whether its output arrived.
fn run_rm(containerd: &Containerd, side: &Side, id: &str) -> Result<(Duration, bool), BenchError> {
    let mut args = vec!["run", "--rm"];
    args.extend(side.runtime_args());
    args.extend([side.image.as_str(), id]);
    args.extend(side.argv.iter().copied());
    let (took, out) = ctr_timed(containerd, &args)?;
    let printed = out.stdout.contains(side.expect);
    if !printed {
        eprintln!(
            "warning: `ctr {}` exited 0 but printed {:?}, not {:?}",
            args.join(" "),
            out.stdout,
            side.expect
        );
    }
    Ok((took, printed))
}

fn phased(
    containerd: &Containerd,
    events: &mut EventStream,
    side: &Side,
    id: &str,
    show_bundle: bool,
) -> Result<Phases, BenchError> {
    let mut create = vec!["container", "create"];
    create.extend(side.runtime_args());
    create.extend([side.image.as_str(), id]);
    create.extend(side.argv.iter().copied());
    let (container_create, _) = ctr_timed(containerd, &create)?;

    let launched = SystemTime::now();
    let (task_start_cmd, _) = ctr_timed(containerd, &["task", "start", "-d", "--null-io", id])?;
    let bundle = containerd
        .paths()
        .state
        .join("io.containerd.runtime.v2.task")
        .join(NAMESPACE)
        .join(id);
    if show_bundle {
        eprintln!("bundle of {id} (ms after config.json):");
        for (name, ms) in bundle_listing(&bundle) {
            eprintln!("  {name:<16} {ms:>8.1}");
        }
    }
    let written = mtime(&bundle.join("config.json"))?;
    // containerd writes bootstrap.json once the shim's `start` has answered with its address,
    // for every shim alike (the Go runc shim writes no `address` file in the bundle).
    let shim_up = mtime(&bundle.join("bootstrap.json"))?;
    let exited = events.wait_for(id, "/tasks/exit", EVENT_LIMIT)?;
    let created = events.wait_for(id, "/tasks/create", EVENT_LIMIT)?;
    let started = events.wait_for(id, "/tasks/start", EVENT_LIMIT)?;
    let (task_delete, _) = ctr_timed(containerd, &["task", "delete", id])?;
    let (container_delete, _) = ctr_timed(containerd, &["container", "delete", id])?;
    Ok(Phases {
        container_create: millis(container_create),
        until_bundle: signed_ms(launched, written),
        shim_spawn: signed_ms(written, shim_up),
        create: signed_ms(shim_up, created),
        start: signed_ms(created, started),
        run: signed_ms(started, exited),
        task_start_cmd: millis(task_start_cmd),
        task_delete: millis(task_delete),
        container_delete: millis(container_delete),
    })
}

fn mtime(path: &Path) -> Result<SystemTime, BenchError> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|source| BenchError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// Each file of a bundle with its mtime relative to `config.json`.
fn bundle_listing(bundle: &Path) -> Vec<(String, f64)> {
    let Ok(base) = mtime(&bundle.join("config.json")) else {
        return Vec::new();
    };
    let mut files: Vec<(String, f64)> = std::fs::read_dir(bundle)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let at = e.metadata().and_then(|m| m.modified()).ok()?;
                    Some((
                        e.file_name().to_string_lossy().into_owned(),
                        signed_ms(base, at),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort_by(|a, b| a.1.total_cmp(&b.1));
    files
}

/// `to - from` in milliseconds, negative when `to` is earlier.
fn signed_ms(from: SystemTime, to: SystemTime) -> f64 {
    match to.duration_since(from) {
        Ok(d) => millis(d),
        Err(e) => -millis(e.duration()),
    }
}

/// Picks one phase out of a run.
type PhaseField = fn(&Phases) -> f64;

fn median_of(phases: &[Phases], field: PhaseField) -> f64 {
    let samples: Vec<f64> = phases.iter().map(field).collect();
    Summary::of(&samples).map_or(f64::NAN, |s| s.median)
}

fn print_results(
    n: usize,
    sides: &[Side; 2],
    e2e: &[Vec<f64>; 2],
    warmups: [f64; 2],
    silent: [usize; 2],
    phases: &[Vec<Phases>; 2],
    ctr_alone: &[f64],
) {
    println!(
        "### `ctr run --rm`: create + start + exit + delete (ms, N={n} each, interleaved, one warm-up discarded)\n"
    );
    let mut table = Table::new(["task", "median", "p10", "p90", "warm-up run"]);
    let summaries = [Summary::of(&e2e[0]), Summary::of(&e2e[1])];
    for (s, side) in sides.iter().enumerate() {
        match summaries[s] {
            Some(sum) => table.row([
                side.label.to_string(),
                fmt_ms(sum.median),
                fmt_ms(sum.p10),
                fmt_ms(sum.p90),
                fmt_ms(warmups[s]),
            ]),
            None => table.row([side.label, "n/a", "n/a", "n/a", "n/a"]),
        }
    }
    if let (Some(a), Some(b)) = (summaries[0], summaries[1]) {
        table.row([
            "ratio spore / runc".to_string(),
            ratio(a.median, b.median),
            ratio(a.p10, b.p10),
            ratio(a.p90, b.p90),
            ratio(warmups[0], warmups[1]),
        ]);
    }
    println!("{}", table.render());
    for (s, side) in sides.iter().enumerate() {
        if silent[s] > 0 {
            println!(
                "**{} of {} `{}` runs (warm-up included) exited 0 without printing {:?}.**\n",
                silent[s],
                n + 1,
                side.short,
                side.expect
            );
        }
    }
    let alone = Summary::of(ctr_alone).map_or(f64::NAN, |s| s.median);
    println!("`ctr version` alone (ctr's own start-up plus one RPC): median {alone:.1} ms\n");

    println!(
        "### Phases (median ms, N={n} each, from `ctr container create`, `ctr task start -d --null-io`, bundle file mtimes and the shims' task events)\n"
    );
    let rows: [(&str, PhaseField); 9] = [
        ("`ctr container create` (whole command)", |p| {
            p.container_create
        }),
        ("`ctr task start` launched → bundle written", |p| {
            p.until_bundle
        }),
        (
            "shim spawn (bundle → bootstrap.json: `shim start` answered)",
            |p| p.shim_spawn,
        ),
        ("task create in the shim (→ /tasks/create)", |p| p.create),
        ("task start (→ /tasks/start)", |p| p.start),
        ("run until exit (→ /tasks/exit)", |p| p.run),
        ("`ctr task start -d` (whole command)", |p| p.task_start_cmd),
        ("`ctr task delete` (whole command)", |p| p.task_delete),
        ("`ctr container delete` (whole command)", |p| {
            p.container_delete
        }),
    ];
    let mut table = Table::new(["phase", "spore", "runc", "spore / runc"]);
    for (name, field) in rows {
        let a = median_of(&phases[0], field);
        let b = median_of(&phases[1], field);
        table.row([name.to_string(), fmt_ms(a), fmt_ms(b), ratio(a, b)]);
    }
    println!("{}", table.render());
}
