//! What both benches start from: a loopback registry, a private containerd whose `spore`
//! runtime is the shim in `shim_dir`, and the images, pushed to the registry.

use std::path::{Path, PathBuf};

use super::BenchError;
use crate::image::{BuiltImage, ImageBuilder, busybox};
use crate::{Containerd, ContainerdOptions, CriClient, Registry};

pub struct Fixture {
    pub registry: Registry,
    pub containerd: Containerd,
    /// `/hello.wasm` and `/hello-http.wasm` in a plain image.
    pub wasm_image: String,
    /// Debian's static busybox.
    pub busybox_image: String,
    /// The `spore` CRI handler's compile cache (`CacheDir`), fresh for each run, so a pod
    /// bench's warm-up compiles. `ctr run` passes no runtime options: the `start` bench's shim
    /// uses its default cache (`/var/lib/spore/cache`).
    pub cache_dir: tempfile::TempDir,
}

/// Where `hack/build-guests.sh` puts a wasm32-wasip2 guest.
pub fn guest_path(name: &str) -> PathBuf {
    crate::tools::target_dir()
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{name}.wasm"))
}

fn read_guest(name: &str) -> Result<Vec<u8>, BenchError> {
    let path = guest_path(name);
    std::fs::read(&path).map_err(|source| BenchError::MissingGuest { path, source })
}

/// The Wasm side's image: `/hello.wasm` (prints a line and exits) and `/hello-http.wasm` (an
/// idle `wasi:http` server), the first as its entrypoint.
pub fn wasm_image() -> Result<BuiltImage, BenchError> {
    Ok(ImageBuilder::new()
        .file("/hello.wasm", read_guest("hello")?)
        .file("/hello-http.wasm", read_guest("hello-http")?)
        .entrypoint(["/hello.wasm"])
        .build()?)
}

impl Fixture {
    /// `import_pause` for the CRI (the pod bench); `ctr run` needs none. `env` is set for
    /// containerd and its shims (`--containerd-env`).
    pub fn start(
        shim_dir: &Path,
        import_pause: bool,
        env: &[(String, String)],
    ) -> Result<Fixture, BenchError> {
        Fixture::start_with_runtimes(shim_dir, import_pause, &[], env)
    }

    /// As [`Fixture::start`], with more CRI runtime handlers (`(handler, runtime_type)`), whose
    /// shims containerd finds on its `PATH`.
    pub fn start_with_runtimes(
        shim_dir: &Path,
        import_pause: bool,
        runtimes: &[(String, String)],
        env: &[(String, String)],
    ) -> Result<Fixture, BenchError> {
        let shim = shim_dir.join(spore_format::SHIM_BINARY);
        if !shim.is_file() {
            return Err(BenchError::Io {
                path: shim,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no shim there (cargo build --release -p spore-shim)",
                ),
            });
        }
        let wasm = wasm_image()?;
        let cache_dir = tempfile::Builder::new()
            .prefix("spore-bench-cache-")
            .tempdir()
            .map_err(|source| BenchError::Io {
                path: std::env::temp_dir(),
                source,
            })?;
        let cache_toml = serde_json::Value::from(cache_dir.path().to_string_lossy()).to_string();
        let registry = Registry::start()?;
        let mut options = ContainerdOptions::default()
            .shim_dir(shim_dir)
            .spore_option("CacheDir", cache_toml)
            .plain_http_registry(registry.host())
            .import_pause_image(import_pause)
            .wide_pod_network(true);
        for (handler, runtime_type) in runtimes {
            options = options.runtime(handler, runtime_type);
        }
        for (key, value) in env {
            options = options.env(key, value);
        }
        let containerd = Containerd::start(options)?;
        let wasm_image = wasm.push_http(&registry.host(), "spore/bench-wasm", "1")?;
        let busybox_image =
            busybox()?
                .build()?
                .push_http(&registry.host(), "spore/bench-busybox", "1")?;
        Ok(Fixture {
            registry,
            containerd,
            wasm_image,
            busybox_image,
            cache_dir,
        })
    }
}

impl Fixture {
    /// A plain image with the component `wasm` at `/app.wasm` as its entrypoint, pushed as
    /// `repo:1` and pulled through CRI; returns its reference and the component's size in bytes.
    pub async fn push_component(
        &self,
        cri: &mut CriClient,
        wasm: &Path,
        repo: &str,
    ) -> Result<(String, u64), BenchError> {
        let bytes = std::fs::read(wasm).map_err(|source| BenchError::MissingGuest {
            path: wasm.to_path_buf(),
            source,
        })?;
        let size = bytes.len() as u64;
        let reference = ImageBuilder::new()
            .file("/app.wasm", bytes)
            .entrypoint(["/app.wasm"])
            .build()?
            .push_http(&self.registry.host(), repo, "1")?;
        cri.pull_image(&reference).await?;
        Ok((reference, size))
    }
}

/// `nproc`, the kernel and the load, for the record.
pub fn machine_line() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cores} cores, kernel {}, load average {}",
        kernel.trim(),
        load.join(" ")
    )
}
