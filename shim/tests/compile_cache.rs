//! The compiled-code cache with the real test guests (`bash hack/build-guests.sh`), no containerd:
//! hits after a miss, corrupt and foreign entries recompiled, precompiled input refused,
//! concurrent first uses, eviction by size and garbage collection by digest.

use std::path::Path;
use std::sync::{Arc, Barrier};

use spore_shim::wasm::cache::{
    CacheConfig, CacheError, CompileCache, ContentDigest, Origin, Source,
};
use spore_shim::wasm::compile::{self, Guest, WasmError};
use wasmtime::component::{Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::CommandPre;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

fn guest(target: &str, name: &str) -> Vec<u8> {
    spore_e2e::tools::guest_wasm(target, name).unwrap_or_else(|e| panic!("{e}"))
}

fn hello() -> Vec<u8> {
    guest("wasm32-wasip2", "hello")
}

fn engine() -> Engine {
    spore_shim::wasm::engine::new_engine().expect("engine")
}

fn open(engine: &Engine, dir: &Path, max_bytes: u64) -> CompileCache {
    CompileCache::open(
        engine,
        CacheConfig {
            dir: dir.to_path_buf(),
            max_bytes,
        },
    )
    .expect("cache opens")
}

const UNBOUNDED: u64 = u64::MAX;

fn counts(cache: &CompileCache) -> (u64, u64) {
    (cache.stats().hits(), cache.stats().misses())
}

struct State {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Runs a `wasi:cli/command` guest and returns what it printed.
fn run(engine: &Engine, guest: Guest) -> String {
    let Guest::Command(component) = guest else {
        panic!("expected a command component, got a {}", guest.kind())
    };
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("link WASI");
    let pre = CommandPre::new(linker.instantiate_pre(&component).expect("instantiate_pre"))
        .expect("command");
    let stdout = MemoryOutputPipe::new(1 << 16);
    let ctx = WasiCtx::builder().stdout(stdout.clone()).build();
    let mut store = Store::new(
        engine,
        State {
            ctx,
            table: ResourceTable::new(),
        },
    );
    // No epoch ticker here: a deadline that never comes.
    store.set_epoch_deadline(u64::MAX / 2);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let outcome = runtime.block_on(async {
        let command = pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiate");
        command
            .wasi_cli_run()
            .call_run(&mut store)
            .await
            .expect("run")
    });
    assert!(outcome.is_ok(), "the guest failed");
    String::from_utf8(stdout.contents().to_vec()).expect("utf-8")
}

fn compile_hello(engine: &Engine, cache: &CompileCache) -> Guest {
    let wasm = hello();
    compile::compile_cached(
        engine,
        cache,
        Path::new("/hello.wasm"),
        Source::file(&wasm),
        &wasm,
    )
    .expect("hello compiles")
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".cwasm"))
        .collect();
    names.sort();
    names
}

#[test]
fn a_second_use_hits_and_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let cache = open(&engine, dir.path(), UNBOUNDED);
    let first = compile_hello(&engine, &cache);
    assert_eq!(counts(&cache), (0, 1), "the first use compiles");
    assert!(run(&engine, first).contains("Hello, world"));
    let second = compile_hello(&engine, &cache);
    assert_eq!(counts(&cache), (1, 1), "the second use hits");
    assert!(run(&engine, second).contains("Hello, world"));
    assert_eq!(entries(dir.path()).len(), 1);

    // Another cache on the same directory (another pod's shim) hits too.
    let other = open(&engine, dir.path(), UNBOUNDED);
    let third = compile_hello(&engine, &other);
    assert_eq!(counts(&other), (1, 0));
    assert!(run(&engine, third).contains("Hello, world"));
}

#[test]
fn a_corrupt_entry_is_recompiled_and_replaced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let cache = open(&engine, dir.path(), UNBOUNDED);
    compile_hello(&engine, &cache);
    let entry = dir.path().join(&entries(dir.path())[0]);
    let mut bytes = std::fs::read(&entry).expect("read entry");
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0x5a;
    }
    std::fs::write(&entry, &bytes).expect("corrupt entry");

    // The code this process loaded before is unaffected; a new shim reads the disk.
    compile_hello(&engine, &cache);
    assert_eq!(counts(&cache), (1, 1));
    let next_pod = open(&engine, dir.path(), UNBOUNDED);
    let guest = compile_hello(&engine, &next_pod);
    assert_eq!(counts(&next_pod), (0, 1), "the corrupt entry was not used");
    assert!(run(&engine, guest).contains("Hello, world"));
    assert_ne!(
        std::fs::read(&entry).expect("read"),
        bytes,
        "the entry was replaced"
    );
    let third_pod = open(&engine, dir.path(), UNBOUNDED);
    compile_hello(&engine, &third_pod);
    assert_eq!(counts(&third_pod), (1, 0), "the replacement is used");
}

