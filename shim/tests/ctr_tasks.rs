//! The shim as containerd runs it: a private containerd (2.x), images pulled from a loopback
//! registry, tasks run with `ctr` and the `io.containerd.spore.v1` runtime.

mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Fixture, RUNTIME, text};

#[test]
fn hello_prints_its_greeting_args_and_env() {
    let f = Fixture::start();
    let out = f.run(
        "hello",
        &["--env", "GREETING_NAME=Ada"],
        &["/hello.wasm", "one", "two words"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("Hello, Ada, from a Wasm component on Spore!"),
        "{stdout}"
    );
    assert!(stdout.contains(r#"args: ["one", "two words"]"#), "{stdout}");
}

#[test]
fn exit_codes_are_the_guests() {
    let f = Fixture::start();
    let p1 = f.run("exit3-p1", &[], &["/exit3-p1.wasm"]);
    assert_eq!(p1.status.code(), Some(3), "{p1:?}");
    assert!(text(&p1.stdout).contains("exiting with 3"));
    // WASI 0.2's exit carries only success or failure.
    let p2 = f.run("exit3-p2", &[], &["/exit3.wasm"]);
    assert_eq!(p2.status.code(), Some(1), "{p2:?}");
    let ok = f.run("ok", &[], &["/hello.wasm"]);
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");
}

#[test]
fn a_trap_exits_134_with_its_message_on_stderr() {
    let f = Fixture::start();
    let out = f.run("trap", &[], &["/trap.wasm"]);
    assert_eq!(out.status.code(), Some(134), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(stderr.contains("guest trapped"), "{stderr}");
    assert!(
        stderr.contains("wasm `unreachable` instruction executed"),
        "{stderr}"
    );
    assert!(
        f.containerd.log().contains("guest trapped"),
        "the shim log names the trap too"
    );
}

#[test]
fn the_memory_limit_caps_the_guest() {
    let f = Fixture::start();
    let out = f.run(
        "membomb",
        &["--memory-limit", "67108864"],
        &["/membomb.wasm"],
    );
    assert_eq!(out.status.code(), Some(134), "{out:?}");
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("memory limit exceeded: the container's memory limit is 67108864 bytes"),
        "{stderr}"
    );
    let held = text(&out.stdout);
    assert!(
        held.contains("holding 56 MiB") && !held.contains("holding 64 MiB"),
        "{held}"
    );
}

#[test]
fn modules_that_cannot_run_fail_create_with_a_clear_message() {
    let f = Fixture::start();
    let cases = [
        (
            "notwasm",
            "/notwasm.wasm",
            "/notwasm.wasm is not a Wasm module: it does not start with the Wasm magic bytes",
        ),
        (
            "corrupt",
            "/corrupt.wasm",
            "/corrupt.wasm is not a valid Wasm module",
        ),
        (
            "library",
            "/library.wasm",
            "/library.wasm cannot run on Spore: it exports [add, memory]",
        ),
        (
            "missing",
            "/missing.wasm",
            "the entrypoint /missing.wasm does not exist in the container's image",
        ),
    ];
    for (id, path, expected) in cases {
        let out = f.run(id, &[], &[path]);
        assert!(!out.status.success(), "{id}: {out:?}");
        let stderr = text(&out.stderr);
        assert!(stderr.contains(expected), "{id}: {stderr}");
    }
    // The shim keeps serving: a good container still runs after the failures.
    assert!(f.run("after", &[], &["/hello.wasm"]).status.success());
    assert!(
        f.containerd
            .leftovers_after(Duration::from_secs(5))
            .shims
            .is_empty(),
        "no shim left: {:?}",
        f.containerd.shim_processes()
    );
}

#[test]
fn kill_interrupts_an_endless_loop_promptly_and_delete_cleans_up() {
    let f = Fixture::start();
    let mut run = f.run_until_first_line("spin", "spin", false, "spinning");

    let metrics = f.ctr(&["task", "metrics", "spin"]);
    let metrics = text(&metrics.stdout);
    assert!(metrics.contains("memory.usage_in_bytes"), "{metrics}");

    let killed_at = Instant::now();
    let kill = f.ctr(&["task", "kill", "--signal", "SIGKILL", "spin"]);
    assert!(kill.status.success(), "{kill:?}");
    let status = run.wait().expect("ctr exits");
    let took = killed_at.elapsed();
    assert_eq!(status.code(), Some(137));
    assert!(took < Duration::from_secs(2), "kill took {took:?}");

    // `ctr run` deletes the task once it has its exit status: the bundle must be gone.
    let bundle = f.bundle("spin");
    let tasks = text(&f.ctr(&["task", "list"]).stdout);
    assert!(!tasks.contains("spin"), "{tasks}");
    assert!(f.ctr(&["container", "delete", "spin"]).status.success());
    assert!(!bundle.exists(), "bundle {} left behind", bundle.display());
    let left = f
        .containerd
        .leftovers_after(std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "{left}");
}

#[test]
fn sigterm_ends_a_guest_sleeping_in_the_host_with_143() {
    let f = Fixture::start();
    let mut run = f.run_until_first_line("sleeper", "sleeper", true, "sleeping");
    assert!(f.ctr(&["task", "kill", "sleeper"]).status.success());
    assert_eq!(run.wait().expect("exits").code(), Some(143));
}

#[test]
fn two_containers_run_at_once() {
    let f = Fixture::start();
    for id in ["one", "two"] {
        let out = f.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            &f.image,
            id,
            "/sleeper.wasm",
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    let tasks = text(&f.ctr(&["task", "list"]).stdout);
    for id in ["one", "two"] {
        assert!(
            tasks
                .lines()
                .any(|l| l.starts_with(id) && l.contains("RUNNING")),
            "{tasks}"
        );
    }
    for id in ["one", "two"] {
        assert!(
            f.ctr(&["task", "kill", "-s", "SIGKILL", id])
                .status
                .success()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = text(&f.ctr(&["task", "list"]).stdout);
        if tasks.lines().filter(|l| l.contains("STOPPED")).count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "not stopped: {tasks}");
        std::thread::sleep(Duration::from_millis(50));
    }
    for id in ["one", "two"] {
        assert!(f.ctr(&["task", "delete", id]).status.success());
        assert!(f.ctr(&["container", "delete", id]).status.success());
    }
    let left = f
        .containerd
        .leftovers_after(std::time::Duration::from_secs(5));
    assert!(left.is_empty(), "{left}");
}

#[test]
fn exec_and_pause_are_refused_for_wasm_containers() {
    let f = Fixture::start();
    let out = f.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        &f.image,
        "busy",
        "/sleeper.wasm",
    ]);
    assert!(out.status.success(), "{out:?}");
    let exec = f.ctr(&["task", "exec", "--exec-id", "e1", "busy", "/hello.wasm"]);
    assert!(!exec.status.success());
    assert!(
        text(&exec.stderr).contains("exec is not supported for Wasm containers (container busy)"),
        "{exec:?}"
    );
    let pause = f.ctr(&["task", "pause", "busy"]);
    assert!(
        text(&pause.stderr).contains("pause is not supported for Wasm containers"),
        "{pause:?}"
    );
    assert!(
        f.ctr(&["task", "kill", "-s", "SIGKILL", "busy"])
            .status
            .success()
    );
}

#[test]
fn the_guest_sees_its_mounts_and_not_the_host() {
    let f = Fixture::start();
    let data = tempfile::tempdir().expect("tempdir");
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:rw",
        data.path().display()
    );
    let out = f.run(
        "files",
        &["--mount", &mount],
        &["/files.wasm", "/data/out.txt"],
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("wrote /data/out.txt"), "{stdout}");
    assert!(stdout.contains("host /etc/shadow: not visible"), "{stdout}");
    assert_eq!(
        std::fs::read_to_string(data.path().join("out.txt")).expect("the host sees the write"),
        "written by wasm"
    );
    let ro = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        data.path().display()
    );
    let out = f.run(
        "files-ro",
        &["--mount", &ro],
        &["/files.wasm", "/data/ro.txt"],
    );
    assert!(
        text(&out.stdout).contains("cannot write /data/ro.txt"),
        "{out:?}"
    );
    assert!(!data.path().join("ro.txt").exists());
}

