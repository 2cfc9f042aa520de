//! A real OCI registry (Debian's `docker-registry`, the CNCF distribution registry) on a free
//! loopback port, with its storage in a private temporary directory. Stopped on drop.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("docker-registry is not installed (run hack/setup.sh): {0}")]
    NotInstalled(String),
    #[error("could not prepare the registry's directory: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
    #[error("GET {url}: HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the registry did not listen on {addr} within {secs} s; its log: {log}")]
    NotReady {
        addr: SocketAddr,
        secs: u64,
        log: String,
    },
}

/// A manifest as the registry serves it.
#[derive(Debug)]
pub struct StoredManifest {
    /// The `Content-Type` it was pushed with.
    pub media_type: String,
    /// `Docker-Content-Digest`.
    pub digest: String,
    pub body: Vec<u8>,
}

pub struct Registry {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry on 127.0.0.1 at a free port and waits until it accepts connections.
    pub fn start() -> Result<Self, RegistryError> {
        let binary = crate::tools::which("docker-registry")
            .ok_or_else(|| RegistryError::NotInstalled("docker-registry not on PATH".into()))?;
        let dir = tempfile::Builder::new()
            .prefix("spore-registry-")
            .tempdir()?;
        let addr = free_loopback_port()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            ),
        )?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        let registry = Registry { child, addr, dir };
        registry.wait_ready(Duration::from_secs(15))?;
        Ok(registry)
    }

    /// `127.0.0.1:PORT`, the host part of image references in this registry.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// GETs a manifest as stored (`reference`: a tag or digest), accepting OCI and Docker
    /// manifest and index media types.
    pub fn manifest(&self, repo: &str, reference: &str) -> Result<StoredManifest, RegistryError> {
        let url = format!("http://{}/v2/{repo}/manifests/{reference}", self.host());
        let accept = [
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
        .join(", ");
        let response = crate::http::request("GET", &url, &[("Accept", &accept)], &[])?;
        if response.status != 200 {
            return Err(RegistryError::Status {
                url,
                status: response.status,
                body: response.text(),
            });
        }
        Ok(StoredManifest {
            media_type: response
                .header("content-type")
                .unwrap_or_default()
                .to_owned(),
            digest: response
                .header("docker-content-digest")
                .unwrap_or_default()
                .to_owned(),
            body: response.body,
        })
    }

    /// GETs a blob by digest.
    pub fn blob(&self, repo: &str, digest: &str) -> Result<Vec<u8>, RegistryError> {
        let url = format!("http://{}/v2/{repo}/blobs/{digest}", self.host());
        let response = crate::http::request("GET", &url, &[], &[])?;
        if response.status != 200 {
            return Err(RegistryError::Status {
                url,
                status: response.status,
                body: response.text(),
            });
        }
        Ok(response.body)
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("registry.log")
    }

    fn wait_ready(&self, limit: Duration) -> Result<(), RegistryError> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(RegistryError::NotReady {
            addr: self.addr,
            secs: limit.as_secs(),
            log: std::fs::read_to_string(self.log_path()).unwrap_or_default(),
        })
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Picks a free port on 127.0.0.1 by binding port 0 and releasing it.
pub fn free_loopback_port() -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listener.local_addr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_answers_the_distribution_api() {
        let registry = Registry::start().expect("registry starts");
        let mut stream = TcpStream::connect(registry.addr()).expect("connect");
        use std::io::{Read, Write};
        write!(
            stream,
            "GET /v2/ HTTP/1.0\r\nHost: {}\r\n\r\n",
            registry.host()
        )
        .expect("write");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        assert!(
            answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
            "{answer}"
        );
        assert!(
            answer.contains("Docker-Distribution-Api-Version: registry/2.0"),
            "{answer}"
        );
    }
}
