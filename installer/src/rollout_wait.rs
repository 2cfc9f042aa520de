//! Waiting until a DaemonSet's pods are ready on every node it covers: the `helm uninstall`
//! hook waits this way for the uninstall DaemonSet (ready on a node = that node is restored).
//! Bounded: when time is up, the error names every node that has not answered and why.

use std::time::Duration;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use kube::Api;
use kube::api::ListParams;

#[derive(Debug, thiserror::Error)]
pub enum RolloutWaitError {
    #[error("reading DaemonSet {namespace}/{name}: {source}")]
    Read {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error(
        "DaemonSet {namespace}/{name} is not ready on every node after {timeout:?}: {progress}"
    )]
    Timeout {
        namespace: String,
        name: String,
        timeout: Duration,
        progress: Progress,
    },
}

/// One node whose pod is not ready, and what its pod shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingNode {
    /// The node's name, or `(unscheduled)` for a pod not bound to one yet.
    pub node: String,
    pub reason: String,
}

/// How far a DaemonSet is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Progress {
    pub desired: i32,
    pub ready: i32,
    /// Whether the controller has seen the DaemonSet's latest spec.
    pub observed: bool,
    pub pending: Vec<PendingNode>,
}

impl Progress {
    pub fn done(&self) -> bool {
        self.observed && self.ready >= self.desired && self.pending.is_empty()
    }
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if !self.observed {
            return write!(f, "its controller has not processed it yet");
        }
        write!(f, "{} of {} nodes ready", self.ready, self.desired)?;
        let missing = self.desired - self.ready - self.pending.len() as i32;
        for (i, node) in self.pending.iter().enumerate() {
            let lead = if i == 0 { "; not answering: " } else { ", " };
            write!(f, "{lead}{} ({})", node.node, node.reason)?;
        }
        if missing > 0 {
            write!(f, "; {missing} node(s) have no pod yet")?;
        }
        Ok(())
    }
}

/// The progress a DaemonSet and its pods show.
pub fn progress(daemonset: &DaemonSet, pods: &[Pod]) -> Progress {
    let status = daemonset.status.clone().unwrap_or_default();
    let observed = match (daemonset.metadata.generation, status.observed_generation) {
        (Some(generation), Some(seen)) => seen >= generation,
        (None, _) => true,
        (Some(_), None) => false,
    };
    let mut pending: Vec<PendingNode> = pods
        .iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none() && !pod_ready(pod))
        .map(|pod| PendingNode {
            node: pod
                .spec
                .as_ref()
                .and_then(|spec| spec.node_name.clone())
                .unwrap_or_else(|| "(unscheduled)".to_owned()),
            reason: pod_reason(pod),
        })
        .collect();
    pending.sort_by(|a, b| a.node.cmp(&b.node));
    Progress {
        desired: status.desired_number_scheduled,
        ready: status.number_ready,
        observed,
        pending,
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

/// The most telling thing a pod that is not ready shows: a waiting or failed (init) container's
/// reason and message, else the pod's phase.
fn pod_reason(pod: &Pod) -> String {
    let status = pod.status.clone().unwrap_or_default();
    let containers = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for container in containers {
        if let Some(reason) = container_reason(container) {
            return reason;
        }
    }
    match (status.phase, status.reason, status.message) {
        (_, Some(reason), Some(message)) => format!("{reason}: {message}"),
        (_, Some(reason), None) => reason,
        (Some(phase), None, _) => format!("pod {phase}"),
        (None, None, _) => "no status yet".to_owned(),
    }
}

fn container_reason(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    let describe = |reason: Option<&String>, message: Option<&String>| match (reason, message) {
        (Some(reason), Some(message)) => format!("{}: {reason}: {message}", container.name),
        (Some(reason), None) => format!("{}: {reason}", container.name),
        (None, Some(message)) => format!("{}: {message}", container.name),
        (None, None) => format!("{}: waiting", container.name),
    };
    if let Some(waiting) = &state.waiting {
        return Some(describe(waiting.reason.as_ref(), waiting.message.as_ref()));
    }
    if let Some(terminated) = &state.terminated
        && terminated.exit_code != 0
    {
        let reason = terminated
            .reason
            .clone()
            .unwrap_or_else(|| format!("exit code {}", terminated.exit_code));
        return Some(describe(Some(&reason), terminated.message.as_ref()));
    }
    None
}

/// Polls the DaemonSet `name` in `namespace` until it is ready on every node it covers, or
/// `timeout` passes. Every `poll`, logs the progress when it changed.
pub async fn wait_for_daemonset(
    client: kube::Client,
    namespace: &str,
    name: &str,
    timeout: Duration,
    poll: Duration,
) -> Result<Progress, RolloutWaitError> {
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let read_error = |source| RolloutWaitError::Read {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        source,
    };
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_shown = String::new();
    loop {
        let daemonset = daemonsets.get(name).await.map_err(read_error)?;
        let selector = daemonset
            .spec
            .as_ref()
            .and_then(|spec| spec.selector.match_labels.as_ref())
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        let owned: Vec<Pod> = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(read_error)?
            .items
            .into_iter()
            .filter(|pod| owned_by(pod, &daemonset))
            .collect();
        let now = progress(&daemonset, &owned);
        if now.done() {
            tracing::info!(daemonset = name, %now, "ready on every node");
            return Ok(now);
        }
        let shown = now.to_string();
        if shown != last_shown {
            tracing::info!(daemonset = name, progress = %shown, "waiting");
            last_shown = shown;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(RolloutWaitError::Timeout {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                timeout,
                progress: now,
            });
        }
        tokio::time::sleep(poll).await;
    }
}

fn owned_by(pod: &Pod, daemonset: &DaemonSet) -> bool {
    let Some(uid) = daemonset.metadata.uid.as_deref() else {
        return true;
    };
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|owner| owner.uid == uid)
}

#[cfg(test)]
#[path = "rollout_wait_tests.rs"]
mod tests;
