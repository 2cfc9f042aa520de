//! The command line: `spore-bench MODE [N] [--flags]`.

use std::path::PathBuf;
use std::time::Duration;

use super::BenchError;

pub const USAGE: &str = "spore-bench start|pod|languages|http|kubelet [N] [--shim-dir DIR] [--handler-a H] [--handler-b H] [--handler-c H|none] \
[--pods 1,10,100] [--skip-latency] [--skip-memory] [--cache-n N] [--skip-cache] \
[--seconds S] [--connections 1,16,50] [--wasmtime PATH] \
[--kubeconfig PATH] [--registry HOST:PORT] [--containerd-socket PATH] [--pod-logs DIR] \
[--containerd-env KEY=VALUE]...";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `ctr run --rm` latency, Spore vs runc, with Spore's phases.
    Start,
    /// CRI pod latency and per-pod memory.
    Pod,
    /// The Rust, JavaScript and Python examples: size, cold and warm start, req/s.
    Languages,
    /// HTTP req/s and latency: Spore, runwasi's shim, `wasmtime serve`.
    Http,
    /// Pod start latency and per-pod memory through a real kubelet (a cluster's kubeconfig),
    /// read on its node.
    Kubelet,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BenchArgs {
    pub mode: Mode,
    /// Measured runs per side (after one discarded warm-up).
    pub n: usize,
    /// Where `containerd-shim-spore-v1` is (default `target/release`).
    pub shim_dir: PathBuf,
    /// The pod bench's first side: `spore` runs Wasm guests, any other handler busybox.
    pub handler_a: String,
    /// The pod bench's second side, the one the others are compared with.
    pub handler_b: String,
    /// The pod bench's third side (default `spore-runc-sandbox`, Spore with runc running the
    /// pod's sandbox); `--handler-c none` leaves it out.
    pub handler_c: Option<String>,
    /// Pod counts at which memory is measured.
    pub pod_counts: Vec<usize>,
    pub skip_latency: bool,
    pub skip_memory: bool,
    /// `start`: measured rounds of the compile cache's cold/warm columns.
    pub cache_n: usize,
    /// `start`: leave the compile cache's columns out.
    pub skip_cache: bool,
    /// `http`: how long each load run lasts.
    pub seconds: Duration,
    /// `http`: the connection counts loaded.
    pub connections: Vec<usize>,
    /// `http`: the `wasmtime` binary whose `serve` is compared (default
    /// `.tools/wasmtime-cli/bin/wasmtime`, where `hack/bench-http.sh` installs it).
    pub wasmtime: Option<PathBuf>,
    /// `kubelet`: where the bench meets the cluster and its node.
    pub cluster: ClusterArgs,
    /// Environment for the bench's private containerd (and so its shims), e.g. `GOMAXPROCS=4`
    /// or `SPORE_SHIM_LOG=spore_shim=debug`.
    pub containerd_env: Vec<(String, String)>,
}

/// `kubelet`: the cluster (from `SPORE_E2E_KUBECONFIG` and `SPORE_E2E_REGISTRY` unless a flag
/// says otherwise) and where its node keeps what the bench reads. The bench runs on the node.
#[derive(Clone, Debug, PartialEq)]
pub struct ClusterArgs {
    pub kubeconfig: Option<PathBuf>,
    /// The registry the node pulls from and this machine pushes to over plain HTTP.
    pub registry: Option<String>,
    /// The node's containerd socket: its shims name it on their command lines.
    pub containerd_socket: PathBuf,
    /// The kubelet's pod log directory.
    pub pod_logs: PathBuf,
}

impl ClusterArgs {
    fn from_env() -> ClusterArgs {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        ClusterArgs {
            kubeconfig: var("SPORE_E2E_KUBECONFIG").map(PathBuf::from),
            registry: var("SPORE_E2E_REGISTRY"),
            containerd_socket: PathBuf::from("/run/containerd/containerd.sock"),
            pod_logs: PathBuf::from("/var/log/pods"),
        }
    }
}

