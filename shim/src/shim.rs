//! The shim's lifecycle actions: `start` (one shim process per pod), `delete` (clean up after a
//! shim that died), and serving the Task API.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use containerd_shim::asynchronous::publisher::RemotePublisher;
use containerd_shim::asynchronous::{ExitSignal, Shim, spawn};
use containerd_shim::protos::api::DeleteResponse;
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::{Config, Error, Flags, StartOpts};

use crate::container::wasm::Linkers;
use crate::spec::ContainerSpec;
use crate::task::TaskService;

/// Exit status reported for the containers of a shim that died (as if SIGKILLed).
const DEAD_SHIM_EXIT_CODE: u32 = 137;

pub struct SporeShim {
    exit: Arc<ExitSignal>,
    namespace: String,
    containerd_address: String,
    debug: bool,
}

/// The shim process a container belongs in: its pod's (by the CRI sandbox-id annotation), or
/// its own when it has no pod.
pub fn grouping(container_id: &str, spec: Option<&ContainerSpec>) -> String {
    spec.and_then(ContainerSpec::sandbox_id)
        .map(str::to_string)
        .unwrap_or_else(|| container_id.to_string())
}

#[async_trait]
impl Shim for SporeShim {
    type T = TaskService;

    async fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        SporeShim {
            exit: Arc::new(ExitSignal::default()),
            namespace: args.namespace.clone(),
            containerd_address: args.address.clone(),
            debug: args.debug,
        }
    }

    async fn start_shim(&mut self, opts: StartOpts) -> Result<String, Error> {
        // containerd starts us in the container's bundle.
        let spec = ContainerSpec::load(Path::new(".")).ok();
        let group = grouping(&opts.id, spec.as_ref());
        let address = spawn(opts, &group, Vec::new()).await?;
        containerd_shim::asynchronous::util::write_str_to_file("address", &address).await?;
        Ok(address)
    }

    async fn delete_shim(&mut self) -> Result<DeleteResponse, Error> {
        // Called in the bundle of a container whose shim is gone: release its rootfs.
        if let Err(err) = crate::rootfs::unmount(&Path::new(".").join("rootfs")) {
            eprintln!("spore shim delete: {err}");
        }
        Ok(DeleteResponse {
            exit_status: DEAD_SHIM_EXIT_CODE,
            exited_at: Some(Timestamp::from(SystemTime::now())).into(),
            ..Default::default()
        })
    }

    async fn wait(&mut self) {
        self.exit.wait().await;
    }

    async fn create_task_service(&self, publisher: RemotePublisher) -> Self::T {
        crate::logging::init(self.debug);
        let (engine, linkers) = match crate::engine::shared_engine().and_then(|engine| {
            Linkers::new(engine)
                .map(|linkers| (engine.clone(), linkers))
                .map_err(|e| format!("linking WASI: {e:#}"))
        }) {
            Ok(pair) => pair,
            Err(err) => {
                // Nothing can run without an engine; say why where containerd collects it.
                tracing::error!("{err}");
                eprintln!("spore shim: {err}");
                std::process::exit(1);
            }
        };
        match TaskService::new(
            engine,
            linkers,
            publisher,
            self.containerd_address.clone(),
            self.namespace.clone(),
            self.exit.clone(),
        )
        .await
        {
            Ok(service) => service,
            Err(err) => {
                tracing::error!("{err}");
                eprintln!("spore shim: {err}");
                std::process::exit(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_of_a_pod_share_the_pods_shim() {
        let mut spec = ContainerSpec::default();
        spec.annotations
            .insert(crate::spec::SANDBOX_ID_ANNOTATION.into(), "pod-1".into());
        assert_eq!(grouping("c1", Some(&spec)), "pod-1");
    }

    #[test]
    fn a_container_without_a_pod_gets_its_own_shim() {
        assert_eq!(grouping("c1", Some(&ContainerSpec::default())), "c1");
        assert_eq!(grouping("c2", None), "c2");
    }
}
