//! Name lookups of a guest, resolved exactly as a Linux container of the same pod resolves
//! them: the container's `/etc/hosts` first (the file the kubelet mounts there, with the pod's
//! `hostAliases`; else the image's), then the nameservers, search list and `ndots` of its
//! `/etc/resolv.conf` (the kubelet's, with the cluster's search domains), queries sent from the
//! pod's network namespace (the shim's). The node's own files are never read. No resolv.conf
//! in the container's view: only `/etc/hosts` and IP literals resolve.

use std::net::IpAddr;
use std::path::Path;
use std::sync::OnceLock;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;

use crate::spec::ContainerSpec;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum LookupError {
    #[error("{0:?} is not a valid host name")]
    InvalidName(String),
    #[error("{0} does not resolve")]
    NotFound(String),
    #[error("resolving {name}: {reason}")]
    Temporary { name: String, reason: String },
}

/// The container's `/etc/hosts` entries, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostsFile(Vec<(IpAddr, Vec<String>)>);

impl HostsFile {
    /// Parses the text of a hosts file: `ADDRESS NAME [ALIAS...]` lines, `#` comments.
    pub fn parse(text: &str) -> Self {
        let entries = text
            .lines()
            .filter_map(|line| {
                let line = line.split('#').next().unwrap_or_default();
                let mut fields = line.split_whitespace();
                let ip: IpAddr = fields.next()?.parse().ok()?;
                let names: Vec<String> = fields.map(str::to_ascii_lowercase).collect();
                (!names.is_empty()).then_some((ip, names))
            })
            .collect();
        HostsFile(entries)
    }

    /// Every address the file gives `name` (case-insensitive), in file order.
    pub fn lookup(&self, name: &str) -> Vec<IpAddr> {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let mut found: Vec<IpAddr> = Vec::new();
        for (ip, names) in &self.0 {
            if names.contains(&name) && !found.contains(ip) {
                found.push(*ip);
            }
        }
        found
    }
}

/// How one container resolves names.
pub struct ContainerNames {
    hosts: HostsFile,
    dns: Option<Dns>,
}

/// The nameservers of a container's resolv.conf, and the resolver for them, made at the first
/// name that needs DNS: a resolver (its cache, its name server pool) is about 29 KiB of heap,
/// kept for the pod's life, and most guests never ask.
struct Dns {
    config: ResolverConfig,
    options: ResolverOpts,
    resolver: OnceLock<Option<TokioResolver>>,
}

impl Dns {
    fn resolver(&self) -> Option<&TokioResolver> {
        self.resolver
            .get_or_init(|| {
                TokioResolver::builder_with_config(
                    self.config.clone(),
                    TokioRuntimeProvider::default(),
                )
                .with_options(self.options.clone())
                .build()
                .inspect_err(|err| tracing::warn!(%err, "cannot make a DNS resolver"))
                .ok()
            })
            .as_ref()
    }
}

impl std::fmt::Debug for ContainerNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContainerNames")
            .field("hosts", &self.hosts)
            .field("dns", &self.dns.is_some())
            .finish()
    }
}

/// The host path of the file the container sees at `in_container` (a file mount, else the
/// rootfs's file), when there is one.
fn container_file(spec: &ContainerSpec, in_container: &str) -> Option<Vec<u8>> {
    if let Some(mount) = spec.mounts.iter().find(|m| m.destination == in_container) {
        return std::fs::read(&mount.source).ok();
    }
    let mut file = crate::host::in_root::open_in_root(&spec.root, Path::new(in_container)).ok()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut file, 1 << 20), &mut bytes).ok()?;
    Some(bytes)
}

impl ContainerNames {
    /// The names of a container of `spec`, from the files in its view.
    pub fn for_container(spec: &ContainerSpec) -> Self {
        let hosts = container_file(spec, "/etc/hosts")
            .map(|bytes| HostsFile::parse(&String::from_utf8_lossy(&bytes)))
            .unwrap_or_default();
        let dns = container_file(spec, "/etc/resolv.conf").and_then(|bytes| dns(&bytes));
        ContainerNames { hosts, dns }
    }

    /// Names from `hosts` and, when given, the text of a resolv.conf.
    pub fn new(hosts: HostsFile, resolv_conf: Option<&[u8]>) -> Self {
        ContainerNames {
            hosts,
            dns: resolv_conf.and_then(dns),
        }
    }

