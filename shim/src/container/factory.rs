//! From a Create request to a container. The one place that decides how a container runs
//! ([`decide`]): the pod's sandbox as the shim's own init (`pod_sandbox.rs`; natively through
//! runc with the `Sandbox = "runc"` option or a user namespace); an OCI Wasm artifact as Wasm; an ordinary image as
//! Wasm when its entrypoint (found inside the rootfs only) is Wasm, else natively through runc.
//! Which Wasm kind (command, HTTP proxy, preview1) follows from what the module exports, when
//! it is compiled here. Everything after Create reads the container's [`ContainerKind`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use wasmtime::Engine;

use super::native::NativeContainer;
use super::pod_sandbox::{PodSandbox, init_can_run};
use super::runc::Runc;
use super::wasm::{WasmContainer, WasmParts};
use super::{Container, CreateRequest};
use crate::container::host_record::{Held, HostRecord, RuncState, process_started};
use crate::containerd::options::{RuntimeOptions, SandboxRuntime};
use crate::error::ShimError;
use crate::host::entrypoint::{Entrypoint, EntrypointError};
use crate::host::reaper::{Exits, ReaperError};
use crate::host::stdio::GuestStdio;
use crate::host::termination::TerminationLog;
use crate::spec::ContainerSpec;
use crate::wasm::content::WasmLayer;
use crate::wasm::guest::WasmGuest;
use crate::wasm::linker::Linkers;
use crate::wasm::source::{GuestOrigin, GuestSource};

/// Builds the containers of a Create request.
#[async_trait]
pub trait ContainerFactory: Send + Sync + 'static {
    async fn create(&self, request: CreateRequest) -> Result<Arc<dyn Container>, ShimError>;
}

