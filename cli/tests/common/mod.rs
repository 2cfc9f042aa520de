//! Helpers for the CLI's integration tests: running the real `spore` binary with a private docker
//! config, plain-HTTP reads from the registry, Wasm test binaries from WAT, a tar writer for
//! ordinary image layers, and a second registry that demands a password.
#![allow(dead_code)] // each test file uses a different subset

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A component that imports two WASI interfaces and exports `wasi:cli/run@0.2.3`.
pub const CLI_COMPONENT_WAT: &str = r#"
    (component
      (import "wasi:cli/stdout@0.2.3" (instance))
      (import "wasi:cli/environment@0.2.3" (instance))
      (core module $m (func (export "run") (result i32) i32.const 0))
      (core instance $i (instantiate $m))
      (func $run (result (result)) (canon lift (core func $i "run")))
      (instance $inst (export "run" (func $run)))
      (export "wasi:cli/run@0.2.3" (instance $inst)))
"#;

/// A WASI preview1 command module that exits with 3.
pub const PREVIEW1_MODULE_WAT: &str = r#"
    (module
      (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
      (memory (export "memory") 1)
      (func (export "_start") i32.const 3 call $exit))
"#;

pub fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("test WAT is valid")
}

/// A scratch directory holding a docker config directory (empty unless written) for `spore`.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("spore-cli-test-")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(dir.path().join("docker")).expect("docker config dir");
        Workspace { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, bytes).expect("write test file");
        path
    }

    pub fn docker_config_file(&self) -> PathBuf {
        self.dir.path().join("docker").join("config.json")
    }

    pub fn write_docker_config(&self, json: &str) {
        std::fs::write(self.docker_config_file(), json).expect("write docker config");
    }

    /// Runs the `spore` binary with `DOCKER_CONFIG` pointing at this workspace.
    pub fn spore(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_spore"))
            .args(args)
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .env("HOME", self.dir.path())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("spore runs")
    }
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "spore failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

/// Asserts failure with exit code 1 and returns stderr.
pub fn failed(output: &Output) -> String {
    assert_eq!(
        output.status.code(),
        Some(1),
        "spore should fail:\nstdout: {}\nstderr: {}",
        stdout(output),
        stderr(output)
    );
    stderr(output)
}

/// A plain HTTP/1.0 answer.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// `GET path` over plain HTTP/1.0, the way any client would see the registry.
pub fn http_get(addr: SocketAddr, path: &str, accept: &str) -> HttpAnswer {
    let mut stream = TcpStream::connect(addr).expect("connect to registry");
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: {accept}\r\n\r\n"
    )
    .expect("write request");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read answer");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("HTTP header end");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let body = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    HttpAnswer {
        status,
        headers,
        body,
    }
}

/// `sha256:<hex>`.
pub fn sha256(bytes: &[u8]) -> String {
    spore_cli::artifact::sha256_digest(bytes)
}

/// An uncompressed tar archive (ustar) holding the given files, for ordinary image layers.
pub fn tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, content, mode) in files {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], value: u64| {
            let text = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        octal(&mut header[100..108], u64::from(*mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], content.len() as u64);
        octal(&mut header[136..148], 1_700_000_000);
        header[148..156].copy_from_slice(b"        ");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        let checksum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{checksum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(content);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Runs an async block on a fresh runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// Pushes an arbitrary image or artifact with oci-client (plain HTTP, anonymous), returning the
/// manifest URL.
pub fn push_raw(
    reference: &str,
    config_media_type: &str,
    config: Vec<u8>,
    layers: Vec<(&str, Vec<u8>)>,
) -> String {
    use oci_client::client::{Config, ImageLayer};
    use oci_client::manifest::{OCI_IMAGE_MEDIA_TYPE, OciImageManifest};
    use oci_client::secrets::RegistryAuth;

    let reference: oci_client::Reference = reference.parse().expect("reference");
    let client = spore_cli::registry::new_client(true).expect("client");
    let config = Config::new(config, config_media_type.to_string(), None);
    let layers: Vec<ImageLayer> = layers
        .into_iter()
        .map(|(media_type, data)| ImageLayer::new(data, media_type.to_string(), None))
        .collect();
    let mut manifest = OciImageManifest::build(&layers, &config, None);
    manifest.media_type = Some(OCI_IMAGE_MEDIA_TYPE.to_string());
    block_on(client.push(
        &reference,
        &layers,
        config,
        &RegistryAuth::Anonymous,
        Some(manifest),
    ))
    .expect("raw push")
    .manifest_url
}

/// A second registry that demands HTTP basic auth (htpasswd with a bcrypt hash made by the
/// `bcrypt` crate), on a free loopback port; stopped on drop.
pub struct AuthRegistry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl AuthRegistry {
    pub fn start(user: &str, password: &str) -> Self {
        let binary = spore_e2e::tools::which("docker-registry")
            .expect("docker-registry is installed (hack/setup.sh)");
        let dir = tempfile::Builder::new()
            .prefix("spore-auth-registry-")
            .tempdir()
            .expect("tempdir");
        let hash = bcrypt::hash_with_result(password, 4)
            .expect("bcrypt")
            .format_for_version(bcrypt::Version::TwoA);
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("htpasswd");
        let addr = spore_e2e::registry::free_loopback_port().expect("free port");
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
                 auth:\n  htpasswd:\n    realm: spore-test\n    path: {}\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display(),
                htpasswd.display()
            ),
        )
        .expect("config");
        let log = std::fs::File::create(dir.path().join("registry.log")).expect("log");
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        let registry = AuthRegistry { child, addr, dir };
        let start = Instant::now();
        while TcpStream::connect_timeout(&registry.addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the auth registry did not listen; log: {}",
                std::fs::read_to_string(registry.dir.path().join("registry.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A path that does not exist inside the workspace.
pub fn missing(workspace: &Workspace) -> PathBuf {
    let path = workspace.path("does-not-exist.wasm");
    assert!(!Path::new(&path).exists());
    path
}
