//! Pure: the status of a WasmApp, computed from what was applied and what the Deployment and pods
//! report. Conditions `Ready`, `Progressing`, `Degraded` follow Kubernetes conventions; a
//! condition's `lastTransitionTime` moves only when its status changes.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::crd::{ContainerFailure, WasmAppStatus};
use crate::desired::{SpecError, WASM_CONTAINER};
use crate::image_ref::digest_of_image_id;

/// Condition type: every wanted replica is ready.
pub const READY: &str = "Ready";
/// Condition type: a rollout is under way.
pub const PROGRESSING: &str = "Progressing";
/// Condition type: something keeps the app from working as asked.
pub const DEGRADED: &str = "Degraded";

/// Waiting reasons of a container that mean it is failing, not just starting.
const FAILING_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
];

/// What the reconcile ended with.
#[derive(Debug, Clone, Copy)]
pub enum Outcome<'a> {
    /// The spec cannot be applied; nothing was.
    Rejected(&'a SpecError),
    /// The objects were applied.
    Applied(Applied<'a>),
}

/// The state after a successful apply.
#[derive(Debug, Clone, Copy)]
pub struct Applied<'a> {
    /// The Deployment as the API server returned it from the apply.
    pub deployment: &'a Deployment,
    /// The app's pods.
    pub pods: &'a [Pod],
    /// The Service's in-cluster URL, when there is a Service.
    pub url: Option<&'a str>,
    /// The pod selector (`spore.dev/app=NAME`).
    pub selector: &'a str,
    /// Hash of the pod template applied.
    pub template_hash: &'a str,
}

/// Computes the new status. `previous` is the status the WasmApp carries now.
pub fn compute_status(
    generation: Option<i64>,
    previous: Option<&WasmAppStatus>,
    outcome: Outcome<'_>,
    now: &Time,
) -> WasmAppStatus {
    let previous_conditions = previous.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
    let condition = |type_: &str, status: bool, reason: &str, message: String| {
        make_condition(
            previous_conditions,
            type_,
            status,
            reason,
            message,
            generation,
            now,
        )
    };
    match outcome {
        Outcome::Rejected(err) => {
            let message = format!("spec cannot be applied: {err}");
            let base = previous.cloned().unwrap_or_default();
            WasmAppStatus {
                observed_generation: generation,
                conditions: vec![
                    condition(READY, false, err.reason(), message.clone()),
                    condition(PROGRESSING, false, err.reason(), message.clone()),
                    condition(DEGRADED, true, err.reason(), message),
                ],
                ..base
            }
        }
        Outcome::Applied(applied) => {
            let facts = DeploymentFacts::of(applied.deployment);
            let failure = current_failure(applied.pods);
            let degraded = if let Some(f) = &failure {
                (true, f.reason.clone(), describe_failure(f))
            } else if let Some(msg) = &facts.deadline_exceeded {
                (true, "ProgressDeadlineExceeded".to_string(), msg.clone())
            } else if let Some(msg) = &facts.replica_failure {
                (true, "ReplicaFailure".to_string(), msg.clone())
            } else {
                (
                    false,
                    "AsExpected".to_string(),
                    "no failure reported".to_string(),
                )
            };
            let progressing = if let Some(msg) = &facts.deadline_exceeded {
                (false, "ProgressDeadlineExceeded", msg.clone())
            } else if facts.rollout_done() {
                (
                    false,
                    "RolloutComplete",
                    format!("{} replicas up to date", facts.updated),
                )
            } else {
                (
                    true,
                    "RollingOut",
                    format!(
                        "{} of {} replicas updated, {} available",
                        facts.updated, facts.wanted, facts.available
                    ),
                )
            };
            let ready = if facts.wanted == 0 {
                (true, "ScaledToZero", "no replicas wanted".to_string())
            } else if facts.ready >= facts.wanted {
                (
                    true,
                    "AllReplicasReady",
                    format!("{}/{} replicas ready", facts.ready, facts.wanted),
                )
            } else {
                (
                    false,
                    "ReplicasNotReady",
                    format!("{}/{} replicas ready", facts.ready, facts.wanted),
                )
            };
            WasmAppStatus {
                observed_generation: generation,
                replicas: facts.replicas,
                ready_replicas: facts.ready,
                replicas_summary: Some(format!("{}/{}", facts.ready, facts.wanted)),
                selector: Some(applied.selector.to_string()),
                conditions: vec![
                    condition(READY, ready.0, ready.1, ready.2),
                    condition(PROGRESSING, progressing.0, progressing.1, progressing.2),
                    condition(DEGRADED, degraded.0, &degraded.1, degraded.2),
                ],
                url: applied.url.map(str::to_string),
                image_digest: image_digest(applied.pods)
                    .or_else(|| previous.and_then(|p| p.image_digest.clone())),
                last_failure: failure.or_else(|| previous.and_then(|p| p.last_failure.clone())),
                applied_template_hash: Some(applied.template_hash.to_string()),
            }
        }
    }
}

/// The status of condition `type_` in `conditions`, if present.
pub fn condition_status<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a str> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.as_str())
}

fn make_condition(
    previous: &[Condition],
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    let status = if status { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| now.clone());
    Condition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.to_string(),
        message,
        observed_generation: generation,
        last_transition_time,
    }
}