impl BenchArgs {
    pub fn parse<S: AsRef<str>>(argv: &[S]) -> Result<BenchArgs, BenchError> {
        let mut argv = argv.iter().map(AsRef::as_ref);
        let mode = match argv.next() {
            Some("start") => Mode::Start,
            Some("pod") => Mode::Pod,
            Some("languages") => Mode::Languages,
            Some("http") => Mode::Http,
            Some("kubelet") => Mode::Kubelet,
            Some(other) => return Err(usage(format!("unknown mode {other:?}"))),
            None => return Err(usage("a mode is required".into())),
        };
        let mut args = BenchArgs {
            mode,
            n: match mode {
                Mode::Start => 20,
                Mode::Pod => 10,
                Mode::Languages => 5,
                Mode::Http => 3,
                Mode::Kubelet => 10,
            },
            shim_dir: crate::tools::target_dir().join("release"),
            handler_a: "spore".into(),
            handler_b: "runc".into(),
            handler_c: Some(crate::config::SPORE_RUNC_SANDBOX_HANDLER.into()),
            pod_counts: vec![1, 10, 100],
            skip_latency: false,
            skip_memory: false,
            cache_n: 10,
            skip_cache: false,
            seconds: Duration::from_secs(10),
            connections: vec![1, 16, 50],
            wasmtime: None,
            cluster: ClusterArgs::from_env(),
            containerd_env: Vec::new(),
        };
        while let Some(arg) = argv.next() {
            let mut value = |flag: &str| {
                argv.next()
                    .map(str::to_owned)
                    .ok_or_else(|| usage(format!("{flag} needs a value")))
            };
            match arg {
                "--n" => args.n = parse_count(&value("--n")?)?,
                "--shim-dir" => args.shim_dir = PathBuf::from(value("--shim-dir")?),
                "--handler-a" => args.handler_a = value("--handler-a")?,
                "--handler-b" => args.handler_b = value("--handler-b")?,
                "--handler-c" => {
                    args.handler_c = Some(value("--handler-c")?).filter(|h| h != "none")
                }
                "--pods" => {
                    args.pod_counts = value("--pods")?
                        .split(',')
                        .map(parse_count)
                        .collect::<Result<_, _>>()?;
                    args.pod_counts.sort_unstable();
                    args.pod_counts.dedup();
                }
                "--skip-latency" => args.skip_latency = true,
                "--skip-memory" => args.skip_memory = true,
                "--cache-n" => args.cache_n = parse_count(&value("--cache-n")?)?,
                "--skip-cache" => args.skip_cache = true,
                "--seconds" => {
                    args.seconds = Duration::from_secs(parse_count(&value("--seconds")?)? as u64)
                }
                "--connections" => {
                    args.connections = value("--connections")?
                        .split(',')
                        .map(parse_count)
                        .collect::<Result<_, _>>()?;
                }
                "--wasmtime" => args.wasmtime = Some(PathBuf::from(value("--wasmtime")?)),
                "--kubeconfig" => {
                    args.cluster.kubeconfig = Some(PathBuf::from(value("--kubeconfig")?))
                }
                "--registry" => args.cluster.registry = Some(value("--registry")?),
                "--containerd-socket" => {
                    args.cluster.containerd_socket = PathBuf::from(value("--containerd-socket")?)
                }
                "--pod-logs" => args.cluster.pod_logs = PathBuf::from(value("--pod-logs")?),
                "--containerd-env" => {
                    let pair = value("--containerd-env")?;
                    match pair.split_once('=') {
                        Some((key, val)) if !key.is_empty() => {
                            args.containerd_env.push((key.to_owned(), val.to_owned()))
                        }
                        _ => {
                            return Err(usage(format!(
                                "--containerd-env {pair:?} is not KEY=VALUE"
                            )));
                        }
                    }
                }
                positional if !positional.starts_with('-') => args.n = parse_count(positional)?,
                flag => return Err(usage(format!("unknown flag {flag:?}"))),
            }
        }
        if args.mode == Mode::Kubelet && !args.containerd_env.is_empty() {
            return Err(usage(
                "--containerd-env sets the bench's own containerd; `kubelet` uses the node's"
                    .into(),
            ));
        }
        Ok(args)
    }
}

fn parse_count(text: &str) -> Result<usize, BenchError> {
    match text.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(usage(format!("{text:?} is not a positive count"))),
    }
}

