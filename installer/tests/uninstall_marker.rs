//! After `--uninstall`, an installer process that was already running (the DaemonSet pod, until
//! Helm deletes it) must not put the runtime back; a new installer must.

mod support;

use spore_node_install::{Installer, PassReport};
use support::{Containerd, ScratchHost};

#[tokio::test]
async fn a_running_installer_stays_idle_after_an_uninstall() {
    let host = ScratchHost::new(Containerd::V2);
    let config = "version = 3\n# a node config with nothing of Spore in it\n";
    std::fs::create_dir_all(host.config.parent().expect("dir")).expect("mkdir");
    std::fs::write(&host.config, config).expect("write");
    host.write_script("");
    let args = host.args(
        "containerd",
        &[
            "--restart-command",
            "none",
            "--restart-timeout-seconds",
            "1",
        ],
    );

    let running = Installer::new(&args, None).expect("installer");
    // Wait a tick so the uninstall is clearly after the running installer's start.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let uninstall = Installer::new(&args, None).expect("uninstaller");
    uninstall.uninstall().await.expect("uninstall");
    assert_eq!(std::fs::read_to_string(&host.config).expect("read"), config);

    let report = running.install_pass().await.expect("idle pass");
    assert_eq!(report, PassReport::default(), "nothing done");
    assert_eq!(std::fs::read_to_string(&host.config).expect("read"), config);
    assert!(
        !host
            .on_host("/opt/spore/bin/containerd-shim-spore-v1")
            .exists()
    );

    // A new installer (a new helm install) clears the marker and works again; with no
    // containerd answering, it stops at the restart and puts the config back.
    let fresh = Installer::new(&args, None).expect("fresh installer");
    let err = fresh
        .install_pass()
        .await
        .expect_err("no containerd to restart");
    assert!(
        err.to_string().contains("previous config was restored")
            || err.to_string().contains("still does not answer"),
        "{err}"
    );
    assert!(
        !host
            .on_host("/var/lib/spore/node-install/uninstalled")
            .exists()
    );
    assert!(
        host.on_host("/opt/spore/bin/containerd-shim-spore-v1")
            .exists(),
        "the shim was installed"
    );
    assert_eq!(std::fs::read_to_string(&host.config).expect("read"), config);
}
