//! The fork server, driven as containerd drives `start`, without containerd: the serving
//! processes of two pods are forked from one server, show the command line an exec would have
//! given them, share the binary's relocated pages with it, and the server leaves after them;
//! `SPORE_FORK_SERVER=0` executes the binary as before, and so does `start` when the server
//! cannot fork, which the executed shim then says in its log.

mod direct;

use std::path::Path;
use std::time::Duration;

use direct::{
    Bundle, EventServer, answered_address, gone, shims_serving, shut_down, start_with_env,
};

fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        spore_e2e::pod::new_uid()
    )
}

fn status_field(pid: i32, field: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_owned())
        })
}

fn parent(pid: i32) -> i32 {
    status_field(pid, "PPid")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no parent for {pid}"))
}

fn cmdline(pid: i32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// KiB of the shim binary's own mappings that are private to `pid` (`Private_Dirty` in
/// `/proc/PID/smaps` over the mappings of the binary): the relocated pointers of an executed
/// binary, or nearly nothing for a forked one.
fn binary_private_dirty_kib(pid: i32) -> u64 {
    let binary = direct::shim_binary();
    let binary = binary.to_string_lossy();
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).unwrap_or_default();
    let mut in_binary = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_binary = line.ends_with(&*binary);
        } else if in_binary && let Some(rest) = line.strip_prefix("Private_Dirty:") {
            kib += rest
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    kib
}

#[tokio::test]
async fn pods_are_forked_from_one_server_that_leaves_after_them() {
    let events = EventServer::start().await;
    let containerd = format!("/tmp/{}.sock", unique("forks"));
    let (pod_a, pod_b) = (unique("pod-a"), unique("pod-b"));
    let (bundle_a, bundle_b) = (
        Bundle::wasm("hello", &[], Some(&pod_a)),
        Bundle::wasm("hello", &[], Some(&pod_b)),
    );
    let a = answered_address(&start_with_env(
        bundle_a.path(),
        &pod_a,
        &containerd,
        &events.address,
        &[],
        &[],
    ));
    let b = answered_address(&start_with_env(
        bundle_b.path(),
        &pod_b,
        &containerd,
        &events.address,
        &[],
        &[],
    ));
    assert_ne!(a, b);
    let (shim_a, shim_b) = (shims_serving(&pod_a), shims_serving(&pod_b));
    assert_eq!(
        (shim_a.len(), shim_b.len()),
        (1, 1),
        "{shim_a:?} {shim_b:?}"
    );
    let (shim_a, shim_b) = (shim_a[0], shim_b[0]);

    // One server forked both; it is named apart and serves no pod's socket.
    let server = parent(shim_a);
    assert_eq!(parent(shim_b), server, "both forked by one server");
    assert_eq!(
        status_field(server, "Name").as_deref(),
        Some("spore-forksrv"),
        "{}",
        cmdline(server)
    );
    let server_line = cmdline(server);
    assert!(
        server_line.contains("fork-server")
            && server_line.contains(&containerd)
            && !server_line.contains("-socket"),
        "{server_line}"
    );
    // The children look as an exec would have made them.
    let line = cmdline(shim_a);
    assert!(
        line.contains(&format!("-id {pod_a} -address {containerd} -socket {a}")),
        "{line}"
    );
    assert_eq!(
        status_field(shim_a, "Name").as_deref(),
        Some("containerd-shim")
    );
    // Each got its own bundle as working directory and containerd's environment.
    let cwd = std::fs::read_link(format!("/proc/{shim_b}/cwd")).expect("cwd");
    assert_eq!(cwd, bundle_b.path());
    let environ = std::fs::read(format!("/proc/{shim_b}/environ")).unwrap_or_default();
    assert!(
        environ
            .split(|b| *b == 0)
            .any(|v| v == format!("TTRPC_ADDRESS={}", events.address.display()).as_bytes()),
        "containerd's environment reaches the child"
    );

    shut_down(&a).await;
    assert!(
        gone(shim_a, Duration::from_secs(5)).await,
        "pod a's shim exits"
    );
    assert!(
        Path::new(&format!("/proc/{server}")).exists(),
        "the server stays while pod b's shim lives"
    );
    shut_down(&b).await;
    assert!(
        gone(shim_b, Duration::from_secs(5)).await,
        "pod b's shim exits"
    );
    assert!(
        gone(server, Duration::from_secs(5)).await,
        "the server leaves once it has no child"
    );
}