/// The numbers and conditions of a Deployment that matter here.
struct DeploymentFacts {
    wanted: i32,
    replicas: i32,
    ready: i32,
    updated: i32,
    available: i32,
    generation_observed: bool,
    deadline_exceeded: Option<String>,
    replica_failure: Option<String>,
}

impl DeploymentFacts {
    fn of(deployment: &Deployment) -> Self {
        // the API server defaults spec.replicas to 1
        let wanted = deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1);
        let status = deployment.status.clone().unwrap_or_default();
        let conditions = status.conditions.unwrap_or_default();
        let generation_observed = match (deployment.metadata.generation, status.observed_generation)
        {
            (Some(generation), Some(observed)) => observed >= generation,
            (None, _) => true,
            (Some(_), None) => false,
        };
        let deadline_exceeded = conditions
            .iter()
            .find(|c| {
                c.type_ == "Progressing"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
            })
            .map(|c| c.message.clone().unwrap_or_default());
        let replica_failure = conditions
            .iter()
            .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
            .map(|c| c.message.clone().unwrap_or_default());
        DeploymentFacts {
            wanted,
            replicas: status.replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            available: status.available_replicas.unwrap_or(0),
            generation_observed,
            deadline_exceeded,
            replica_failure,
        }
    }

    fn rollout_done(&self) -> bool {
        self.generation_observed
            && self.updated >= self.wanted
            && self.replicas <= self.updated
            && self.available >= self.wanted
    }
}

fn wasm_statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter(|cs| cs.name == WASM_CONTAINER)
}

/// The newest failure of a Wasm container among `pods` (by the time it failed; among failures
/// of the same time, or without one, the pod that sorts first by name).
pub fn current_failure(pods: &[Pod]) -> Option<ContainerFailure> {
    let mut failures: Vec<ContainerFailure> = pods
        .iter()
        .flat_map(|pod| {
            let pod_name = pod.metadata.name.clone().unwrap_or_default();
            wasm_statuses(pod)
                .filter_map(|cs| failure_of(&pod_name, cs))
                .collect::<Vec<_>>()
        })
        .collect();
    failures.sort_by(|a, b| {
        let time = |f: &ContainerFailure| f.at.as_ref().map(|t| t.0);
        time(b).cmp(&time(a)).then_with(|| a.pod.cmp(&b.pod))
    });
    failures.into_iter().next()
}

fn failure_of(pod: &str, cs: &ContainerStatus) -> Option<ContainerFailure> {
    let last_terminated = cs.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let state = cs.state.as_ref()?;
    if let Some(waiting) = &state.waiting
        && let Some(reason) = &waiting.reason
        && FAILING_WAITING_REASONS.contains(&reason.as_str())
    {
        // a crash loop says more through the termination that caused it
        let detail = last_terminated
            .map(|t| {
                let why = t.reason.clone().unwrap_or_else(|| "Error".to_string());
                match &t.message {
                    Some(m) if !m.is_empty() => format!("last exit {}: {why}: {m}", t.exit_code),
                    _ => format!("last exit {}: {why}", t.exit_code),
                }
            })
            .unwrap_or_default();
        let message = match (&waiting.message, detail.is_empty()) {
            (Some(m), true) => m.clone(),
            (Some(m), false) => format!("{m}; {detail}"),
            (None, _) => detail,
        };
        return Some(ContainerFailure {
            pod: pod.to_string(),
            container: cs.name.clone(),
            at: last_terminated.and_then(|t| t.finished_at.clone()),
            reason: reason.clone(),
            message,
            exit_code: last_terminated.map(|t| t.exit_code),
        });
    }
    if let Some(t) = &state.terminated
        && t.exit_code != 0
    {
        return Some(ContainerFailure {
            pod: pod.to_string(),
            container: cs.name.clone(),
            at: t.finished_at.clone(),
            reason: t.reason.clone().unwrap_or_else(|| "Error".to_string()),
            message: t.message.clone().unwrap_or_default(),
            exit_code: Some(t.exit_code),
        });
    }
    None
}

/// The failure to announce with a Warning event: the status's last failure, when it is not the
/// one the app already showed.
pub fn new_failure<'a>(
    previous: Option<&WasmAppStatus>,
    current: &'a WasmAppStatus,
) -> Option<&'a ContainerFailure> {
    let failure = current.last_failure.as_ref()?;
    (previous.and_then(|p| p.last_failure.as_ref()) != Some(failure)).then_some(failure)
}

/// `pod P: container C: REASON: MESSAGE`, for conditions and events.
pub fn describe_failure(f: &ContainerFailure) -> String {
    let mut text = format!("pod {}: container {WASM_CONTAINER}: {}", f.pod, f.reason);
    if !f.message.is_empty() {
        text.push_str(": ");
        text.push_str(&f.message);
    }
    text
}

/// The digest a ready Wasm container runs, if any pod reports one.
fn image_digest(pods: &[Pod]) -> Option<String> {
    pods.iter()
        .flat_map(wasm_statuses)
        .filter(|cs| cs.ready)
        .find_map(|cs| digest_of_image_id(&cs.image_id).map(str::to_string))
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
