//! The installer against a scratch host root with a real containerd (1.7 and 2.x) started on the
//! patched config: CRI must list the `spore` runtime with the shim's path, a second run must
//! change nothing, a reverted config must be repaired, and `--uninstall` must give the original
//! file back byte for byte.
//!
//! Running a Wasm pod through the patched containerd needs the shim and the CRI harness; that
//! is checked elsewhere (see the report / e2e).

mod support;

use std::os::unix::fs::PermissionsExt;

use spore_node_install::containerd_config::remove_runtime;
use spore_node_install::{Error, run_with_client};
use support::{Containerd, ScratchHost, kube_mock, runc_entry, spore_entry};
use toml_edit::DocumentMut;

const SHIM_ON_HOST: &str = "/opt/spore/bin/containerd-shim-spore-v1";

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn assert_spore_loaded(status: &spore_node_install::cri_probe::CriStatus, systemd: bool) {
    let spore = spore_entry(status);
    assert_eq!(spore["runtimeType"], "io.containerd.spore.v1", "{spore}");
    assert_eq!(spore["runtimePath"], SHIM_ON_HOST, "{spore}");
    assert_eq!(spore["options"]["SystemdCgroup"], systemd, "{spore}");
}

fn set_runc_systemd(doc: &mut DocumentMut, containerd: Containerd, on: bool) {
    doc["plugins"][containerd.cri_plugin()]["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] =
        toml_edit::value(on);
}

/// Install, re-run, revert + repair, uninstall, on containerd's own default config.
async fn lifecycle(containerd: Containerd, systemd: bool) {
    let host = ScratchHost::new(containerd);
    let mut doc: DocumentMut = containerd.default_config().parse().expect("default");
    host.localize(&mut doc, true);
    set_runc_systemd(&mut doc, containerd, systemd);
    let original = doc.to_string();
    std::fs::create_dir_all(host.config.parent().expect("dir")).expect("mkdir");
    std::fs::write(&host.config, &original).expect("write");
    host.write_script("");
    assert!(!host.start().await.has_runtime("spore"));
    let started = host.restarts();

    // Install, labelling the node through the (mock) API.
    let (client, served) = kube_mock::serve(vec![200]);
    run_with_client(
        host.args("containerd", &["--node-name", "node-1"]),
        Some(client),
    )
    .await
    .expect("install");
    assert_eq!(host.restarts(), started + 1, "one restart for one change");
    let status = host.cri().await;
    assert_spore_loaded(&status, systemd);
    assert_eq!(runc_entry(&status)["options"]["SystemdCgroup"], systemd);
    let patched = read(&host.config);
    assert_eq!(
        remove_runtime(&patched).expect("remove").text,
        original,
        "nothing else changed"
    );
    let shim = host.on_host(SHIM_ON_HOST);
    assert_eq!(
        std::fs::read(&shim).expect("shim"),
        std::fs::read(host.dir.path().join("shim")).expect("src")
    );
    assert_eq!(
        std::fs::metadata(&shim).expect("meta").permissions().mode() & 0o777,
        0o755
    );
    let seen = served.await.expect("mock");
    assert_eq!(
        seen[0].body["metadata"]["labels"]["spore.dev/shim"],
        "ready"
    );
    assert!(seen[0].uri.starts_with("/api/v1/nodes/node-1?"));

    // A second run changes nothing and restarts nothing.
    let mtime = std::fs::metadata(&host.config)
        .expect("meta")
        .modified()
        .expect("mtime");
    run_with_client(host.args("containerd", &[]), None)
        .await
        .expect("second run");
    assert_eq!(host.restarts(), started + 1);
    assert_eq!(read(&host.config), patched);
    assert_eq!(
        std::fs::metadata(&host.config)
            .expect("meta")
            .modified()
            .expect("mtime"),
        mtime
    );

    // The platform reverts the config and restarts containerd: the next pass repairs it.
    std::fs::write(&host.config, &original).expect("revert");
    host.start().await;
    host.wait_for(|s| !s.has_runtime("spore")).await;
    let reverted = host.restarts();
    run_with_client(host.args("containerd", &[]), None)
        .await
        .expect("repair");
    assert_eq!(host.restarts(), reverted + 1);
    assert_eq!(read(&host.config), patched);
    assert_spore_loaded(&host.cri().await, systemd);

    // Uninstall: label off, original bytes back, runtime gone from containerd, shim and state gone.
    let (client, served) = kube_mock::serve(vec![200]);
    run_with_client(
        host.args("containerd", &["--uninstall", "--node-name", "node-1"]),
        Some(client),
    )
    .await
    .expect("uninstall");
    assert_eq!(read(&host.config), original, "byte for byte");
    assert!(!host.cri().await.has_runtime("spore"));
    assert!(!shim.exists());
    assert!(
        !host
            .on_host("/var/lib/spore/node-install/state.json")
            .exists()
    );
    assert!(
        host.on_host("/var/lib/spore/node-install/uninstalled")
            .exists()
    );
    let seen = served.await.expect("mock");
    assert_eq!(
        seen[0].body["metadata"]["labels"]["spore.dev/shim"],
        serde_json::Value::Null
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_1_7_default_config() {
    lifecycle(Containerd::V1_7, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_2_default_config() {
    lifecycle(Containerd::V2, false).await;
}

/// The CRI section lives in an imported file: that is the file to patch (containerd 1.x replaces
/// whole plugin sections on import), and the main file stays as it is.
async fn imports(containerd: Containerd) {
    let host = ScratchHost::new(containerd);
    let mut full: DocumentMut = containerd.default_config().parse().expect("default");
    host.localize(&mut full, true);
    set_runc_systemd(&mut full, containerd, true);
    let cri_section = full["plugins"][containerd.cri_plugin()].clone();
    let version = full["version"].as_integer().expect("version");

    let mut main = full.clone();
    main["plugins"]
        .as_table_like_mut()
        .expect("plugins")
        .remove(containerd.cri_plugin());
    main["imports"] = toml_edit::value(toml_edit::Array::from_iter(["conf.d/*.toml"]));
    let main_text = main.to_string();
    let mut imported = DocumentMut::new();
    imported["version"] = toml_edit::value(version);
    imported["plugins"] = toml_edit::table();
    imported["plugins"]
        .as_table_mut()
        .expect("table")
        .set_implicit(true);
    imported["plugins"][containerd.cri_plugin()] = cri_section;
    let imported_text = format!("# the node's CRI settings\n{imported}");
    let other_text = format!(
        "version = {version}\n[plugins.\"io.containerd.gc.v1.scheduler\"]\n  pause_threshold = 0.03\n"
    );

    let conf_d = host.config.parent().expect("dir").join("conf.d");
    std::fs::create_dir_all(&conf_d).expect("mkdir");
    std::fs::write(&host.config, &main_text).expect("main");
    std::fs::write(conf_d.join("10-cri.toml"), &imported_text).expect("cri");
    std::fs::write(conf_d.join("20-other.toml"), &other_text).expect("other");
    host.write_script("");
    assert!(!host.start().await.has_runtime("spore"));

    run_with_client(host.args("auto", &[]), None)
        .await
        .expect("install");
    let status = host.cri().await;
    assert_spore_loaded(&status, true);
    assert_eq!(
        runc_entry(&status)["options"]["SystemdCgroup"],
        true,
        "runc kept its settings"
    );
    assert_eq!(read(&host.config), main_text, "main config untouched");
    assert_eq!(read(&conf_d.join("20-other.toml")), other_text);
    let patched = read(&conf_d.join("10-cri.toml"));
    assert_ne!(patched, imported_text);
    assert!(patched.starts_with("# the node's CRI settings\n"));

    let before = host.restarts();
    run_with_client(host.args("auto", &[]), None)
        .await
        .expect("second run");
    assert_eq!(host.restarts(), before);

    run_with_client(host.args("auto", &["--uninstall"]), None)
        .await
        .expect("uninstall");
    assert_eq!(
        read(&conf_d.join("10-cri.toml")),
        imported_text,
        "byte for byte"
    );
    assert_eq!(read(&host.config), main_text);
    assert!(!host.cri().await.has_runtime("spore"));
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_1_7_with_imports() {
    imports(Containerd::V1_7).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn containerd_2_with_imports() {
    imports(Containerd::V2).await;
}

/// A scratch k3s node (containerd 2.x): k3s' base config, and a restart script that renders
/// `config-v3.toml.tmpl` the way k3s does before starting containerd (the `{{ template "base" . }}`
/// line becomes the base config; without a template the base is the config).
struct K3sNode {
    host: ScratchHost,
    base_text: String,
    template: std::path::PathBuf,
}

async fn k3s_node() -> K3sNode {
    let dir = "/var/lib/rancher/k3s/agent/etc/containerd";
    let host = ScratchHost::with_paths(
        Containerd::V2,
        &format!("{dir}/config.toml"),
        "/run/k3s/containerd/containerd.sock",
    );
    let mut base: DocumentMut = Containerd::V2.default_config().parse().expect("default");
    host.localize(&mut base, true);
    set_runc_systemd(&mut base, Containerd::V2, true);
    let base_text = format!("# File generated by k3s. DO NOT EDIT.\n{base}");
    let base_file = host.dir.path().join("k3s-base.toml");
    std::fs::write(&base_file, &base_text).expect("base");
    let template = host.on_host(&format!("{dir}/config-v3.toml.tmpl"));
    host.write_script(&format!(
        r#"mkdir -p '{rendered_dir}'
if [ -f '{template}' ]; then
  awk -v base='{base}' '$0 == "{{{{ template \"base\" . }}}}" {{ while ((getline line < base) > 0) print line; next }} {{ print }}' '{template}' > '{rendered}'
else
  cp '{base}' '{rendered}'
fi"#,
        rendered_dir = host.config.parent().expect("dir").display(),
        template = template.display(),
        base = base_file.display(),
        rendered = host.config.display(),
    ));
    K3sNode {
        host,
        base_text,
        template,
    }
}

/// k3s without a template: Spore writes `config-v3.toml.tmpl` (`{{ template "base" . }}` plus the
/// runtime) and removes it again on uninstall.
#[tokio::test(flavor = "multi_thread")]
async fn k3s_template() {
    let K3sNode {
        host,
        base_text,
        template,
    } = k3s_node().await;
    assert!(!host.start().await.has_runtime("spore"));
    assert_eq!(read(&host.config), base_text);

    run_with_client(host.args("auto", &[]), None)
        .await
        .expect("install");
    let written = read(&template);
    assert!(
        written.starts_with("{{ template \"base\" . }}\n"),
        "{written}"
    );
    assert!(
        written.contains("io.containerd.cri.v1.runtime"),
        "{written}"
    );
    assert!(
        !written.contains("version"),
        "a fragment gets no version key: {written}"
    );
    let status = host.cri().await;
    assert_spore_loaded(&status, true);
    assert!(
        read(&host.config).starts_with(&base_text),
        "k3s' base comes first"
    );

    let before = host.restarts();
    run_with_client(host.args("auto", &[]), None)
        .await
        .expect("second run");
    assert_eq!(host.restarts(), before);
    assert_eq!(read(&template), written);

    // Someone removes the template; the next pass puts it back.
    std::fs::remove_file(&template).expect("rm");
    host.start().await;
    host.wait_for(|s| !s.has_runtime("spore")).await;
    run_with_client(host.args("auto", &[]), None)
        .await
        .expect("repair");
    assert_eq!(read(&template), written);
    assert_spore_loaded(&host.cri().await, true);

    run_with_client(host.args("auto", &["--uninstall"]), None)
        .await
        .expect("uninstall");
    assert!(!template.exists(), "the template Spore created is gone");
    assert_eq!(read(&host.config), base_text);
    assert!(!host.cri().await.has_runtime("spore"));
}

/// k3s with the user's own template (base line, their runtime, comments, a template action in a
/// string): Spore adds its table, keeps theirs, and gives the template back byte for byte.
#[tokio::test(flavor = "multi_thread")]
async fn k3s_existing_user_template() {
    let K3sNode { host, template, .. } = k3s_node().await;
    let user_template = "{{ template \"base\" . }}\n\n# our GPU runtime\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.crun]\n  runtime_type = 'io.containerd.runc.v2'\n  pod_annotations = ['{{ \"example.com/*\" }}']\n";
    std::fs::create_dir_all(template.parent().expect("dir")).expect("mkdir");
    std::fs::write(&template, user_template).expect("template");
    let started = host.start().await;
    assert!(started.has_runtime("crun") && !started.has_runtime("spore"));

    run_with_client(host.args("k3s", &[]), None)
        .await
        .expect("install");
    let written = read(&template);
    assert!(
        written.starts_with(user_template),
        "the user's template is kept as is: {written}"
    );
    let status = host.cri().await;
    assert_spore_loaded(&status, true);
    assert!(status.has_runtime("crun"));

    run_with_client(host.args("k3s", &["--uninstall"]), None)
        .await
        .expect("uninstall");
    assert_eq!(read(&template), user_template, "byte for byte");
    assert!(!host.cri().await.has_runtime("spore"));
}

/// A config that does not parse: untouched, nothing restarted, an error naming the file.
#[tokio::test(flavor = "multi_thread")]
async fn an_unparsable_config_is_left_untouched() {
    let host = ScratchHost::new(Containerd::V2);
    let broken = "version = 3\n[plugins.'io.containerd.cri.v1.runtime'\nroot = 1\n";
    std::fs::create_dir_all(host.config.parent().expect("dir")).expect("mkdir");
    std::fs::write(&host.config, broken).expect("write");
    host.write_script("");
    let err = run_with_client(host.args("containerd", &[]), None)
        .await
        .expect_err("broken config");
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&host.config.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains("left untouched") && message.contains("not valid TOML"),
        "{message}"
    );
    assert_eq!(read(&host.config), broken);
    assert_eq!(host.restarts(), 0);
    assert!(
        !host
            .on_host("/var/lib/spore/node-install/state.json")
            .exists()
    );
}

/// containerd does not come back with the runtime (here: the restart command does nothing):
/// the previous config is restored and the error says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_restart_restores_the_previous_config() {
    let host = ScratchHost::new(Containerd::V2);
    let original = host.write_default_config();
    host.write_script("");
    host.start().await;
    let err = run_with_client(
        host.args(
            "containerd",
            &[
                "--restart-command",
                "true",
                "--restart-timeout-seconds",
                "2",
            ],
        ),
        None,
    )
    .await
    .expect_err("containerd never loads the runtime");
    assert!(matches!(err, Error::RestartRestored { .. }), "{err}");
    assert!(
        err.to_string().contains("previous config was restored"),
        "{err}"
    );
    assert_eq!(read(&host.config), original);
    assert!(!host.cri().await.has_runtime("spore"));
}

/// `--containerd-restart signal` on a node whose containerd is not under systemd: the installer
/// finds the process serving containerd's socket, stops it, and the supervisor's new containerd
/// loads the runtime; the uninstall does the same the other way.
#[tokio::test(flavor = "multi_thread")]
async fn signal_restart_under_a_supervisor() {
    // A socket path no containerd of this machine uses: the installer signals whoever listens.
    let host = ScratchHost::with_paths(
        Containerd::V1_7,
        "/etc/containerd/config.toml",
        "/run/spore-ni-signal/containerd.sock",
    );
    let original = host.write_default_config();
    let supervisor = host.start_supervised().await;
    let first = host.containerd_pid();
    let extra = [
        "--containerd-restart",
        "signal",
        "--containerd-socket",
        "/run/spore-ni-signal/containerd.sock",
    ];

    run_with_client(host.args("containerd", &extra), None)
        .await
        .expect("install");
    let second = host.containerd_pid();
    assert_ne!(first, second, "containerd was not restarted");
    assert_eq!(host.restarts(), 2, "one restart for one change");
    assert_spore_loaded(&host.cri().await, false);

    let mut uninstall = extra.to_vec();
    uninstall.push("--uninstall");
    run_with_client(host.args("containerd", &uninstall), None)
        .await
        .expect("uninstall");
    assert_ne!(
        host.containerd_pid(),
        second,
        "containerd was not restarted"
    );
    assert!(!host.cri().await.has_runtime("spore"));
    assert_eq!(read(&host.config), original);
    drop(supervisor);
}