#[test]
fn an_entry_of_another_engine_is_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ours = engine();
    let mut config = Config::new();
    config.epoch_interruption(false);
    config.wasm_component_model(true);
    config.cranelift_opt_level(wasmtime::OptLevel::None);
    let theirs = Engine::new(&config).expect("engine");
    let their_cache = open(&theirs, dir.path(), UNBOUNDED);
    let our_cache = open(&ours, dir.path(), UNBOUNDED);
    assert_ne!(their_cache.fingerprint(), our_cache.fingerprint());

    let wasm = hello();
    let source = Source::file(&wasm);
    let their_key = their_cache.key(source.clone());
    let our_key = our_cache.key(source.clone());
    their_cache
        .get_or_compile(&theirs, &their_key, &wasm)
        .expect("their compile");
    // Their entry, placed under our name (a cache directory shared across wasmtime builds,
    // or a file copied by hand), is not trusted.
    std::fs::copy(
        their_cache.entry_path(&their_key),
        our_cache.entry_path(&our_key),
    )
    .expect("copy");
    let guest = compile_hello(&ours, &our_cache);
    assert_eq!(counts(&our_cache), (0, 1), "recompiled for our engine");
    assert!(run(&ours, guest).contains("Hello, world"));
    assert_eq!(
        entries(dir.path()).len(),
        2,
        "both engines keep their own entry"
    );
}

#[test]
fn a_file_spore_did_not_write_is_recompiled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let cache = open(&engine, dir.path(), UNBOUNDED);
    let wasm = hello();
    let key = cache.key(Source::file(&wasm));
    // wasmtime's own artifact, without Spore's trailer.
    let foreign = engine.precompile_component(&wasm).expect("precompile");
    std::fs::write(cache.entry_path(&key), &foreign).expect("plant");
    let guest = compile_hello(&engine, &cache);
    assert_eq!(counts(&cache), (0, 1));
    assert!(run(&engine, guest).contains("Hello, world"));
    let written = std::fs::read(cache.entry_path(&key)).expect("read");
    assert_ne!(written, foreign, "replaced by an entry Spore wrote");
}

#[test]
fn precompiled_code_given_as_wasm_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let cache = open(&engine, dir.path(), UNBOUNDED);
    let cwasm = engine.precompile_component(&hello()).expect("precompile");
    let err = match compile::compile_cached(
        &engine,
        &cache,
        Path::new("/app.wasm"),
        Source::file(&cwasm),
        &cwasm,
    ) {
        Ok(guest) => panic!("a precompiled blob was accepted as a {}", guest.kind()),
        Err(e) => e,
    };
    assert!(matches!(err, WasmError::Precompiled { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("/app.wasm is precompiled native code"),
        "{text}"
    );
    assert!(text.contains("publish the .wasm file"), "{text}");

    // The cache's own entry point refuses it too, whatever the caller checked.
    let key =
        cache.key(Source::layer(&ContentDigest::sha256_of(&cwasm).to_string()).expect("digest"));
    let err = match cache.get_or_compile(&engine, &key, &cwasm) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert!(
        matches!(err, CacheError::Precompiled { what: "component" }),
        "{err}"
    );
    // An arbitrary ELF file as well.
    let elf = std::fs::read("/bin/true").expect("/bin/true");
    let err = match cache.get_or_compile(&engine, &cache.key(Source::file(&elf)), &elf) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, CacheError::Precompiled { .. }), "{err}");
    assert_eq!(counts(&cache), (0, 0));
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn a_directory_others_can_write_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let err = match CompileCache::open(
        &engine(),
        CacheConfig {
            dir: dir.path().to_path_buf(),
            max_bytes: UNBOUNDED,
        },
    ) {
        Ok(_) => panic!("a world-writable cache directory was accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, CacheError::UnsafeDir { .. }), "{err}");
    assert!(err.to_string().contains("mode 777"), "{err}");
}

#[test]
fn a_layer_must_match_its_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let cache = open(&engine, dir.path(), UNBOUNDED);
    let wasm = hello();
    let wrong = Source::layer(&format!("sha256:{}", "0".repeat(64))).expect("digest");
    let err = match cache.get_or_compile(&engine, &cache.key(wrong), &wasm) {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    assert!(matches!(err, CacheError::DigestMismatch { .. }), "{err}");
}

#[test]
fn concurrent_first_uses_all_succeed_and_compile_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let cache = Arc::new(open(&engine, dir.path(), UNBOUNDED));
    let barrier = Arc::new(Barrier::new(4));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (engine, cache, barrier) = (engine.clone(), cache.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                compile_hello(&engine, &cache)
            })
        })
        .collect();
    for thread in threads {
        let guest = thread.join().expect("thread");
        assert!(run(&engine, guest).contains("Hello, world"));
    }
    assert_eq!(counts(&cache), (3, 1), "one compile, three hits");
    assert_eq!(entries(dir.path()).len(), 1);
}

