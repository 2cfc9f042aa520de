//! The node label that tells the scheduler (through the `spore` RuntimeClass) where the shim is.

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};

/// Label key set on nodes whose containerd has the `spore` runtime.
pub const SHIM_LABEL: &str = spore_format::SHIM_LABEL;
/// Its value.
pub const SHIM_READY: &str = spore_format::SHIM_READY;

const FIELD_MANAGER: &str = "spore-node-install";

/// Sets `spore.dev/shim=ready` on `node` (a merge patch: other labels are untouched).
pub async fn label_ready(client: kube::Client, node: &str) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {"labels": {SHIM_LABEL: SHIM_READY}}});
    Api::<Node>::all(client)
        .patch(
            node,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await?;
    tracing::info!(node, "labelled {SHIM_LABEL}={SHIM_READY}");
    Ok(())
}

/// Removes the label; a node that no longer exists needs nothing removed.
pub async fn unlabel(client: kube::Client, node: &str) -> Result<(), kube::Error> {
    let patch = serde_json::json!({"metadata": {"labels": {SHIM_LABEL: null}}});
    match Api::<Node>::all(client)
        .patch(
            node,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            tracing::info!(node, "removed label {SHIM_LABEL}");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}
