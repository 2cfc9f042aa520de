use super::*;
use crate::image_ref::ImageRefError;
use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentSpec, DeploymentStatus};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

fn time(seconds: i64) -> Time {
    Time(Timestamp::from_second(1_800_000_000 + seconds).expect("time"))
}

fn deployment(wanted: i32, replicas: i32, ready: i32, updated: i32, available: i32) -> Deployment {
    Deployment {
        metadata: ObjectMeta {
            generation: Some(2),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(wanted),
            ..Default::default()
        }),
        status: Some(DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(replicas),
            ready_replicas: Some(ready),
            updated_replicas: Some(updated),
            available_replicas: Some(available),
            ..Default::default()
        }),
    }
}

fn pod(name: &str, state: ContainerState, last: Option<ContainerState>, ready: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            container_statuses: Some(vec![ContainerStatus {
                name: WASM_CONTAINER.into(),
                state: Some(state),
                last_state: last,
                ready,
                image: "hello:1".into(),
                image_id: "reg.io/hello@sha256:abcd".into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    }
}

fn running() -> ContainerState {
    ContainerState {
        running: Some(Default::default()),
        ..Default::default()
    }
}

fn applied<'a>(deployment: &'a Deployment, pods: &'a [Pod]) -> Outcome<'a> {
    Outcome::Applied(Applied {
        deployment,
        pods,
        url: Some("http://hello.default.svc.cluster.local"),
        selector: "spore.dev/app=hello",
        template_hash: "feedface",
    })
}

fn cond<'a>(status: &'a WasmAppStatus, type_: &str) -> &'a Condition {
    status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .expect("condition")
}

#[test]
fn rollout_complete_and_ready() {
    let d = deployment(2, 2, 2, 2, 2);
    let pods = [pod("p1", running(), None, true)];
    let status = compute_status(Some(7), None, applied(&d, &pods), &time(0));
    assert_eq!(status.observed_generation, Some(7));
    assert_eq!(status.replicas, 2);
    assert_eq!(status.ready_replicas, 2);
    assert_eq!(status.replicas_summary.as_deref(), Some("2/2"));
    assert_eq!(status.selector.as_deref(), Some("spore.dev/app=hello"));
    assert_eq!(
        status.url.as_deref(),
        Some("http://hello.default.svc.cluster.local")
    );
    assert_eq!(status.image_digest.as_deref(), Some("sha256:abcd"));
    assert_eq!(status.applied_template_hash.as_deref(), Some("feedface"));
    assert_eq!(status.last_failure, None);
    let ready = cond(&status, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "AllReplicasReady")
    );
    assert_eq!(ready.observed_generation, Some(7));
    assert_eq!(ready.last_transition_time, time(0));
    let progressing = cond(&status, PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("False", "RolloutComplete")
    );
    let degraded = cond(&status, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("False", "AsExpected")
    );
    let types: Vec<&str> = status.conditions.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, [READY, PROGRESSING, DEGRADED]);
}

#[test]
fn fresh_deployment_without_status_is_progressing() {
    let mut d = deployment(3, 0, 0, 0, 0);
    d.status = None;
    let status = compute_status(Some(1), None, applied(&d, &[]), &time(0));
    assert_eq!(status.replicas_summary.as_deref(), Some("0/3"));
    let ready = cond(&status, READY);
    assert_eq!(
        (
            ready.status.as_str(),
            ready.reason.as_str(),
            ready.message.as_str()
        ),
        ("False", "ReplicasNotReady", "0/3 replicas ready")
    );
    let progressing = cond(&status, PROGRESSING);
    assert_eq!(
        (progressing.status.as_str(), progressing.reason.as_str()),
        ("True", "RollingOut")
    );
    assert_eq!(status.image_digest, None);
}

#[test]
fn old_pods_left_means_still_rolling_out() {
    let d = deployment(2, 3, 2, 2, 2);
    let status = compute_status(Some(1), None, applied(&d, &[]), &time(0));
    assert_eq!(cond(&status, PROGRESSING).status, "True");
    assert_eq!(cond(&status, READY).status, "True");
}

