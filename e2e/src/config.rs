//! containerd's config file for a test instance, in the 2.x layout (`version = 3`) or the 1.7
//! layout (`version = 2`), and the `hosts.toml` that lets it pull from a plain-HTTP registry.

use std::fmt::Write;
use std::path::Path;

use crate::containerd::ContainerdPaths;
use crate::tools::ContainerdVersion;

/// Plugins that cannot work here (no such filesystems, no tracing collector, no NRI socket
/// shared between instances) and would only add noise to the log.
const DISABLED_PLUGINS: &[&str] = &[
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.blockfile",
    "io.containerd.snapshotter.v1.erofs",
    "io.containerd.differ.v1.erofs",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
    "io.containerd.nri.v1.nri",
];

/// What the config depends on.
pub struct ConfigInput<'a> {
    pub version: ContainerdVersion,
    pub paths: &'a ContainerdPaths,
    pub cni_bin_dir: &'a Path,
    pub sandbox_image: &'a str,
    pub systemd_cgroup: bool,
    pub spore_options: &'a [(String, String)],
    /// Other runtime handlers, as `(handler name, runtime_type)` (a peer's shim, for benches).
    pub extra_runtimes: &'a [(String, String)],
    pub log_level: &'a str,
}

/// The CRI handler of Spore's shim with runc running the pod's sandbox (`Sandbox = "runc"`),
/// in every containerd the suite starts.
pub const SPORE_RUNC_SANDBOX_HANDLER: &str = "spore-runc-sandbox";

/// A TOML basic string.
pub fn toml_string(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn path_string(path: &Path) -> String {
    toml_string(&path.to_string_lossy())
}

/// The whole config file.
pub fn render(input: &ConfigInput<'_>) -> String {
    let p = input.paths;
    let disabled = DISABLED_PLUGINS
        .iter()
        .map(|name| toml_string(name))
        .collect::<Vec<_>>()
        .join(", ");
    let (layout, cri_runtime, cri_images, cri_grpc) = match input.version {
        ContainerdVersion::V2 => (
            3,
            "plugins.\"io.containerd.cri.v1.runtime\"",
            "plugins.\"io.containerd.cri.v1.images\"",
            "plugins.\"io.containerd.grpc.v1.cri\"",
        ),
        ContainerdVersion::V1_7 => (
            2,
            "plugins.\"io.containerd.grpc.v1.cri\"",
            "plugins.\"io.containerd.grpc.v1.cri\"",
            "plugins.\"io.containerd.grpc.v1.cri\"",
        ),
    };
    let mut out = String::new();
    let _ = writeln!(out, "# Written by spore-e2e for one test instance.");
    let _ = writeln!(out, "version = {layout}");
    let _ = writeln!(out, "root = {}", path_string(&p.root));
    let _ = writeln!(out, "state = {}", path_string(&p.state));
    let _ = writeln!(out, "disabled_plugins = [{disabled}]");
    let _ = writeln!(out);
    let _ = writeln!(out, "[grpc]\n  address = {}", path_string(&p.socket));
    let _ = writeln!(out, "[debug]\n  level = {}", toml_string(input.log_level));
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "[plugins.\"io.containerd.internal.v1.opt\"]\n  path = {}",
        path_string(&p.opt)
    );

    // CRI: images.
    let sandbox = toml_string(input.sandbox_image);
    let hosts = path_string(&p.hosts_dir);
    match input.version {
        ContainerdVersion::V2 => {
            let _ = writeln!(out, "[{cri_images}]\n  snapshotter = \"overlayfs\"");
            let _ = writeln!(out, "[{cri_images}.pinned_images]\n  sandbox = {sandbox}");
            let _ = writeln!(out, "[{cri_images}.registry]\n  config_path = {hosts}");
            let _ = writeln!(
                out,
                "[plugins.\"io.containerd.transfer.v1.local\"]\n  config_path = {hosts}"
            );
            let _ = writeln!(
                out,
                "[plugins.\"io.containerd.image-verifier.v1.bindir\"]\n  bin_dir = {}",
                path_string(&p.opt.join("image-verifier"))
            );
        }
        ContainerdVersion::V1_7 => {
            let _ = writeln!(out, "[{cri_images}.registry]\n  config_path = {hosts}");
        }
    }

    // CRI: runtime.
    let _ = writeln!(out, "[{cri_runtime}]");
    if input.version == ContainerdVersion::V1_7 {
        let _ = writeln!(out, "  sandbox_image = {sandbox}");
        let _ = writeln!(out, "  stream_server_address = \"127.0.0.1\"");
        let _ = writeln!(out, "  stream_server_port = \"0\"");
    }
    let _ = writeln!(out, "  restrict_oom_score_adj = true");
    let _ = writeln!(out, "  netns_mounts_under_state_dir = true");
    let _ = writeln!(out, "  enable_cdi = false");
    let _ = writeln!(out, "  cdi_spec_dirs = []");
    let _ = writeln!(out, "[{cri_runtime}.containerd]");
    let _ = writeln!(out, "  default_runtime_name = \"runc\"");
    if input.version == ContainerdVersion::V1_7 {
        let _ = writeln!(out, "  snapshotter = \"overlayfs\"");
    }
    let runtimes = format!("{cri_runtime}.containerd.runtimes");
    let systemd = input.systemd_cgroup;
    let _ = writeln!(
        out,
        "[{runtimes}.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n[{runtimes}.runc.options]\n  SystemdCgroup = {systemd}\n  Root = {}",
        path_string(&p.runc_root)
    );
    // `spore`, and the same shim with runc running the pod's sandbox (for comparison).
    for (handler, sandbox) in [("spore", None), (SPORE_RUNC_SANDBOX_HANDLER, Some("runc"))] {
        let _ = writeln!(
            out,
            "[{runtimes}.{handler}]\n  runtime_type = \"io.containerd.spore.v1\"\n  container_annotations = [\"io.kubernetes.container.terminationMessagePath\"]\n[{runtimes}.{handler}.options]\n  SystemdCgroup = {systemd}"
        );
        if let Some(sandbox) = sandbox {
            let _ = writeln!(out, "  Sandbox = {}", toml_string(sandbox));
        }
        for (key, raw) in input.spore_options {
            let _ = writeln!(out, "  {} = {raw}", toml_key(key));
        }
    }
    for (handler, runtime_type) in input.extra_runtimes {
        let _ = writeln!(
            out,
            "[{runtimes}.{}]\n  runtime_type = {}",
            toml_key(handler),
            toml_string(runtime_type)
        );
    }
    let _ = writeln!(out, "[{cri_runtime}.cni]");
    match input.version {
        ContainerdVersion::V2 => {
            let _ = writeln!(out, "  bin_dirs = [{}]", path_string(input.cni_bin_dir));
        }
        ContainerdVersion::V1_7 => {
            let _ = writeln!(out, "  bin_dir = {}", path_string(input.cni_bin_dir));
        }
    }
    let _ = writeln!(out, "  conf_dir = {}", path_string(&p.cni_conf_dir));
    let _ = writeln!(out, "  max_conf_num = 1");

    // CRI: the streaming server (exec/attach/port-forward) on a free loopback port (1.7 has
    // these keys in the one CRI table above).
    if input.version == ContainerdVersion::V2 {
        let _ = writeln!(
            out,
            "[{cri_grpc}]\n  stream_server_address = \"127.0.0.1\"\n  stream_server_port = \"0\""
        );
    }
    out
}

