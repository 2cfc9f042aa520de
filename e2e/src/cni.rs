//! A bridge CNI network private to one containerd instance: its own bridge, its own /24 subnet
//! (10.88.N.0/24, N leased through a lock file so that parallel tests — in this process or in
//! others — never share one), host-local IPAM with its state in the instance's directory, plus
//! the loopback and portmap plugins. Written as a conflist into the instance's CNI conf dir. The
//! benches ask for a wide network instead (a /21 in 10.89.0.0/16): 1,000 pods at once.

use std::fs::{File, OpenOptions};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

/// Where Debian's `containernetworking-plugins` puts the plugins.
pub const CNI_BIN_DIR: &str = "/usr/lib/cni";

/// Directory holding the lease lock files, shared by every harness on the machine.
const LEASE_DIR: &str = "/tmp/spore-e2e-locks";

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("could not write the CNI configuration in {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not open the subnet lease lock {path}: {source}")]
    Lease {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("every subnet 10.88.1.0/24 .. 10.88.254.0/24 is leased by another running test")]
    Exhausted,
    #[error("CNI plugins are not installed in {CNI_BIN_DIR} (run hack/setup.sh): {0} missing")]
    PluginMissing(&'static str),
}

/// A leased network number N in 1..=254, held for as long as this value lives (an exclusive
/// `flock` on `/tmp/spore-e2e-locks/net-N.lock`; the kernel drops it if the process dies).
#[derive(Debug)]
pub struct NetworkLease {
    number: u8,
    _lock: Flock<File>,
}

impl NetworkLease {
    /// Leases the first free network number, starting from one derived from the process id so
    /// that concurrent processes rarely contend for the same numbers.
    pub fn acquire() -> Result<Self, CniError> {
        let dir = Path::new(LEASE_DIR);
        std::fs::create_dir_all(dir).map_err(|source| CniError::Lease {
            path: dir.to_path_buf(),
            source,
        })?;
        let start = (std::process::id() % 254) as u8;
        for offset in 0..254u16 {
            let number = ((u16::from(start) + offset) % 254 + 1) as u8;
            let path = dir.join(format!("net-{number}.lock"));
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|source| CniError::Lease {
                    path: path.clone(),
                    source,
                })?;
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => {
                    return Ok(NetworkLease {
                        number,
                        _lock: lock,
                    });
                }
                Err((_, nix::errno::Errno::EWOULDBLOCK)) => continue,
                Err((_, errno)) => {
                    return Err(CniError::Lease {
                        path,
                        source: std::io::Error::from(errno),
                    });
                }
            }
        }
        Err(CniError::Exhausted)
    }

    pub fn number(&self) -> u8 {
        self.number
    }
}

/// The bridge network of one containerd instance.
#[derive(Debug)]
pub struct CniNetwork {
    lease: NetworkLease,
    conf_dir: PathBuf,
    ipam_dir: PathBuf,
    /// A /21 in 10.89.0.0/16 instead of the lease's /24 (see [`CniNetwork::subnet`]).
    wide: bool,
}

impl CniNetwork {
    /// Leases a subnet and writes `10-spore-e2e.conflist` into `conf_dir`; host-local IPAM keeps
    /// its allocations in `ipam_dir`.
    pub fn create(conf_dir: &Path, ipam_dir: &Path, wide: bool) -> Result<Self, CniError> {
        for plugin in ["bridge", "host-local", "loopback", "portmap"] {
            if !Path::new(CNI_BIN_DIR).join(plugin).is_file() {
                return Err(CniError::PluginMissing(plugin));
            }
        }
        let lease = NetworkLease::acquire()?;
        let network = CniNetwork {
            lease,
            conf_dir: conf_dir.to_path_buf(),
            ipam_dir: ipam_dir.to_path_buf(),
            wide,
        };
        for dir in [conf_dir, ipam_dir] {
            std::fs::create_dir_all(dir).map_err(|source| CniError::Write {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let path = network.conflist_path();
        std::fs::write(&path, network.conflist())
            .map_err(|source| CniError::Write { path, source })?;
        // Whatever a crashed process left under this lease's name is stale now.
        network.remove_bridge();
        network.remove_cached_results();
        Ok(network)
    }

    /// The CNI network name, unique per lease: `spore-e2e-N`.
    pub fn name(&self) -> String {
        format!("spore-e2e-{}", self.lease.number())
    }

    /// The Linux bridge the plugin creates: `spore-brN` (at most 15 bytes).
    pub fn bridge(&self) -> String {
        format!("spore-br{}", self.lease.number())
    }

    /// `10.88.N.0/24`; a wide network `10.89.M.0/21` with M = 8 × (N mod 32) (two wide
    /// networks whose leases are 32 apart would overlap: wide networks are for benches, one at
    /// a time).
    pub fn subnet(&self) -> String {
        let gateway = self.gateway().octets();
        let prefix = if self.wide { 21 } else { 24 };
        format!("{}.{}.{}.0/{prefix}", gateway[0], gateway[1], gateway[2])
    }

    /// The subnet's first address: the bridge's address and the pods' default gateway.
    pub fn gateway(&self) -> Ipv4Addr {
        if self.wide {
            Ipv4Addr::new(10, 89, 8 * (self.lease.number() % 32), 1)
        } else {
            Ipv4Addr::new(10, 88, self.lease.number(), 1)
        }
    }

    /// Whether `ip` is a pod address of this network.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let [a, b, c, _] = ip.octets();
        let [ga, gb, gc, _] = self.gateway().octets();
        let in_subnet = if self.wide {
            a == ga && b == gb && c & !7 == gc
        } else {
            a == ga && b == gb && c == gc
        };
        in_subnet && ip != self.gateway()
    }

    pub fn conf_dir(&self) -> &Path {
        &self.conf_dir
    }

    pub fn conflist_path(&self) -> PathBuf {
        self.conf_dir.join("10-spore-e2e.conflist")
    }

    /// The conflist: bridge with host-local IPAM, then portmap. The pod's `lo` is brought up by
    /// containerd itself, which runs the `loopback` plugin from the same bin dir for every pod
    /// (listing it in this chain would run it a second time against `eth0`).
    pub fn conflist(&self) -> String {
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": self.name(),
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge(),
                    "isGateway": true,
                    "ipMasq": false,
                    "hairpinMode": true,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": self.ipam_dir,
                        "ranges": [[{ "subnet": self.subnet(), "gateway": self.gateway().to_string() }]],
                        "routes": [{ "dst": "0.0.0.0/0" }]
                    }
                },
                { "type": "portmap", "capabilities": { "portMappings": true } }
            ]
        });
        format!("{conf:#}\n")
    }

    /// Deletes the bridge the plugin created (CNI DEL leaves it). Quietly does nothing when the
    /// bridge does not exist.
    pub fn remove_bridge(&self) {
        let bridge = self.bridge();
        if Path::new("/sys/class/net").join(&bridge).exists() {
            let status = Command::new("ip")
                .args(["link", "delete", &bridge])
                .status();
            if !matches!(status, Ok(s) if s.success()) {
                tracing::warn!(%bridge, ?status, "could not delete the CNI bridge");
            }
        }
    }

    /// Whether the bridge exists on the host.
    pub fn bridge_exists(&self) -> bool {
        Path::new("/sys/class/net").join(self.bridge()).exists()
    }
}