    /// The addresses of `name`: an IP literal is itself; then `/etc/hosts`; then DNS.
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, LookupError> {
        let trimmed = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = trimmed.parse::<IpAddr>() {
            return Ok(vec![ip]);
        }
        if name.is_empty()
            || name.len() > 253
            || name.chars().any(|c| c.is_whitespace() || c == '/')
        {
            return Err(LookupError::InvalidName(name.to_string()));
        }
        let from_hosts = self.hosts.lookup(name);
        if !from_hosts.is_empty() {
            return Ok(from_hosts);
        }
        let Some(dns) = self.dns.as_ref().and_then(Dns::resolver) else {
            return Err(LookupError::NotFound(name.to_string()));
        };
        match dns.lookup_ip(name).await {
            Ok(found) => {
                let ips: Vec<IpAddr> = found.iter().collect();
                if ips.is_empty() {
                    Err(LookupError::NotFound(name.to_string()))
                } else {
                    Ok(ips)
                }
            }
            Err(err) if err.is_nx_domain() || err.is_no_records_found() => {
                Err(LookupError::NotFound(name.to_string()))
            }
            Err(err) => Err(LookupError::Temporary {
                name: name.to_string(),
                reason: err.to_string(),
            }),
        }
    }
}

/// The nameservers, search list and options of a resolv.conf; `None` when it names no
/// nameserver.
fn dns(resolv_conf: &[u8]) -> Option<Dns> {
    // A resolv.conf without a nameserver is an error here.
    let (config, mut options) =
        hickory_resolver::system_conf::parse_resolv_conf(resolv_conf).ok()?;
    // The container's /etc/hosts is consulted before; the node's never.
    options.use_hosts_file = ResolveHosts::Never;
    Some(Dns {
        config,
        options,
        resolver: OnceLock::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTS: &str = "\
# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost
10.244.0.5\tmy-pod
# Entries added by HostAliases.
10.1.2.3\tfoo.local\tbar.local
10.1.2.4\tfoo.local
";

    #[test]
    fn a_hosts_file_gives_every_address_of_a_name_in_order() {
        let hosts = HostsFile::parse(HOSTS);
        assert_eq!(
            hosts.lookup("FOO.local."),
            [
                "10.1.2.3".parse::<IpAddr>().expect("ip"),
                "10.1.2.4".parse().expect("ip")
            ]
        );
        assert_eq!(hosts.lookup("bar.local").len(), 1);
        assert_eq!(hosts.lookup("localhost").len(), 2);
        assert!(hosts.lookup("nothing").is_empty());
    }

    #[tokio::test]
    async fn hosts_and_literals_resolve_without_dns_and_nothing_else_does() {
        let names = ContainerNames::new(HostsFile::parse(HOSTS), None);
        assert_eq!(
            names.resolve("foo.local").await.expect("hosts")[0].to_string(),
            "10.1.2.3"
        );
        assert_eq!(
            names.resolve("192.0.2.7").await.expect("literal")[0].to_string(),
            "192.0.2.7"
        );
        // The node's /etc/hosts has "localhost" too, but only the container's file counts:
        // a name the node knows and the container does not stays unresolved.
        let host_only = ContainerNames::new(HostsFile::default(), None);
        assert_eq!(
            host_only.resolve("localhost").await,
            Err(LookupError::NotFound("localhost".into()))
        );
        assert!(matches!(
            names.resolve("bad name").await,
            Err(LookupError::InvalidName(_))
        ));
    }

    #[tokio::test]
    async fn a_resolv_conf_without_nameservers_gives_no_dns() {
        assert!(dns(b"search svc.cluster.local\noptions ndots:5\n").is_none());
        let with = dns(b"nameserver 10.96.0.10\nsearch default.svc.cluster.local\n");
        assert!(with.expect("nameservers").resolver().is_some());
    }

    /// Counts the whole process's heap: it needs a process of its own, as nextest (the
    /// project's runner, `hack/test.sh`) gives every test.
    #[tokio::test]
    #[cfg(target_env = "gnu")]
    async fn a_container_holds_no_resolver_until_a_name_needs_dns() {
        let in_use = || {
            // SAFETY: mallinfo2 only reads malloc's counters.
            unsafe { libc::mallinfo2() }.uordblks
        };
        const CONF: &[u8] = b"nameserver 10.96.0.10\nsearch default.svc.cluster.local \
            svc.cluster.local cluster.local\noptions ndots:5\n";
        // The first resolver made in a process also sets up what every later one shares.
        if let Some(warm) = ContainerNames::new(HostsFile::default(), Some(CONF)).dns {
            assert!(warm.resolver().is_some());
        }
        let before = in_use();
        let names = ContainerNames::new(HostsFile::parse(HOSTS), Some(CONF));
        assert_eq!(
            names.resolve("foo.local").await.expect("from hosts")[0].to_string(),
            "10.1.2.3"
        );
        let kept = in_use().saturating_sub(before);
        assert!(
            kept < 8 << 10,
            "names answered from /etc/hosts keep {kept} bytes (a resolver is about 29 KiB)"
        );
        assert!(
            names
                .dns
                .as_ref()
                .is_some_and(|d| d.resolver.get().is_none())
        );
    }
}