/// A bare TOML key when it is one, else a quoted key.
fn toml_key(key: &str) -> String {
    if !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        key.to_owned()
    } else {
        toml_string(key)
    }
}

/// `hosts.toml` for a registry served over plain HTTP on `host` (`host:port`).
pub fn hosts_toml(host: &str) -> String {
    let url = toml_string(&format!("http://{host}"));
    format!(
        "server = {url}\n\n[host.{url}]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n  skip_verify = true\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(
        version: ContainerdVersion,
        paths: &'a ContainerdPaths,
        opts: &'a [(String, String)],
    ) -> ConfigInput<'a> {
        ConfigInput {
            version,
            paths,
            cni_bin_dir: Path::new("/usr/lib/cni"),
            sandbox_image: "localhost/spore/pause:3.10",
            systemd_cgroup: false,
            spore_options: opts,
            extra_runtimes: &[],
            log_level: "info",
        }
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"a"b\c"#), r#""a\"b\\c""#);
        assert_eq!(toml_string("x\ny"), r#""x\ny""#);
        assert_eq!(toml_key("SystemdCgroup"), "SystemdCgroup");
        assert_eq!(toml_key("a.b"), "\"a.b\"");
    }

    #[test]
    fn v2_layout_uses_the_split_cri_plugins() {
        let paths = ContainerdPaths::for_tests("/tmp/x");
        let opts = [("LogLevel".to_owned(), "\"debug\"".to_owned())];
        let text = render(&input(ContainerdVersion::V2, &paths, &opts));
        assert!(text.contains("version = 3\n"));
        assert!(text.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.spore]\n  runtime_type = \"io.containerd.spore.v1\""));
        assert!(text.contains("runtimes.spore-runc-sandbox.options]\n  SystemdCgroup = false\n  Sandbox = \"runc\""), "{text}");
        assert!(text.contains("[plugins.\"io.containerd.cri.v1.images\".pinned_images]\n  sandbox = \"localhost/spore/pause:3.10\""));
        assert!(text.contains("restrict_oom_score_adj = true"));
        assert!(text.contains("bin_dirs = [\"/usr/lib/cni\"]"));
        assert!(text.contains("  LogLevel = \"debug\"\n"));
        assert!(text.contains("Root = \"/tmp/x/state/runc\""));
        assert!(!text.contains("sandbox_image"));
    }

    #[test]
    fn extra_runtimes_get_their_own_handler_table() {
        let paths = ContainerdPaths::for_tests("/tmp/x");
        let extra = [(
            "wasmtime".to_owned(),
            "io.containerd.wasmtime.v1".to_owned(),
        )];
        let config = ConfigInput {
            extra_runtimes: &extra,
            ..input(ContainerdVersion::V2, &paths, &[])
        };
        let text = render(&config);
        assert!(text.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.wasmtime]\n  runtime_type = \"io.containerd.wasmtime.v1\"\n"));
        assert!(!render(&input(ContainerdVersion::V2, &paths, &[])).contains("wasmtime"));
    }

    #[test]
    fn v1_7_layout_keeps_everything_under_the_grpc_cri_plugin() {
        let paths = ContainerdPaths::for_tests("/tmp/x");
        let text = render(&input(ContainerdVersion::V1_7, &paths, &[]));
        assert!(text.contains("version = 2\n"));
        assert!(text.contains("sandbox_image = \"localhost/spore/pause:3.10\""));
        assert!(text.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.spore]"));
        assert!(text.contains("bin_dir = \"/usr/lib/cni\""));
        assert!(!text.contains("io.containerd.cri.v1"));
        assert_eq!(
            text.matches("[plugins.\"io.containerd.grpc.v1.cri\"]\n")
                .count(),
            1
        );
    }

    #[test]
    fn hosts_toml_allows_plain_http() {
        let text = hosts_toml("127.0.0.1:5000");
        assert!(text.starts_with("server = \"http://127.0.0.1:5000\""));
        assert!(text.contains("[host.\"http://127.0.0.1:5000\"]"));
    }
}