/// libcni's result cache, shared by every CNI user on the machine.
const CNI_RESULT_CACHE: &str = "/var/lib/cni/results";

impl CniNetwork {
    /// Removes libcni's cached results for this network (`<name>-<sandbox>-eth0`) and the
    /// matching loopback entries, which stay behind when a pod's network was never torn down
    /// through CNI DEL (a test that failed half way). Returns the sandbox ids it cleaned.
    pub fn remove_cached_results(&self) -> Vec<String> {
        let prefix = format!("{}-", self.name());
        let Ok(entries) = std::fs::read_dir(CNI_RESULT_CACHE) else {
            return Vec::new();
        };
        let mut sandboxes = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(&prefix) else {
                continue;
            };
            let Some((sandbox, _ifname)) = rest.rsplit_once('-') else {
                continue;
            };
            let _ = std::fs::remove_file(entry.path());
            let loopback = Path::new(CNI_RESULT_CACHE).join(format!("cni-loopback-{sandbox}-lo"));
            let _ = std::fs::remove_file(loopback);
            sandboxes.push(sandbox.to_owned());
        }
        sandboxes
    }
}

impl Drop for CniNetwork {
    fn drop(&mut self) {
        self.remove_bridge();
        self.remove_cached_results();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_unique_while_held() {
        let first = NetworkLease::acquire().expect("first lease");
        let second = NetworkLease::acquire().expect("second lease");
        assert_ne!(first.number(), second.number());
        let number = first.number();
        drop(first);
        // The number is free again: some later acquisition may take it.
        let path = Path::new(LEASE_DIR).join(format!("net-{number}.lock"));
        let file = File::options()
            .write(true)
            .open(path)
            .expect("lock file exists");
        assert!(Flock::lock(file, FlockArg::LockExclusiveNonblock).is_ok());
    }

    #[test]
    fn conflist_names_a_private_subnet_and_bridge() {
        let dir = tempfile::tempdir().expect("tempdir");
        let network =
            CniNetwork::create(&dir.path().join("net.d"), &dir.path().join("ipam"), false)
                .expect("network");
        let text = std::fs::read_to_string(network.conflist_path()).expect("conflist written");
        let conf: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(conf["name"], network.name());
        let bridge = &conf["plugins"][0];
        assert_eq!(bridge["type"], "bridge");
        assert_eq!(bridge["bridge"], network.bridge());
        assert!(network.bridge().len() <= 15);
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], network.subnet());
        assert_eq!(
            bridge["ipam"]["dataDir"],
            dir.path().join("ipam").display().to_string()
        );
        let types: Vec<_> = conf["plugins"]
            .as_array()
            .expect("plugins")
            .iter()
            .map(|p| p["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(types, ["bridge", "portmap"]);
        let n = network.lease.number();
        assert!(network.contains(Ipv4Addr::new(10, 88, n, 7)));
        assert!(!network.contains(network.gateway()));
        assert!(!network.contains(Ipv4Addr::new(10, 89, n, 7)));
    }

    #[test]
    fn a_wide_network_holds_two_thousand_pods() {
        let dir = tempfile::tempdir().expect("tempdir");
        let network = CniNetwork::create(&dir.path().join("net.d"), &dir.path().join("ipam"), true)
            .expect("network");
        let [_, _, c, _] = network.gateway().octets();
        assert_eq!(c % 8, 0);
        assert_eq!(network.subnet(), format!("10.89.{c}.0/21"));
        assert!(network.contains(Ipv4Addr::new(10, 89, c + 7, 254)));
        assert!(network.contains(Ipv4Addr::new(10, 89, c, 2)));
        assert!(!network.contains(network.gateway()));
        assert!(!network.contains(Ipv4Addr::new(10, 89, c.wrapping_add(8), 2)));
        assert!(!network.contains(Ipv4Addr::new(10, 88, c, 2)));
    }
}