#[tokio::test]
async fn a_forked_shim_shares_the_binarys_relocated_pages_and_an_executed_one_does_not() {
    // A binary just written by the linker has dirty pages in the page cache, which smaps counts
    // as the mapping's own: write them back first, so that only the processes' pages count.
    std::fs::File::open(direct::shim_binary())
        .and_then(|f| f.sync_all())
        .expect("the shim binary written back");
    let events = EventServer::start().await;
    let containerd = format!("/tmp/{}.sock", unique("pages"));
    let (forked_pod, executed_pod) = (unique("forked"), unique("executed"));
    let forked_bundle = Bundle::wasm("hello", &[], Some(&forked_pod));
    let executed_bundle = Bundle::wasm("hello", &[], Some(&executed_pod));
    let forked = answered_address(&start_with_env(
        forked_bundle.path(),
        &forked_pod,
        &containerd,
        &events.address,
        &[],
        &[],
    ));
    let executed = answered_address(&start_with_env(
        executed_bundle.path(),
        &executed_pod,
        &containerd,
        &events.address,
        &[],
        &[("SPORE_FORK_SERVER", "0")],
    ));
    let (forked_pid, executed_pid) = (
        shims_serving(&forked_pod)[0],
        shims_serving(&executed_pod)[0],
    );
    assert_eq!(
        status_field(parent(forked_pid), "Name").as_deref(),
        Some("spore-forksrv")
    );
    assert_ne!(
        status_field(parent(executed_pid), "Name").as_deref(),
        Some("spore-forksrv"),
        "SPORE_FORK_SERVER=0 executes the binary"
    );
    let (forked_kib, executed_kib) = (
        binary_private_dirty_kib(forked_pid),
        binary_private_dirty_kib(executed_pid),
    );
    eprintln!("binary's private dirty pages: forked {forked_kib} KiB, executed {executed_kib} KiB");
    assert!(
        executed_kib >= 256 && forked_kib * 4 < executed_kib,
        "forked {forked_kib} KiB against executed {executed_kib} KiB"
    );
    shut_down(&forked).await;
    shut_down(&executed).await;
    assert!(gone(forked_pid, Duration::from_secs(5)).await);
    assert!(gone(executed_pid, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_shim_the_fork_server_cannot_fork_is_executed_and_says_so_in_its_log() {
    let events = EventServer::start().await;
    let containerd = format!("/tmp/{}.sock", unique("refused"));
    let pod = unique("refused");
    let bundle = Bundle::wasm("hello", &[], Some(&pod));
    // containerd's log FIFO, as a plain file the test can read (every direct bundle has one).
    let log = bundle.path().join("log");
    let address = answered_address(&start_with_env(
        bundle.path(),
        &pod,
        &containerd,
        &events.address,
        &[],
        &[("SPORE_FAULT", "fork-refused")],
    ));
    let serving = shims_serving(&pod);
    assert_eq!(serving.len(), 1, "{serving:?}");
    assert_ne!(
        status_field(parent(serving[0]), "Name").as_deref(),
        Some("spore-forksrv"),
        "executed, not forked"
    );
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        said.contains("not forked by the fork server")
            && said.contains("fault injected by SPORE_FAULT=fork-refused"),
        "the shim's log: {said:?}"
    );
    shut_down(&address).await;
    assert!(gone(serving[0], Duration::from_secs(5)).await);
}