#[test]
fn least_recently_used_entries_are_evicted_past_the_bound() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let names = ["hello", "exit3", "trap"];
    // Measure one entry, then bound the cache to about two of them.
    let probe = open(&engine, dir.path(), UNBOUNDED);
    compile_hello(&engine, &probe);
    let one = probe.total_bytes().expect("size");
    let cache = open(&engine, dir.path(), one * 2 + one / 2);
    let mut keys = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let wasm = guest("wasm32-wasip2", name);
        let key = cache.key(Source::file(&wasm));
        cache.get_or_compile(&engine, &key, &wasm).expect("compile");
        // Make the order of use unambiguous whatever the file system's clock resolution.
        let used =
            std::time::SystemTime::now() - std::time::Duration::from_secs(100 - i as u64 * 10);
        std::fs::File::options()
            .write(true)
            .open(cache.entry_path(&key))
            .expect("open")
            .set_modified(used)
            .expect("touch");
        keys.push(key);
    }
    assert!(
        !cache.entry_path(&keys[0]).exists(),
        "the oldest was evicted"
    );
    assert!(cache.entry_path(&keys[2]).exists(), "the newest stays");
    assert!(cache.total_bytes().expect("size") <= one * 2 + one / 2 + one);
    // Using the middle one makes it the most recent: a fourth entry then evicts the third.
    let exit3 = guest("wasm32-wasip2", "exit3");
    assert!(
        cache.load(&engine, &keys[1]).is_some(),
        "exit3 still cached"
    );
    let files = guest("wasm32-wasip2", "files");
    let key = cache.key(Source::file(&files));
    cache
        .get_or_compile(&engine, &key, &files)
        .expect("compile");
    assert!(
        cache.entry_path(&keys[1]).exists(),
        "recently used exit3 stays"
    );
    assert!(
        !cache.entry_path(&keys[2]).exists(),
        "trap was least recently used"
    );
    assert_eq!(cache.key(Source::file(&exit3)), keys[1]);
}

#[test]
fn garbage_collection_keeps_only_layers_still_in_the_content_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = engine();
    let cache = open(&engine, dir.path(), UNBOUNDED);
    let kept = hello();
    let gone = guest("wasm32-wasip2", "exit3");
    let from_file = guest("wasm32-wasip2", "trap");
    let kept_digest = ContentDigest::sha256_of(&kept);
    for wasm in [&kept, &gone] {
        let source = Source::layer(&ContentDigest::sha256_of(wasm).to_string()).expect("digest");
        assert_eq!(source.origin, Origin::Layer);
        cache
            .get_or_compile(&engine, &cache.key(source), wasm)
            .expect("compile");
    }
    cache
        .get_or_compile(&engine, &cache.key(Source::file(&from_file)), &from_file)
        .expect("compile");
    assert_eq!(entries(dir.path()).len(), 3);

    let removed = cache.retain(|digest| *digest == kept_digest).expect("gc");
    assert_eq!(removed.entries, 1);
    let left = entries(dir.path());
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(
        left.iter()
            .any(|n| n.starts_with("layer-") && n.contains(kept_digest.hex()))
    );
    assert!(
        left.iter().any(|n| n.starts_with("file-")),
        "rootfs entries are not collected"
    );
    let guest = compile::cached(
        &engine,
        &cache,
        Path::new("/hello.wasm"),
        Source::layer(&kept_digest.to_string()).expect("digest"),
    )
    .expect("still cached")
    .expect("classified");
    assert!(run(&engine, guest).contains("Hello, world"));
}

