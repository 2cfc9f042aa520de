//! Reading a node's files from the API only: a short-lived busybox pod on that node with the
//! host's root mounted read-only at /host runs a shell script; its log is the answer. Without
//! the mount, the same pod is an ordinary client inside the cluster (the HTTP checks).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodStatus};
use kube::Api;
use kube::api::{DeleteParams, LogParams, PostParams};

use super::ClusterError;
use super::poll::{self, Look};

/// What the probe pod mounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mount {
    /// The host's root, read-only at /host: the pod reads the node's files.
    HostRoot,
    /// Nothing: an ordinary pod, a client inside the cluster.
    Nothing,
}

/// Runs `script` (busybox `sh -c`) on `node` in `namespace` and returns its output; fails when
/// the script exits non-zero.
pub async fn run(
    client: &kube::Client,
    namespace: &str,
    node: &str,
    busybox: &str,
    name: &str,
    script: &str,
    mount: Mount,
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
    if mount == Mount::Nothing {
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

fn describe(status: &PodStatus) -> String {
    format!(
        "phase {} {}",
        status.phase.clone().unwrap_or_else(|| "unknown".into()),
        containers(status)
    )
}

/// Each (init) container of a pod with its state: `name: waiting REASON MESSAGE (restarts N)`,
/// `exited CODE MESSAGE`, or `running`, joined by `; ` (also the suite's failure diagnosis).
pub fn containers(status: &PodStatus) -> String {
    status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten())
        .map(|c| {
            let state = c.state.clone().unwrap_or_default();
            let detail = if let Some(w) = state.waiting {
                format!(
                    "waiting {} {}",
                    w.reason.unwrap_or_default(),
                    w.message.unwrap_or_default()
                )
            } else if let Some(t) = state.terminated {
                format!("exited {} {}", t.exit_code, t.message.unwrap_or_default())
            } else {
                "running".to_owned()
            };
            format!("{}: {detail} (restarts {})", c.name, c.restart_count)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
