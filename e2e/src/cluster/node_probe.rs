//! Reading a node's files from the API only: a short-lived busybox pod on that node with the
//! host's root mounted read-only at /host runs a shell script; its log is the answer. Without
//! the mount, the same pod is an ordinary client inside the cluster (the HTTP checks).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};

use super::ClusterError;
use super::poll::{self, Look};

/// Runs `script` (busybox `sh -c`) on `node` in `namespace` and returns its output; fails when
/// the script exits non-zero.
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    node: &str,
    busybox: &str,
    name: &str,
    script: &str,
    host_root: bool,
) -> Result<String, ClusterError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut spec = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "spore-e2e-node-probe"}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "tolerations": [{"operator": "Exists"}],
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": "probe",
                "image": busybox,
                "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", script],
                "resources": {"requests": {"cpu": "10m", "memory": "8Mi"},
                              "limits": {"memory": "32Mi"}},
                "volumeMounts": [{"name": "host", "mountPath": "/host", "readOnly": true}]
            }],
            "volumes": [{"name": "host", "hostPath": {"path": "/", "type": "Directory"}}]
        }
    });
    if !host_root {
        // an ordinary pod: no host mount
        spec["spec"]["volumes"] = serde_json::json!([]);
        spec["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([]);
    }
    let pod: Pod = serde_json::from_value(spec)
        .map_err(|e| ClusterError::Check(format!("probe pod spec: {e}")))?;
    // A probe left over from an interrupted run would hold the name.
    let _ = pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
    poll::until(
        &format!("the old probe pod {name} to go"),
        Duration::from_secs(60),
        Duration::from_millis(500),
        || async {
            Ok(match pods.get_opt(name).await? {
                None => Look::Done(()),
                Some(_) => Look::NotYet("still there".into()),
            })
        },
    )
    .await?;
    pods.create(&PostParams::default(), &pod).await?;
    let phase = poll::until(
        &format!("probe pod {name} on {node} to finish"),
        Duration::from_secs(120),
        Duration::from_millis(500),
        || async {
            let pod = pods.get(name).await?;
            let status = pod.status.unwrap_or_default();
            let phase = status.phase.clone().unwrap_or_default();
            Ok(match phase.as_str() {
                "Succeeded" | "Failed" => Look::Done(phase),
                _ => Look::NotYet(describe(&status)),
            })
        },
    )
    .await?;
    let log = pods.logs(name, &LogParams::default()).await?;
    pods.delete(name, &DeleteParams::default().grace_period(0))
        .await?;
    if phase != "Succeeded" {
        return Err(ClusterError::Check(format!(
            "probe on {node} failed: {}",
            log.trim()
        )));
    }
    Ok(log)
}

fn describe(status: &k8s_openapi::api::core::v1::PodStatus) -> String {
    let waiting = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .map(|w| {
            format!(
                "{}: {}",
                w.reason.clone().unwrap_or_default(),
                w.message.clone().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("; ");
    format!(
        "phase {} {}",
        status.phase.clone().unwrap_or_else(|| "unknown".into()),
        waiting
    )
}
