use super::*;

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

fn daemonset(generation: i64, observed: i64, desired: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": "spore-node-uninstall", "namespace": "spore-system",
                     "uid": "ds-uid", "generation": generation},
        "spec": {"selector": {"matchLabels": {"app": "uninstall"}},
                 "template": {"metadata": {"labels": {"app": "uninstall"}}, "spec": {"containers": []}}},
        "status": {"desiredNumberScheduled": desired, "numberReady": ready,
                   "currentNumberScheduled": desired, "numberMisscheduled": 0,
                   "observedGeneration": observed}
    })
}

fn pod(node: &str, ready: bool, init_waiting: Option<(&str, &str)>) -> Value {
    let mut status = json!({
        "phase": if ready { "Running" } else { "Pending" },
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]
    });
    if let Some((reason, message)) = init_waiting {
        status["initContainerStatuses"] = json!([{
            "name": "uninstall", "ready": false, "restartCount": 0, "image": "i", "imageID": "",
            "state": {"waiting": {"reason": reason, "message": message}}
        }]);
    }
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("uninstall-{node}"), "namespace": "spore-system",
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet",
                                          "name": "spore-node-uninstall", "uid": "ds-uid"}]},
        "spec": {"nodeName": node, "containers": []},
        "status": status
    })
}

fn parse<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

#[test]
fn ready_everywhere_is_done() {
    let p = progress(
        &parse(daemonset(2, 2, 2, 2)),
        &[parse(pod("a", true, None)), parse(pod("b", true, None))],
    );
    assert!(p.done(), "{p}");
    assert_eq!(p.to_string(), "2 of 2 nodes ready");
}

#[test]
fn a_daemonset_covering_no_node_is_done() {
    assert!(progress(&parse(daemonset(1, 1, 0, 0)), &[]).done());
}

#[test]
fn an_unobserved_spec_is_not_done_even_when_counts_match() {
    let p = progress(
        &parse(daemonset(3, 2, 1, 1)),
        &[parse(pod("a", true, None))],
    );
    assert!(!p.done());
    assert_eq!(p.to_string(), "its controller has not processed it yet");
}

#[test]
fn pending_nodes_are_named_with_their_reason() {
    let p = progress(
        &parse(daemonset(1, 1, 3, 1)),
        &[
            parse(pod(
                "b",
                false,
                Some(("ImagePullBackOff", "pull access denied")),
            )),
            parse(pod("a", true, None)),
        ],
    );
    assert!(!p.done());
    assert_eq!(
        p.to_string(),
        "1 of 3 nodes ready; not answering: b (uninstall: ImagePullBackOff: pull access denied); \
         1 node(s) have no pod yet"
    );
}

#[test]
fn a_failed_init_container_shows_its_exit() {
    let mut value = pod("c", false, None);
    value["status"]["initContainerStatuses"] = json!([{
        "name": "uninstall", "ready": false, "restartCount": 2, "image": "i", "imageID": "",
        "state": {"terminated": {"exitCode": 1, "reason": "Error",
                                 "message": "containerd did not come back"}}
    }]);
    let p = progress(&parse(daemonset(1, 1, 1, 0)), &[parse(value)]);
    assert_eq!(
        p.pending,
        vec![PendingNode {
            node: "c".into(),
            reason: "uninstall: Error: containerd did not come back".into()
        }]
    );
}

/// Answers GET daemonset / LIST pods in turn from `rounds`, and records the URIs asked.
fn api(rounds: Vec<(Value, Vec<Value>)>) -> (kube::Client, tokio::task::JoinHandle<Vec<String>>) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let task = tokio::spawn(async move {
        let mut handle = std::pin::pin!(handle);
        let mut seen = Vec::new();
        for (ds, pods) in rounds {
            let list =
                json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": pods});
            for answer in [ds, list] {
                let Some((request, send)) = handle.next_request().await else {
                    return seen;
                };
                seen.push(request.uri().to_string());
                send.send_response(
                    Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                        .expect("response"),
                );
            }
        }
        seen
    });
    (kube::Client::new(service, "spore-system"), task)
}

#[tokio::test]
async fn the_wait_ends_when_every_node_is_ready() {
    let (client, served) = api(vec![
        (daemonset(1, 1, 1, 0), vec![pod("a", false, None)]),
        (daemonset(1, 1, 1, 1), vec![pod("a", true, None)]),
    ]);
    let done = wait_for_daemonset(
        client,
        "spore-system",
        "spore-node-uninstall",
        Duration::from_secs(30),
        Duration::from_millis(10),
    )
    .await
    .expect("ready");
    assert!(done.done());
    let seen = served.await.expect("mock");
    assert_eq!(seen.len(), 4);
    assert!(
        seen[0]
            .starts_with("/apis/apps/v1/namespaces/spore-system/daemonsets/spore-node-uninstall"),
        "{}",
        seen[0]
    );
    assert!(
        seen[1].contains("labelSelector=app%3Duninstall"),
        "{}",
        seen[1]
    );
}

#[tokio::test]
async fn the_wait_is_bounded_and_names_the_silent_node() {
    let rounds = (0..50)
        .map(|_| {
            (
                daemonset(1, 1, 2, 1),
                vec![
                    pod("a", true, None),
                    pod("node-b", false, Some(("ContainerCreating", "pulling"))),
                ],
            )
        })
        .collect();
    let (client, _served) = api(rounds);
    let err = wait_for_daemonset(
        client,
        "spore-system",
        "spore-node-uninstall",
        Duration::from_millis(50),
        Duration::from_millis(10),
    )
    .await
    .expect_err("times out");
    let text = err.to_string();
    assert!(text.contains("after 50ms"), "{text}");
    assert!(
        text.contains("not answering: node-b (uninstall: ContainerCreating: pulling)"),
        "{text}"
    );
}
