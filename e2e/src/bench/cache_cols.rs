//! The compile cache's columns of `spore-bench start` (issue 4): `ctr run --rm` of a small Wasm
//! (examples/rust/hello, a 79 KB component) and a large one (a generated WASI preview1 module of a few
//! MB of code), each cold (a fresh, empty cache directory per run) and warm (a directory that
//! already holds the compiled code). The cache directory reaches the shim as
//! `ctr run --runtime-config-path FILE`: containerd passes a non-runc shim
//! `runtimeoptions.v1.Options { config_path }` and the shim reads `CacheDir` from that TOML file.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::BenchError;
use super::fixture::{Fixture, guest_path};
use super::stats::{Summary, Table, fmt_ms, millis, ratio};
use crate::Containerd;
use crate::image::ImageBuilder;

const NAMESPACE: &str = "default";
const SPORE_RUNTIME: &str = spore_format::RUNTIME_TYPE;
/// The goal: a warm large start within 1.2x a warm small one.
pub const GOAL_WARM_RATIO: f64 = 1.2;
/// What the large module prints.
pub const LARGE_LINE: &str = "hello from the large module";
/// Functions in the large module, and `i32` add/xor pairs in each.
const LARGE_FUNCTIONS: usize = 3000;
const LARGE_PAIRS: usize = 120;

/// A WASI preview1 command module (`_start`) with `functions` generated functions of `pairs`
/// add/xor steps each; `_start` calls the first and the last, then prints [`LARGE_LINE`] with
/// `fd_write`. wasmtime compiles every function, so compile time and code size grow with both.
pub fn large_module_wat(functions: usize, pairs: usize) -> String {
    let mut wat = String::from(
        "(module\n\
         (import \"wasi_snapshot_preview1\" \"fd_write\" \
         (func $fd_write (param i32 i32 i32 i32) (result i32)))\n\
         (memory (export \"memory\") 1)\n",
    );
    let _ = writeln!(wat, "(data (i32.const 64) \"{LARGE_LINE}\\n\")");
    for f in 0..functions {
        let _ = writeln!(wat, "(func $f{f} (param i32) (result i32) local.get 0");
        for i in 0..pairs {
            let _ = writeln!(
                wat,
                "i32.const {} i32.add i32.const {} i32.xor",
                f * 7 + i,
                i * 13 + 1
            );
        }
        wat.push_str(")\n");
    }
    let last = functions.saturating_sub(1);
    wat.push_str("(func (export \"_start\")\n");
    if functions > 0 {
        let _ = writeln!(
            wat,
            "i32.const 32 i32.const 1 call $f0 call $f{last} i32.store"
        );
    }
    // iovec at 0: { buf = 64, len }; nwritten at 16.
    let _ = writeln!(
        wat,
        "i32.const 0 i32.const 64 i32.store\n\
         i32.const 4 i32.const {} i32.store\n\
         i32.const 1 i32.const 0 i32.const 1 i32.const 16 call $fd_write drop)\n)",
        LARGE_LINE.len() + 1
    );
    wat
}

/// The large module's bytes.
pub fn large_module() -> Result<Vec<u8>, BenchError> {
    wat::parse_str(large_module_wat(LARGE_FUNCTIONS, LARGE_PAIRS))
        .map_err(|e| BenchError::Generate(e.to_string()))
}

/// One of the two guests.
struct Case {
    label: &'static str,
    path: &'static str,
    expect: &'static str,
    wasm_bytes: usize,
}

/// Cold or warm.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Cache {
    Cold,
    Warm,
}

/// A cache directory and the runtime config file naming it.
struct CacheDir {
    dir: PathBuf,
    config: PathBuf,
}

impl CacheDir {
    /// A new, empty directory (mode 0700, owned by this process: root) and its config file.
    fn create(root: &Path, name: &str) -> Result<CacheDir, BenchError> {
        use std::os::unix::fs::DirBuilderExt;
        let dir = root.join(name);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|source| io(&dir, source))?;
        let config = root.join(format!("{name}.toml"));
        let quoted = serde_json::Value::from(dir.to_string_lossy()).to_string();
        std::fs::write(&config, format!("CacheDir = {quoted}\n"))
            .map_err(|source| io(&config, source))?;
        Ok(CacheDir { dir, config })
    }

    /// Bytes of compiled code entries (`*.cwasm`) in the directory.
    fn entry_bytes(&self) -> Result<u64, BenchError> {
        let entries = std::fs::read_dir(&self.dir).map_err(|source| io(&self.dir, source))?;
        let mut total = 0;
        for entry in entries {
            let entry = entry.map_err(|source| io(&self.dir, source))?;
            if entry.file_name().to_string_lossy().ends_with(".cwasm") {
                total += entry
                    .metadata()
                    .map_err(|source| io(&entry.path(), source))?
                    .len();
            }
        }
        Ok(total)
    }

    fn remove(self) -> Result<(), BenchError> {
        std::fs::remove_dir_all(&self.dir).map_err(|source| io(&self.dir, source))?;
        std::fs::remove_file(&self.config).map_err(|source| io(&self.config, source))
    }
}

