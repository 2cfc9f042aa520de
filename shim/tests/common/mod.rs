//! Shared set-up for the shim's integration tests: a private containerd with the Spore shim from
//! this build, a loopback registry, and an image of the test guests pushed there and pulled.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

use spore_e2e::image::ImageBuilder;
use spore_e2e::{Containerd, ContainerdOptions, Registry};

pub const RUNTIME: &str = spore_format::RUNTIME_TYPE;
pub const NAMESPACE: &str = "default";

/// Where `hack/build-guests.sh` puts a guest.
pub fn guest(target: &str, name: &str) -> Vec<u8> {
    spore_e2e::tools::guest_wasm(target, name).unwrap_or_else(|e| panic!("{e}"))
}

pub struct Fixture {
    pub registry: Registry,
    pub containerd: Containerd,
    pub image: String,
}

impl Fixture {
    /// A containerd and an image holding every test guest at `/NAME.wasm`, pulled into the
    /// `default` namespace.
    pub fn start() -> Fixture {
        let registry = Registry::start().expect("registry starts");
        let containerd = Containerd::start(
            ContainerdOptions::default()
                .spore_shim_from_target()
                .plain_http_registry(registry.host())
                .import_pause_image(false),
        )
        .expect("containerd starts");
        let mut builder = ImageBuilder::new();
        for name in [
            "hello", "trap", "spin", "membomb", "exit3", "sleeper", "files", "cat",
        ] {
            builder = builder.file(&format!("/{name}.wasm"), guest("wasm32-wasip2", name));
        }
        builder = builder
            .file("/exit3-p1.wasm", guest("wasm32-wasip1", "exit3"))
            .file("/notwasm.wasm", b"#!/bin/sh\necho I am a script\n".to_vec())
            .file(
                "/corrupt.wasm",
                b"\0asm\x01\x00\x00\x00\x01\xff\xff".to_vec(),
            )
            .file(
                "/library.wasm",
                wat::parse_str(r#"(module (func (export "add")) (memory (export "memory") 1))"#)
                    .expect("wat"),
            )
            .dir("/data", 0o755)
            .entrypoint(["/hello.wasm"]);
        let built = builder.build().expect("image builds");
        let image = built
            .push_http(&registry.host(), "spore/guests", "test")
            .expect("push");
        containerd.ctr_pull(NAMESPACE, &image).expect("pull");
        Fixture {
            registry,
            containerd,
            image,
        }
    }

    /// `ctr run --rm` with the Spore runtime; returns ctr's output (its exit status is the
    /// task's).
    pub fn run(&self, id: &str, extra: &[&str], args: &[&str]) -> Output {
        let mut argv: Vec<String> = vec![
            "run".into(),
            "--rm".into(),
            "--runtime".into(),
            RUNTIME.into(),
        ];
        argv.extend(extra.iter().map(|s| s.to_string()));
        argv.push(self.image.clone());
        argv.push(id.to_string());
        argv.extend(args.iter().map(|s| s.to_string()));
        self.ctr_command(&argv).output().expect("ctr runs")
    }

    /// A `ctr` command against this containerd in the `default` namespace.
    pub fn ctr_command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(ctr_binary());
        cmd.arg("--address")
            .arg(self.containerd.socket())
            .arg("--namespace")
            .arg(NAMESPACE)
            .args(args);
        cmd
    }

    /// Starts `ctr run [--rm]` of `/NAME.wasm` as container `id` in the background and returns
    /// it once the guest has printed its first line, which must be `first_line`.
    pub fn run_until_first_line(
        &self,
        id: &str,
        name: &str,
        remove: bool,
        first_line: &str,
    ) -> std::process::Child {
        use std::io::BufRead;
        let mut args: Vec<String> = vec!["run".into()];
        if remove {
            args.push("--rm".into());
        }
        args.extend([
            "--runtime".into(),
            RUNTIME.into(),
            self.image.clone(),
            id.into(),
            format!("/{name}.wasm"),
        ]);
        let mut run = self
            .ctr_command(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("ctr run");
        let mut first = String::new();
        std::io::BufReader::new(run.stdout.take().expect("stdout"))
            .read_line(&mut first)
            .expect("read");
        assert_eq!(first.trim(), first_line);
        run
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        self.ctr_command(&args).output().expect("ctr runs")
    }

    /// The task's bundle directory, which containerd removes at delete.
    pub fn bundle(&self, id: &str) -> PathBuf {
        self.containerd
            .paths()
            .state
            .join("io.containerd.runtime.v2.task")
            .join(NAMESPACE)
            .join(id)
    }
}

pub fn ctr_binary() -> PathBuf {
    match std::env::var_os("SPORE_TEST_CTR") {
        Some(ctr) if !ctr.is_empty() => PathBuf::from(ctr),
        _ => spore_e2e::ContainerdVersion::V2.bin_dir().join("ctr"),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