/// A `wasi:cli/run` component with `functions` distinct functions of arithmetic: megabytes of
/// code for the large case of the measurement.
fn large_component(functions: usize) -> Vec<u8> {
    use std::fmt::Write;
    let mut wat = String::from("(component (core module $m\n");
    for f in 0..functions {
        let _ = writeln!(
            wat,
            "(func $f{f} (export \"f{f}\") (param i32) (result i32) local.get 0"
        );
        for i in 0..120 {
            let _ = writeln!(
                wat,
                "i32.const {} i32.add i32.const {} i32.xor",
                f * 7 + i,
                i * 13 + 1
            );
        }
        wat.push_str(")\n");
    }
    wat.push_str(
        "(func (export \"run\") (result i32) i32.const 0))
        (core instance $i (instantiate $m))
        (func $run (result (result)) (canon lift (core func $i \"run\")))
        (instance $inst (export \"run\" (func $run)))
        (export \"wasi:cli/run@0.2.0\" (instance $inst)))",
    );
    wat::parse_str(&wat).expect("generated WAT")
}

fn median(mut samples: Vec<std::time::Duration>) -> std::time::Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// Cold (empty cache: compile, store, load) against warm (verify the entry and mmap it, then
/// instantiate and run) for a small and a large component. Run with
/// `cargo test -p spore-shim --test compile_cache -- --ignored --nocapture measure`.
#[test]
#[ignore = "a measurement, not a check: run it by name"]
fn measure_cold_and_warm_starts() {
    use std::time::Instant;
    let engine = engine();
    let cases = [
        ("small (hello.wasm)", hello()),
        ("large (generated)", large_component(3000)),
    ];
    let mut warm_medians = Vec::new();
    for (name, wasm) in cases {
        let source = Source::layer(&ContentDigest::sha256_of(&wasm).to_string()).expect("digest");
        let mut cold = Vec::new();
        let mut entry_bytes = 0;
        for _ in 0..3 {
            let dir = tempfile::tempdir().expect("tempdir");
            let cache = open(&engine, dir.path(), UNBOUNDED);
            let started = Instant::now();
            compile::compile_cached(&engine, &cache, Path::new("/x.wasm"), source.clone(), &wasm)
                .expect("compiles");
            cold.push(started.elapsed());
            entry_bytes = cache.total_bytes().expect("size");
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = open(&engine, dir.path(), UNBOUNDED);
        compile::compile_cached(&engine, &cache, Path::new("/x.wasm"), source.clone(), &wasm)
            .expect("compiles");
        let (mut load, mut start, mut memory) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..21 {
            let started = Instant::now();
            std::hint::black_box(
                compile::cached(&engine, &cache, Path::new("/x.wasm"), source.clone())
                    .expect("hit")
                    .expect("classified"),
            );
            memory.push(started.elapsed());
            // A new pod's shim: nothing loaded yet, the entry is read from disk.
            cache.forget_loaded();
            let started = Instant::now();
            let guest = compile::cached(&engine, &cache, Path::new("/x.wasm"), source.clone())
                .expect("hit")
                .expect("classified");
            load.push(started.elapsed());
            run(&engine, guest);
            start.push(started.elapsed());
        }
        let entry = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").path())
            .find(|p| p.extension().is_some_and(|x| x == "cwasm"))
            .expect("entry");
        let mut hash = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            let bytes = std::fs::read(&entry).expect("read");
            std::hint::black_box(ContentDigest::sha256_of(&bytes));
            hash.push(started.elapsed());
        }
        println!(
            "{name}: reading and hashing the entry alone: {:.2} ms",
            median(hash).as_secs_f64() * 1e3
        );
        let (cold, load, start) = (median(cold), median(load), median(start));
        println!(
            "{name}: wasm {} KiB, cache entry {} KiB; cold compile+store+load {:.1} ms; \
             warm (new shim) verify+mmap {:.2} ms, verify+mmap+instantiate+run {:.2} ms; \
             warm (same shim) {:.3} ms",
            wasm.len() / 1024,
            entry_bytes / 1024,
            cold.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
            start.as_secs_f64() * 1e3,
            median(memory).as_secs_f64() * 1e3,
        );
        warm_medians.push((load, start));
    }
    let ratio = |f: fn(&(std::time::Duration, std::time::Duration)) -> std::time::Duration| {
        f(&warm_medians[1]).as_secs_f64() / f(&warm_medians[0]).as_secs_f64()
    };
    println!(
        "large/small warm ratio: load {:.2}x, start {:.2}x",
        ratio(|m| m.0),
        ratio(|m| m.1)
    );
}