#[derive(Debug, thiserror::Error)]
pub enum FactoryError {
    #[error(transparent)]
    Engine(#[from] crate::wasm::engine::EngineError),
    #[error(transparent)]
    Reaper(#[from] ReaperError),
}

/// How a container runs.
#[derive(Debug)]
pub enum Decision {
    Native,
    Wasm(Box<GuestOrigin>),
}

/// Decides how a container of `spec` runs from what its image is (`artifact`: the Wasm layer
/// of an OCI Wasm artifact or a Wasm-layer image) and its entrypoint in the rootfs.
pub fn decide(
    spec: &ContainerSpec,
    artifact: Option<WasmLayer>,
    entrypoint: impl FnOnce() -> Result<Entrypoint, EntrypointError>,
) -> Result<Decision, ShimError> {
    if spec.is_sandbox() {
        return Ok(Decision::Native);
    }
    if let Some(layer) = artifact {
        return Ok(Decision::Wasm(Box::new(GuestOrigin::Artifact(layer))));
    }
    let named_wasm = spec.args.first().is_some_and(|a| a.ends_with(".wasm"));
    match entrypoint() {
        Ok(file) if file.is_wasm() || named_wasm => {
            Ok(Decision::Wasm(Box::new(GuestOrigin::Entrypoint(file))))
        }
        Ok(_) => Ok(Decision::Native),
        // A missing `*.wasm` is a Wasm error; any other missing program is runc's to report.
        Err(err) if named_wasm => Err(err.into()),
        Err(_) => Ok(Decision::Native),
    }
}

/// The factory of real containers: Wasm on the shared engine, native through runc.
pub struct Factory {
    engine: Engine,
    sources: GuestSource,
    exits: Exits,
    namespace: String,
}

impl Factory {
    pub async fn new(containerd_address: &str, namespace: &str) -> Result<Self, FactoryError> {
        let engine = crate::wasm::engine::shared_engine()?.clone();
        Ok(Factory {
            sources: GuestSource::new(
                engine.clone(),
                containerd_address.to_string(),
                namespace.to_string(),
            ),
            engine,
            exits: Exits::start().await?,
            namespace: namespace.to_string(),
        })
    }

    async fn build(
        &self,
        request: &CreateRequest,
        spec: ContainerSpec,
        options: &RuntimeOptions,
        mounted: Option<PathBuf>,
    ) -> Result<Arc<dyn Container>, ShimError> {
        let mut spec = spec;
        let artifact = if spec.is_sandbox() {
            None
        } else {
            self.sources.artifact_layer(&request.id, &spec).await?
        };
        if let Some(artifact) = &artifact {
            spec.args = artifact.guest_args(&spec.args);
        }
        let layer = artifact.map(|a| a.layer);
        let decision = decide(&spec, layer, || Entrypoint::open(&spec))?;
        let origin = match decision {
            Decision::Native => {
                let runc = Runc::new(
                    &request.id,
                    &request.bundle,
                    options,
                    &self.namespace,
                    self.exits.clone(),
                )?;
                let container = NativeContainer::create(
                    runc,
                    &request.bundle,
                    request.stdio.clone(),
                    request.terminal,
                    mounted,
                )
                .await?;
                return Ok(Arc::new(container));
            }
            Decision::Wasm(origin) => *origin,
        };
        // Compiling is the node's cost, like unpacking an image: a cache miss before the pod's
        // first guest is linked compiles with the shim stepped out of the pod's cgroup
        // (`host/shim_cgroup.rs`), so an interpreter component's compile (several times the
        // pod's limit for JavaScript and Python) is not charged to, and OOM-killed in, a pod
        // limited for what the guest uses. The guest's memory, from linking on, is the pod's.
        // (A second Wasm container of the same pod that misses the cache compiles inside it.)
        let (compiled, name) = self.sources.guest(origin, options).await?;
        crate::host::shim_cgroup::join_pod(&spec);
        let (engine, link_spec) = (self.engine.clone(), spec.clone());
        let guest = tokio::task::spawn_blocking(move || {
            WasmGuest::link(&engine, &Linkers::new(&engine), &link_spec, compiled, &name)
        })
        .await
        .map_err(|e| ShimError::TaskFailed(format!("linking the guest: {e}")))??;
        if let Some((hits, misses)) = self.sources.cache_stats() {
            tracing::debug!(id = %request.id, hits, misses, "compile cache");
        }
        // A command's output FIFOs are opened now, as runc's shim opens them at create:
        // containerd's readers are already there (an HTTP server opens its own at start).
        let opened = if guest.is_http() {
            None
        } else {
            Some(GuestStdio::open(&request.stdio).await?)
        };
        Ok(Arc::new(WasmContainer::new(WasmParts {
            id: request.id.clone(),
            bundle: request.bundle.clone(),
            spec,
            stdio: request.stdio.clone(),
            terminal: request.terminal,
            guest,
            opened,
            mounted_rootfs: mounted,
        })))
    }
}

#[async_trait]
impl ContainerFactory for Factory {
    #[tracing::instrument(level = "debug", skip_all, fields(container = %request.id))]
    async fn create(&self, request: CreateRequest) -> Result<Arc<dyn Container>, ShimError> {
        let spec = ContainerSpec::load(&request.bundle)?;
        crate::faults::create_request(&spec.env);
        let options = match &request.options {
            Some((type_url, value)) => RuntimeOptions::decode(type_url, value)?,
            None => RuntimeOptions::default(),
        };
        // The init template, if the shim forked one, is taken by the first Create: the sandbox's.
        let template = crate::host::pod_init::take_template();
        if options.sandbox == SandboxRuntime::Init
            && init_can_run(&spec)
            && let Some(template) = template
        {
            return self.pod_sandbox(&request, &spec, template).await;
        }
        let mounted = mount_rootfs(&request.bundle, &request.rootfs).await?;
        let termination = (!spec.is_sandbox())
            .then(|| TerminationLog::of(&spec))
            .flatten();
        let built = self.build(&request, spec, &options, mounted.clone()).await;
        self.sources.release_store().await;
        if let Ok(container) = &built {
            let record = host_record(container.as_ref(), &options, &self.namespace);
            if let Err(err) = record.write(&request.bundle) {
                tracing::warn!(%err, "a dead shim's cleanup will not know this container");
            }
        }
        if let Err(err) = &built {
            if let Some(rootfs) = &mounted {
                let _ = crate::host::rootfs::unmount(rootfs);
            }
            // The reason is in the kubelet's waiting message too; `kubectl describe` shows both.
            if let Some(log) = termination {
                log.write(&err.to_string());
            }
        }
        built
    }
}

impl Factory {
    /// The pod's sandbox as the shim's own init: no rootfs mount, no runc.
    async fn pod_sandbox(
        &self,
        request: &CreateRequest,
        spec: &ContainerSpec,
        template: crate::host::pod_init::InitTemplate,
    ) -> Result<Arc<dyn Container>, ShimError> {
        let sandbox = PodSandbox::create(
            &request.id,
            &request.bundle,
            spec,
            template,
            request.stdio.clone(),
            self.exits.clone(),
        )
        .await?;
        let (pid, mut cgroup_leaves) = sandbox.held();
        // The shim's own leaves go with its sandbox: it joined them at its start.
        cgroup_leaves.extend(crate::host::shim_cgroup::joined_leaves());
        let shim_pid = std::process::id();
        let record = HostRecord {
            id: request.id.clone(),
            shim_pid,
            shim_started: process_started(shim_pid).unwrap_or_default(),
            held: Held::PodInit {
                pid,
                started: process_started(pid).unwrap_or_default(),
                cgroup_leaves,
            },
        };
        if let Err(err) = record.write(&request.bundle) {
            tracing::warn!(%err, "a dead shim's cleanup will not know this sandbox");
        }
        Ok(Arc::new(sandbox))
    }
}

async fn mount_rootfs(
    bundle: &Path,
    mounts: &[crate::host::rootfs::RootfsMount],
) -> Result<Option<PathBuf>, ShimError> {
    let (bundle, mounts) = (bundle.to_path_buf(), mounts.to_vec());
    tokio::task::spawn_blocking(move || crate::host::rootfs::mount(&bundle, &mounts))
        .await
        .map_err(|e| ShimError::TaskFailed(format!("mounting the rootfs: {e}")))?
}

/// What `delete` must release of `container` should this shim die.
fn host_record(container: &dyn Container, options: &RuntimeOptions, namespace: &str) -> HostRecord {
    let held = if container.kind().is_wasm() {
        Held::Wasm {
            cgroup_leaves: crate::host::shim_cgroup::joined_leaves(),
            cache_dir: options.cache_config().dir,
        }
    } else {
        Held::Native {
            runc: RuncState {
                binary: options.runc_binary(),
                root: options.runc_root(namespace),
                systemd_cgroup: options.systemd_cgroup,
            },
        }
    };
    let shim_pid = std::process::id();
    HostRecord {
        id: container.id().to_string(),
        shim_pid,
        shim_started: process_started(shim_pid).unwrap_or_default(),
        held,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::entrypoint::EntrypointError;

    fn spec_with(args: &[&str], sandbox: bool) -> ContainerSpec {
        let mut spec = ContainerSpec {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..ContainerSpec::default()
        };
        if sandbox {
            spec.annotations.insert(
                crate::spec::CONTAINER_TYPE_ANNOTATION.into(),
                "sandbox".into(),
            );
        }
        spec
    }

    fn missing() -> Result<Entrypoint, EntrypointError> {
        Err(EntrypointError::NotFound { path: "/x".into() })
    }

    fn layer() -> WasmLayer {
        WasmLayer {
            image: "r/app:1".into(),
            manifest_digest: "sha256:m".into(),
            digest: "sha256:l".into(),
            media_type: "application/wasm".into(),
            size: 1,
            config: crate::wasm::content::manifest::Descriptor {
                media_type: spore_format::WASM_CONFIG_MEDIA_TYPE.into(),
                digest: "sha256:c".into(),
                size: 2,
                platform: None,
            },
        }
    }

    #[test]
    fn the_sandbox_is_always_native() {
        let decided = decide(&spec_with(&["/pause"], true), Some(layer()), missing);
        assert!(matches!(decided, Ok(Decision::Native)));
    }

    #[test]
    fn an_artifact_is_wasm_whatever_its_args() {
        let decided = decide(&spec_with(&["a", "b"], false), Some(layer()), missing);
        assert!(matches!(
            decided,
            Ok(Decision::Wasm(ref origin)) if matches!(**origin, GuestOrigin::Artifact(_))
        ));
    }

    #[test]
    fn a_missing_program_is_runcs_to_report_unless_it_is_named_wasm() {
        assert!(matches!(
            decide(&spec_with(&["/bin/sh"], false), None, missing),
            Ok(Decision::Native)
        ));
        let err = decide(&spec_with(&["/app.wasm"], false), None, missing).expect_err("wasm");
        assert!(err.to_string().contains("/x"), "{err}");
    }
}