#[test]
fn unobserved_generation_means_rolling_out() {
    let mut d = deployment(1, 1, 1, 1, 1);
    d.metadata.generation = Some(3);
    let status = compute_status(Some(1), None, applied(&d, &[]), &time(0));
    assert_eq!(cond(&status, PROGRESSING).status, "True");
}

#[test]
fn scaled_to_zero_is_ready() {
    let d = deployment(0, 0, 0, 0, 0);
    let status = compute_status(Some(1), None, applied(&d, &[]), &time(0));
    let ready = cond(&status, READY);
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "ScaledToZero")
    );
}

#[test]
fn crash_loop_is_degraded_with_the_exit_reason() {
    let d = deployment(1, 1, 0, 1, 0);
    let waiting = ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("CrashLoopBackOff".into()),
            message: Some("back-off 10s restarting failed container".into()),
        }),
        ..Default::default()
    };
    let last = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 3,
            reason: Some("Error".into()),
            message: Some("wasm trap: unreachable".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pods = [pod("hello-abc", waiting, Some(last), false)];
    let status = compute_status(Some(1), None, applied(&d, &pods), &time(0));
    let failure = status.last_failure.as_ref().expect("failure");
    assert_eq!(failure.pod, "hello-abc");
    assert_eq!(failure.reason, "CrashLoopBackOff");
    assert_eq!(failure.exit_code, Some(3));
    assert_eq!(
        failure.message,
        "back-off 10s restarting failed container; last exit 3: Error: wasm trap: unreachable"
    );
    let degraded = cond(&status, DEGRADED);
    assert_eq!(degraded.status, "True");
    assert_eq!(degraded.reason, "CrashLoopBackOff");
    assert!(
        degraded
            .message
            .starts_with("pod hello-abc: container app: CrashLoopBackOff: back-off"),
        "{}",
        degraded.message
    );
    // not ready, so no digest from it
    assert_eq!(status.image_digest, None);
}

#[test]
fn image_pull_error_is_degraded() {
    let d = deployment(1, 1, 0, 1, 0);
    let waiting = ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("ImagePullBackOff".into()),
            message: Some("not found".into()),
        }),
        ..Default::default()
    };
    let pods = [pod("p", waiting, None, false)];
    let status = compute_status(Some(1), None, applied(&d, &pods), &time(0));
    assert_eq!(cond(&status, DEGRADED).reason, "ImagePullBackOff");
    assert_eq!(
        status.last_failure.as_ref().map(|f| f.message.as_str()),
        Some("not found")
    );
}

#[test]
fn container_creating_is_not_a_failure() {
    let d = deployment(1, 1, 0, 1, 0);
    let waiting = ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some("ContainerCreating".into()),
            message: None,
        }),
        ..Default::default()
    };
    let pods = [pod("p", waiting, None, false)];
    let status = compute_status(Some(1), None, applied(&d, &pods), &time(0));
    assert_eq!(cond(&status, DEGRADED).status, "False");
    assert_eq!(status.last_failure, None);
}