fn io(path: &Path, source: std::io::Error) -> BenchError {
    BenchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Samples of one case: cold and warm milliseconds, the cache entry's size, silent runs.
#[derive(Default)]
struct Samples {
    cold: Vec<f64>,
    warm: Vec<f64>,
    warmup: [f64; 2],
    entry_bytes: u64,
    silent: usize,
}

/// Builds the image, runs `n` interleaved rounds (small cold, small warm, large cold, large
/// warm) after one discarded warm-up round that also fills the warm directory, and prints the
/// table.
pub fn run(fixture: &Fixture, n: usize) -> Result<(), BenchError> {
    let hello_path = guest_path("hello");
    let hello = std::fs::read(&hello_path).map_err(|source| BenchError::MissingGuest {
        path: hello_path,
        source,
    })?;
    let large = large_module()?;
    let cases = [
        Case {
            label: "small: examples/rust/hello (component)",
            path: "/hello.wasm",
            expect: "Hello",
            wasm_bytes: hello.len(),
        },
        Case {
            label: "large: generated preview1 module",
            path: "/large.wasm",
            expect: LARGE_LINE,
            wasm_bytes: large.len(),
        },
    ];
    let image = ImageBuilder::new()
        .file("/hello.wasm", hello)
        .file("/large.wasm", large)
        .entrypoint(["/hello.wasm"])
        .build()?
        .push_http(&fixture.registry.host(), "spore/bench-cache", "1")?;
    let containerd = &fixture.containerd;
    containerd.ctr_pull(NAMESPACE, &image)?;

    let root = tempfile::Builder::new()
        .prefix("spore-bench-cache-cols-")
        .tempdir()
        .map_err(|source| io(&std::env::temp_dir(), source))?;
    let warm = CacheDir::create(root.path(), "warm")?;
    eprintln!(
        "compile cache: {n} rounds after one warm-up of small/large x cold/warm, interleaved"
    );
    let mut samples = [Samples::default(), Samples::default()];
    for i in 0..=n {
        for (c, case) in cases.iter().enumerate() {
            for mode in [Cache::Cold, Cache::Warm] {
                let id = format!(
                    "cache-{}-{}-{i}",
                    if c == 0 { "small" } else { "large" },
                    if mode == Cache::Cold { "cold" } else { "warm" }
                );
                let cold = match mode {
                    Cache::Cold => Some(CacheDir::create(root.path(), &id)?),
                    Cache::Warm => None,
                };
                let config = cold.as_ref().unwrap_or(&warm);
                let (ms, printed) = run_rm(containerd, &image, &id, case, &config.config)?;
                let s = &mut samples[c];
                s.silent += usize::from(!printed);
                if let Some(cold) = cold {
                    let bytes = cold.entry_bytes()?;
                    if bytes == 0 {
                        return Err(BenchError::CacheUnused {
                            dir: cold.dir.clone(),
                        });
                    }
                    s.entry_bytes = bytes;
                    cold.remove()?;
                }
                let slot = usize::from(mode == Cache::Warm);
                match (i, mode) {
                    (0, _) => s.warmup[slot] = ms,
                    (_, Cache::Cold) => s.cold.push(ms),
                    (_, Cache::Warm) => s.warm.push(ms),
                }
            }
        }
    }
    print_table(n, &cases, &samples);
    Ok(())
}

/// `ctr run --rm --runtime spore --runtime-config-path CONFIG IMAGE ID PATH`: milliseconds, and
/// whether the expected line was printed.
fn run_rm(
    containerd: &Containerd,
    image: &str,
    id: &str,
    case: &Case,
    config: &Path,
) -> Result<(f64, bool), BenchError> {
    let config = config.to_string_lossy();
    let args = [
        "run",
        "--rm",
        "--runtime",
        SPORE_RUNTIME,
        "--runtime-config-path",
        &config,
        image,
        id,
        case.path,
    ];
    let started = Instant::now();
    let out = containerd.ctr_in(NAMESPACE, &args)?;
    let took = millis(started.elapsed());
    if !out.success() {
        return Err(BenchError::Ctr {
            args: args.join(" "),
            status: out.status,
            stderr: out.stderr,
        });
    }
    let printed = out.stdout.contains(case.expect);
    if !printed {
        eprintln!(
            "warning: `ctr {}` exited 0 but printed {:?}, not {:?}",
            args.join(" "),
            out.stdout,
            case.expect
        );
    }
    Ok((took, printed))
}

fn kib(bytes: u64) -> String {
    format!("{}", bytes.div_ceil(1024))
}

fn print_table(n: usize, cases: &[Case; 2], samples: &[Samples; 2]) {
    println!(
        "### Compiled-code cache: `ctr run --rm`, cold (fresh `CacheDir`) and warm (ms, N={n} each, interleaved, one warm-up round discarded)\n"
    );
    let mut table = Table::new([
        "component",
        "Wasm (KiB)",
        "cache entry (KiB)",
        "cold median",
        "cold p10",
        "cold p90",
        "warm median",
        "warm p10",
        "warm p90",
        "cold / warm",
    ]);
    // sums[case][0 = cold, 1 = warm]
    let sums: Vec<[Option<Summary>; 2]> = samples
        .iter()
        .map(|s| [Summary::of(&s.cold), Summary::of(&s.warm)])
        .collect();
    let field = |sum: Option<Summary>, f: fn(&Summary) -> f64| sum.as_ref().map_or(f64::NAN, f);
    for (c, case) in cases.iter().enumerate() {
        let [cold, warm] = sums[c];
        table.row([
            case.label.to_string(),
            kib(case.wasm_bytes as u64),
            kib(samples[c].entry_bytes),
            fmt_ms(field(cold, |s| s.median)),
            fmt_ms(field(cold, |s| s.p10)),
            fmt_ms(field(cold, |s| s.p90)),
            fmt_ms(field(warm, |s| s.median)),
            fmt_ms(field(warm, |s| s.p10)),
            fmt_ms(field(warm, |s| s.p90)),
            ratio(field(cold, |s| s.median), field(warm, |s| s.median)),
        ]);
    }
    let r = |mode: usize, f: fn(&Summary) -> f64| {
        ratio(field(sums[1][mode], f), field(sums[0][mode], f))
    };
    table.row([
        "ratio large / small".to_string(),
        ratio(cases[1].wasm_bytes as f64, cases[0].wasm_bytes as f64),
        ratio(samples[1].entry_bytes as f64, samples[0].entry_bytes as f64),
        r(0, |s| s.median),
        r(0, |s| s.p10),
        r(0, |s| s.p90),
        r(1, |s| s.median),
        r(1, |s| s.p10),
        r(1, |s| s.p90),
        String::new(),
    ]);
    println!("{}", table.render());
    println!(
        "warm-up round (discarded): small cold {} / warm {} ms (the warm one filled the cache), large cold {} / warm {} ms\n",
        fmt_ms(samples[0].warmup[0]),
        fmt_ms(samples[0].warmup[1]),
        fmt_ms(samples[1].warmup[0]),
        fmt_ms(samples[1].warmup[1]),
    );
    for (c, case) in cases.iter().enumerate() {
        if samples[c].silent > 0 {
            println!(
                "**{} of {} `{}` runs (warm-up included) exited 0 without printing {:?}.**\n",
                samples[c].silent,
                2 * (n + 1),
                case.path,
                case.expect
            );
        }
    }
    let warm_large = field(sums[1][1], |s| s.median);
    let warm_small = field(sums[0][1], |s| s.median);
    if warm_small > 0.0 && warm_large.is_finite() {
        let measured = warm_large / warm_small;
        println!(
            "Goal: warm large ≤ {GOAL_WARM_RATIO:.1}x warm small. Measured {measured:.2}x: **{}**.\n",
            if measured <= GOAL_WARM_RATIO {
                "met"
            } else {
                "not met"
            }
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_module_is_a_preview1_command_of_a_few_mb() {
        let wasm = large_module().expect("generated WAT parses");
        assert!(
            (2 << 20..8 << 20).contains(&wasm.len()),
            "{} bytes",
            wasm.len()
        );
        assert_eq!(&wasm[..4], b"\0asm");
        // A core module (version 1), not a component.
        assert_eq!(&wasm[4..8], &[1, 0, 0, 0]);
        let text = large_module_wat(2, 1);
        for needle in [
            "\"wasi_snapshot_preview1\" \"fd_write\"",
            "(export \"_start\")",
            "call $f0 call $f1",
            LARGE_LINE,
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }

    #[test]
    fn small_modules_generate_valid_wasm() {
        for functions in [0, 1, 5] {
            let text = large_module_wat(functions, 3);
            wat::parse_str(&text).unwrap_or_else(|e| panic!("{functions}: {e}\n{text}"));
        }
    }

    #[test]
    fn cache_dir_writes_its_config_and_counts_entries() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = CacheDir::create(root.path(), "c").expect("created");
        let config = std::fs::read_to_string(&dir.config).expect("config");
        assert_eq!(config, format!("CacheDir = \"{}\"\n", dir.dir.display()));
        assert_eq!(dir.entry_bytes().expect("empty"), 0);
        std::fs::write(dir.dir.join("x.cwasm"), [0u8; 10]).expect("write");
        std::fs::write(dir.dir.join("x.cwasm.lock"), [0u8; 3]).expect("write");
        assert_eq!(dir.entry_bytes().expect("one entry"), 10);
        let path = dir.dir.clone();
        dir.remove().expect("removed");
        assert!(!path.exists());
    }
}
