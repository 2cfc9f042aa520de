//! The node label, against kube's mock service.

mod support;

use spore_node_install::node_label::{SHIM_LABEL, SHIM_READY, label_ready, unlabel};
use support::kube_mock;

#[tokio::test]
async fn label_ready_merge_patches_only_the_spore_label() {
    let (client, served) = kube_mock::serve(vec![200]);
    label_ready(client, "node-a").await.expect("label");
    let seen = served.await.expect("mock");
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "PATCH");
    assert!(
        seen[0].uri.starts_with("/api/v1/nodes/node-a?"),
        "{}",
        seen[0].uri
    );
    assert!(
        seen[0].uri.contains("fieldManager=spore-node-install"),
        "{}",
        seen[0].uri
    );
    assert_eq!(seen[0].content_type, "application/merge-patch+json");
    assert_eq!(
        seen[0].body,
        serde_json::json!({"metadata": {"labels": {SHIM_LABEL: SHIM_READY}}})
    );
}

#[tokio::test]
async fn unlabel_sends_null_and_tolerates_a_deleted_node() {
    let (client, served) = kube_mock::serve(vec![200, 404]);
    unlabel(client.clone(), "node-a").await.expect("unlabel");
    unlabel(client, "gone")
        .await
        .expect("a missing node is fine");
    let seen = served.await.expect("mock");
    assert_eq!(
        seen[0].body,
        serde_json::json!({"metadata": {"labels": {SHIM_LABEL: null}}})
    );
    assert!(seen[1].uri.starts_with("/api/v1/nodes/gone?"));
}

#[tokio::test]
async fn label_errors_are_reported() {
    let (client, served) = kube_mock::serve(vec![403]);
    let err = label_ready(client, "node-a").await.expect_err("forbidden");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 403),
        "{err}"
    );
    served.await.expect("mock");
}