fn usage(problem: String) -> BenchError {
    BenchError::Usage(format!("{problem}\n  {USAGE}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_have_their_defaults() {
        let start = BenchArgs::parse(&["start"]).expect("valid");
        assert_eq!((start.mode, start.n), (Mode::Start, 20));
        assert!(start.shim_dir.ends_with("release"));
        assert_eq!((start.cache_n, start.skip_cache), (10, false));
        let pod = BenchArgs::parse(&["pod"]).expect("valid");
        assert_eq!((pod.mode, pod.n), (Mode::Pod, 10));
        assert_eq!(
            (pod.handler_a.as_str(), pod.handler_b.as_str()),
            ("spore", "runc")
        );
        assert_eq!(pod.handler_c.as_deref(), Some("spore-runc-sandbox"));
        assert_eq!(pod.pod_counts, [1, 10, 100]);
        let languages = BenchArgs::parse(&["languages", "3"]).expect("valid");
        assert_eq!((languages.mode, languages.n), (Mode::Languages, 3));
        let http = BenchArgs::parse(&["http"]).expect("valid");
        assert_eq!((http.mode, http.n), (Mode::Http, 3));
        assert_eq!(http.seconds, Duration::from_secs(10));
        assert_eq!(http.connections, [1, 16, 50]);
        let http = BenchArgs::parse(&[
            "http",
            "--seconds",
            "2",
            "--connections",
            "4,1",
            "--wasmtime",
            "/w",
        ])
        .expect("valid");
        assert_eq!(
            (http.seconds.as_secs(), &http.connections[..]),
            (2, &[4, 1][..])
        );
        assert_eq!(http.wasmtime, Some(PathBuf::from("/w")));
        let kubelet = BenchArgs::parse(&[
            "kubelet",
            "--kubeconfig",
            "/k",
            "--registry",
            "localhost:5001",
            "--containerd-socket",
            "/run/c.sock",
            "--pod-logs",
            "/logs",
        ])
        .expect("valid");
        assert_eq!((kubelet.mode, kubelet.n), (Mode::Kubelet, 10));
        assert_eq!(
            kubelet.cluster,
            ClusterArgs {
                kubeconfig: Some(PathBuf::from("/k")),
                registry: Some("localhost:5001".into()),
                containerd_socket: PathBuf::from("/run/c.sock"),
                pod_logs: PathBuf::from("/logs"),
            }
        );
    }

    #[test]
    fn containerd_env_pairs_are_kept_in_order() {
        let pod = BenchArgs::parse(&[
            "pod",
            "--containerd-env",
            "GOMAXPROCS=4",
            "--containerd-env",
            "SPORE_SHIM_LOG=spore_shim=debug",
        ])
        .expect("valid");
        assert_eq!(
            pod.containerd_env,
            [
                ("GOMAXPROCS".to_string(), "4".to_string()),
                ("SPORE_SHIM_LOG".to_string(), "spore_shim=debug".to_string())
            ]
        );
        assert!(
            BenchArgs::parse(&["pod"])
                .expect("valid")
                .containerd_env
                .is_empty()
        );
        let kubelet = BenchArgs::parse(&["kubelet", "--containerd-env", "GOMAXPROCS=4"]);
        assert!(
            kubelet.is_err(),
            "the node's containerd is not the bench's to set"
        );
        for bad in ["GOMAXPROCS", "=4"] {
            let err = BenchArgs::parse(&["pod", "--containerd-env", bad]).expect_err(bad);
            assert!(err.to_string().contains("KEY=VALUE"), "{err}");
        }
    }

    #[test]
    fn flags_and_positional_count_parse() {
        let a = BenchArgs::parse(&[
            "pod",
            "4",
            "--handler-a",
            "runc",
            "--pods",
            "10,1,10",
            "--skip-latency",
            "--shim-dir",
            "/x",
            "--cache-n",
            "3",
            "--skip-cache",
            "--handler-c",
            "none",
        ])
        .expect("valid");
        assert_eq!((a.cache_n, a.skip_cache), (3, true));
        assert_eq!(a.handler_c, None);
        assert_eq!(a.n, 4);
        assert_eq!(a.handler_a, "runc");
        assert_eq!(a.pod_counts, [1, 10]);
        assert!(a.skip_latency && !a.skip_memory);
        assert_eq!(a.shim_dir, PathBuf::from("/x"));
    }

    #[test]
    fn bad_input_is_a_usage_error() {
        for argv in [
            &[][..],
            &["bench"][..],
            &["start", "0"][..],
            &["start", "--n"][..],
            &["start", "--cache-n", "0"][..],
            &["pod", "--pods", "1,x"][..],
            &["pod", "--frobnicate"][..],
            &["http", "--seconds", "0"][..],
            &["http", "--connections", "16,x"][..],
            &["kubelet", "--registry"][..],
        ] {
            let err = BenchArgs::parse(argv).expect_err("invalid");
            assert!(matches!(err, BenchError::Usage(_)), "{argv:?}: {err}");
        }
    }
}
