//! Fast guests under load never lose their output: many `ctr run --rm` of hello at once, with
//! both cores kept busy, each run's stdout checked whole. This is the test behind the old
//! "output occasionally lost" bug (see docs/architecture.md, "Output of fast guests").
//!
//! `SPORE_STRESS_RUNS` sets the number of runs (default 160).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{Fixture, text};

const PARALLEL: usize = 8;
const GREETING: &str = "Hello, world, from a Wasm component on Spore!";

fn runs() -> usize {
    std::env::var("SPORE_STRESS_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(160)
}

#[test]
fn fast_guests_under_load_keep_all_their_output() {
    let fixture = Arc::new(Fixture::start());
    let stop = Arc::new(AtomicBool::new(false));
    // Two busy threads: the scheduling delays that make races show up on a 2-core machine.
    let hogs: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for i in 0..100_000u64 {
                        x = x.wrapping_mul(31).wrapping_add(i);
                    }
                }
                std::hint::black_box(x)
            })
        })
        .collect();
    let total = runs();
    let workers: Vec<_> = (0..PARALLEL)
        .map(|worker| {
            let fixture = fixture.clone();
            std::thread::spawn(move || {
                let mut lost = Vec::new();
                for run in (worker..total).step_by(PARALLEL) {
                    let id = format!("stress-{run}");
                    let out = fixture.run(&id, &[], &["/hello.wasm", "a", "b"]);
                    let stdout = text(&out.stdout);
                    let whole = out.status.success()
                        && stdout.lines().next() == Some(GREETING)
                        && stdout.contains(r#"args: ["a", "b"]"#);
                    if !whole {
                        lost.push(format!(
                            "{id}: {} stdout={stdout:?} stderr={:?}",
                            out.status,
                            text(&out.stderr)
                        ));
                    }
                }
                lost
            })
        })
        .collect();
    let lost: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    for hog in hogs {
        let _ = hog.join();
    }
    assert!(
        lost.is_empty(),
        "{} of {total} runs lost output:\n{}",
        lost.len(),
        lost.join("\n")
    );
}