#[test]
fn failed_command_app_is_degraded_and_success_is_not() {
    let d = deployment(1, 1, 0, 1, 0);
    let failed = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 1,
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = compute_status(
        Some(1),
        None,
        applied(&d, &[pod("p", failed, None, false)]),
        &time(0),
    );
    let failure = status.last_failure.expect("failure");
    assert_eq!(
        (failure.reason.as_str(), failure.exit_code),
        ("Error", Some(1))
    );

    let done = ContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: 0,
            reason: Some("Completed".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let status = compute_status(
        Some(1),
        None,
        applied(&d, &[pod("p", done, None, false)]),
        &time(0),
    );
    assert_eq!(cond(&status, DEGRADED).status, "False");
}

#[test]
fn deployment_deadline_and_replica_failure_are_degraded() {
    let mut d = deployment(1, 1, 0, 1, 0);
    d.status.as_mut().expect("status").conditions = Some(vec![DeploymentCondition {
        type_: "Progressing".into(),
        status: "False".into(),
        reason: Some("ProgressDeadlineExceeded".into()),
        message: Some("ReplicaSet hello-1 has timed out progressing.".into()),
        ..Default::default()
    }]);
    let status = compute_status(Some(1), None, applied(&d, &[]), &time(0));
    assert_eq!(
        (
            cond(&status, DEGRADED).status.as_str(),
            cond(&status, DEGRADED).reason.as_str()
        ),
        ("True", "ProgressDeadlineExceeded")
    );
    assert_eq!(
        (
            cond(&status, PROGRESSING).status.as_str(),
            cond(&status, PROGRESSING).reason.as_str()
        ),
        ("False", "ProgressDeadlineExceeded")
    );

    let mut d = deployment(1, 0, 0, 0, 0);
    d.status.as_mut().expect("status").conditions = Some(vec![DeploymentCondition {
        type_: "ReplicaFailure".into(),
        status: "True".into(),
        reason: Some("FailedCreate".into()),
        message: Some("pods \"hello-\" is forbidden: exceeded quota".into()),
        ..Default::default()
    }]);
    let status = compute_status(Some(1), None, applied(&d, &[]), &time(0));
    let degraded = cond(&status, DEGRADED);
    assert_eq!(degraded.reason, "ReplicaFailure");
    assert!(degraded.message.contains("exceeded quota"));
}

#[test]
fn transition_time_moves_only_when_status_flips() {
    let d = deployment(1, 1, 1, 1, 1);
    let first = compute_status(Some(1), None, applied(&d, &[]), &time(0));
    let second = compute_status(Some(2), Some(&first), applied(&d, &[]), &time(60));
    assert_eq!(cond(&second, READY).last_transition_time, time(0));
    assert_eq!(cond(&second, READY).observed_generation, Some(2));
    let not_ready = deployment(1, 1, 0, 1, 0);
    let third = compute_status(Some(2), Some(&second), applied(&not_ready, &[]), &time(120));
    assert_eq!(cond(&third, READY).last_transition_time, time(120));
    assert_eq!(cond(&third, DEGRADED).last_transition_time, time(0));
}

#[test]
fn last_failure_and_digest_are_kept_when_nothing_new_is_seen() {
    let previous = WasmAppStatus {
        image_digest: Some("sha256:old".into()),
        last_failure: Some(ContainerFailure {
            pod: "old".into(),
            container: "app".into(),
            at: None,
            reason: "Error".into(),
            message: String::new(),
            exit_code: Some(2),
        }),
        ..Default::default()
    };
    let d = deployment(1, 1, 1, 1, 1);
    let status = compute_status(Some(1), Some(&previous), applied(&d, &[]), &time(0));
    assert_eq!(status.image_digest.as_deref(), Some("sha256:old"));
    assert_eq!(
        status.last_failure.as_ref().map(|f| f.pod.as_str()),
        Some("old")
    );
    assert_eq!(cond(&status, DEGRADED).status, "False");
}

#[test]
fn rejected_spec_is_degraded_and_keeps_last_known_numbers() {
    let previous = WasmAppStatus {
        replicas: 2,
        ready_replicas: 2,
        url: Some("http://hello.default.svc.cluster.local".into()),
        ..Default::default()
    };
    let error = SpecError::InvalidImage(ImageRefError::Syntax("Bad".into()));
    let status = compute_status(
        Some(4),
        Some(&previous),
        Outcome::Rejected(&error),
        &time(0),
    );
    assert_eq!(status.observed_generation, Some(4));
    assert_eq!(status.ready_replicas, 2);
    assert_eq!(status.url, previous.url);
    let degraded = cond(&status, DEGRADED);
    assert_eq!(
        (degraded.status.as_str(), degraded.reason.as_str()),
        ("True", "InvalidImage")
    );
    assert!(
        degraded
            .message
            .starts_with("spec cannot be applied: image reference \"Bad\" is not valid")
    );
    assert_eq!(cond(&status, READY).status, "False");
    assert_eq!(cond(&status, PROGRESSING).status, "False");
    assert_eq!(condition_status(&status.conditions, DEGRADED), Some("True"));
}