#[test]
fn stdin_reaches_the_guest() {
    let f = Fixture::start();
    let mut run = f
        .ctr_command(&[
            "run".into(),
            "--rm".into(),
            "--runtime".into(),
            RUNTIME.into(),
            f.image.clone(),
            "cat".into(),
            "/cat.wasm".into(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ctr run");
    {
        let mut stdin = run.stdin.take().expect("stdin");
        stdin
            .write_all(b"first line\nsecond line\n")
            .expect("write");
    }
    let out = run.wait_with_output().expect("exits");
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("cat: first line\ncat: second line\ncat: end of input"),
        "{stdout}"
    );
}

#[test]
fn containers_of_one_pod_share_one_shim_process() {
    let f = Fixture::start();
    let pod = "--annotation=io.kubernetes.cri.sandbox-id=pod-a";
    for id in ["a1", "a2"] {
        let out = f.ctr(&[
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            pod,
            &f.image,
            id,
            "/sleeper.wasm",
        ]);
        assert!(out.status.success(), "{out:?}");
    }
    let out = f.ctr(&[
        "run",
        "-d",
        "--runtime",
        RUNTIME,
        &f.image,
        "solo",
        "/sleeper.wasm",
    ]);
    assert!(out.status.success(), "{out:?}");
    let tasks = text(&f.ctr(&["task", "list"]).stdout);
    let pid_of = |id: &str| {
        tasks
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("{id} not in {tasks}"))
    };
    assert_eq!(pid_of("a1"), pid_of("a2"), "one shim for the pod: {tasks}");
    assert_ne!(
        pid_of("a1"),
        pid_of("solo"),
        "its own shim without a pod: {tasks}"
    );
    assert_eq!(
        f.containerd.serving_shims().len(),
        2,
        "{:?}",
        f.containerd.shim_processes()
    );
    for id in ["a1", "a2", "solo"] {
        assert!(
            f.ctr(&["task", "kill", "-s", "SIGKILL", id])
                .status
                .success()
        );
    }
}
