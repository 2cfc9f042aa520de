//! The pods the kubelet bench creates, written as a user would: resources on every pod, the
//! namespace's service account token mounted, the node's default runtime or a RuntimeClass.

use k8s_openapi::api::core::v1::Pod;

/// The label every bench pod carries, with its side's tag as the value.
pub const SIDE_LABEL: &str = "spore.dev/bench-side";
/// The one container of a bench pod.
pub const CONTAINER: &str = "main";

/// What a side's pod runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// `None`: the node's default runtime (runc).
    pub runtime_class: Option<String>,
    pub image: String,
    pub command: Vec<String>,
}

/// How a bench pod is written besides its workload.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    /// Serving (`restartPolicy: Always`) or run once (`Never`).
    pub serving: bool,
    /// The namespace's service account token mounted, as by default; `false` writes
    /// `automountServiceAccountToken: false`, a pod without volumes.
    pub token: bool,
    pub memory_limit_mib: i64,
}

/// A pod running `workload` as `shape` says, with small requests, so that a thousand of them
/// fit a small node.
pub fn pod(
    name: &str,
    side: char,
    workload: &Workload,
    shape: Shape,
) -> Result<Pod, serde_json::Error> {
    let mut spec = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {SIDE_LABEL: side.to_string()}},
        "spec": {
            "restartPolicy": if shape.serving { "Always" } else { "Never" },
            "automountServiceAccountToken": shape.token,
            "terminationGracePeriodSeconds": 0,
            "containers": [{
                "name": CONTAINER,
                "image": workload.image,
                "imagePullPolicy": "IfNotPresent",
                "command": workload.command,
                "resources": {
                    "requests": {"cpu": "1m", "memory": "4Mi"},
                    "limits": {"memory": format!("{}Mi", shape.memory_limit_mib)}
                }
            }]
        }
    });
    if let Some(class) = &workload.runtime_class {
        spec["spec"]["runtimeClassName"] = serde_json::Value::from(class.as_str());
    }
    serde_json::from_value(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_has_limits_requests_and_its_runtime_class() {
        let wasm = Workload {
            runtime_class: Some("spore".into()),
            image: "localhost:5001/w:1".into(),
            command: vec!["/hello.wasm".into()],
        };
        let once = Shape {
            serving: false,
            token: true,
            memory_limit_mib: 64,
        };
        let pod = pod("lat-a-1", 'A', &wasm, once).expect("a pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("lat-a-1"));
        assert_eq!(
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SIDE_LABEL))
                .map(String::as_str),
            Some("A")
        );
        let spec = pod.spec.expect("spec");
        assert_eq!(spec.runtime_class_name.as_deref(), Some("spore"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.automount_service_account_token, Some(true));
        let container = &spec.containers[0];
        assert_eq!(container.name, CONTAINER);
        assert_eq!(
            container.command.as_deref(),
            Some(&["/hello.wasm".to_owned()][..])
        );
        let resources = container.resources.as_ref().expect("resources");
        let limit = resources.limits.as_ref().and_then(|l| l.get("memory"));
        assert_eq!(limit.map(|q| q.0.as_str()), Some("64Mi"));
        let request = resources.requests.as_ref().and_then(|r| r.get("cpu"));
        assert_eq!(request.map(|q| q.0.as_str()), Some("1m"));
    }

    #[test]
    fn the_default_runtime_has_no_runtime_class_and_servers_restart() {
        let busybox = Workload {
            runtime_class: None,
            image: "localhost:5001/b:1".into(),
            command: vec!["/bin/busybox".into(), "httpd".into(), "-f".into()],
        };
        let serving = Shape {
            serving: true,
            token: false,
            memory_limit_mib: 64,
        };
        let spec = pod("mem-b-0", 'B', &busybox, serving)
            .expect("a pod")
            .spec
            .expect("spec");
        assert_eq!(spec.runtime_class_name, None);
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"));
        assert_eq!(spec.automount_service_account_token, Some(false));
    }
}
