//! The controller against kube's mock service: every API call a reconcile makes is checked in
//! order (the ApiServerVerifier pattern of kube-rs's controller-rs).

use super::*;
use crate::crd::{HttpSpec, WasmAppSpec};
use crate::desired::CONFIG_HASH_ANNOTATION;
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, SecretKeySelector};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::{Handle, SendResponse};

const DEPLOYMENT_URI: &str =
    "/apis/apps/v1/namespaces/default/deployments/hello?&force=true&fieldManager=spore-operator";
const SERVICE_URI: &str =
    "/api/v1/namespaces/default/services/hello?&force=true&fieldManager=spore-operator";
const HPA_URI: &str = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/hello";
const PODS_URI: &str = "/api/v1/namespaces/default/pods?&labelSelector=spore.dev%2Fapp%3Dhello";
const EVENTS_URI: &str = "/apis/events.k8s.io/v1/namespaces/default/events?";
const STATUS_URI: &str = "/apis/spore.dev/v1alpha1/namespaces/default/wasmapps/hello/status?&force=true&fieldManager=spore-operator";
const SECRET_URI: &str = "/api/v1/namespaces/default/secrets/creds";

fn fixed_time() -> Time {
    Time(Timestamp::from_second(1_800_000_000).expect("time"))
}

struct ApiServer(Handle<Request<Body>, Response<Body>>);

fn mock() -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context::new(
        client,
        Arc::new(Metrics::default()),
        "cluster.local".into(),
        Some("test-pod".into()),
    )
    .with_clock(fixed_time);
    (Arc::new(ctx), ApiServer(handle))
}

impl ApiServer {
    /// Takes the next request, checks method and URI, returns its JSON body.
    async fn expect(&mut self, method: Method, uri: &str) -> (Value, SendResponse<Response<Body>>) {
        let (request, send) = tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {method} {uri}"))
            .unwrap_or_else(|| panic!("client gone before {method} {uri}"));
        assert_eq!(
            (request.method().clone(), request.uri().to_string()),
            (method, uri.to_string())
        );
        let bytes = request.into_body().collect_bytes().await.expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("json body")
        };
        (body, send)
    }

    /// Answers an apply (or create) with the object sent, plus `status` if given.
    async fn apply_echo(&mut self, uri: &str, status: Option<Value>) -> Value {
        let (body, send) = self.expect(Method::PATCH, uri).await;
        let mut answer = body.clone();
        answer["metadata"]["generation"] = json!(1);
        if let Some(status) = status {
            answer["status"] = status;
        }
        reply(send, 200, &answer);
        body
    }

    async fn not_found(&mut self, uri: &str) {
        let (_, send) = self.expect(Method::GET, uri).await;
        reply(send, 404, &not_found_status());
    }

    async fn pods(&mut self, items: Value) {
        let (_, send) = self.expect(Method::GET, PODS_URI).await;
        reply(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}),
        );
    }

    async fn event(&mut self) -> Value {
        let (body, send) = self.expect(Method::POST, EVENTS_URI).await;
        reply(send, 201, &body);
        body
    }

    async fn status(&mut self) -> Value {
        let (body, send) = self.expect(Method::PATCH, STATUS_URI).await;
        let mut answer = body.clone();
        answer["metadata"] = json!({"name": "hello", "namespace": "default"});
        answer["spec"] = json!({"image": "registry.example.com/hello:1.0"});
        reply(send, 200, &answer);
        body
    }

    /// Fails when the reconcile made a call nobody expected.
    async fn done(mut self) {
        if let Ok(Some((request, _))) =
            tokio::time::timeout(Duration::from_millis(100), self.0.next_request()).await
        {
            panic!("unexpected call {} {}", request.method(), request.uri());
        }
    }
}

fn reply(send: SendResponse<Response<Body>>, code: u16, body: &Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    send.send_response(
        Response::builder()
            .status(code)
            .body(Body::from(bytes))
            .expect("response"),
    );
}

fn not_found_status() -> Value {
    json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
           "message": "not found", "reason": "NotFound", "code": 404})
}

fn http_app() -> WasmApp {
    let mut app = WasmApp::new(
        "hello",
        WasmAppSpec {
            image: "registry.example.com/hello:1.0".into(),
            http: Some(HttpSpec::default()),
            ..Default::default()
        },
    );
    app.metadata.namespace = Some("default".into());
    app.metadata.uid = Some("uid-1".into());
    app.metadata.generation = Some(1);
    app
}

fn secret_app() -> WasmApp {
    let mut app = http_app();
    app.spec.env = vec![EnvVar {
        name: "TOKEN".into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: "creds".into(),
                key: "token".into(),
                optional: None,
            }),
            ..Default::default()
        }),
    }];
    app
}

fn ready_deployment_status() -> Value {
    json!({"observedGeneration": 1, "replicas": 1, "readyReplicas": 1,
           "updatedReplicas": 1, "availableReplicas": 1})
}

fn condition<'a>(status: &'a Value, type_: &str) -> &'a Value {
    status["status"]["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .find(|c| c["type"] == type_)
        .expect("condition")
}

/// Runs `reconcile` and the scripted API server side by side.
async fn run_with<F>(app: WasmApp, script: impl FnOnce(ApiServer) -> F) -> (Result<Action>, Value)
where
    F: Future<Output = Value>,
{
    let (ctx, server) = mock();
    let (result, seen) = tokio::join!(reconcile(Arc::new(app), ctx.clone()), script(server));
    (result, seen)
}

/// The first reconcile of the HTTP app whose Deployment is ready: what it returned and the
/// status it wrote.
async fn reconcile_ready_app() -> (Result<Action>, Value) {
    run_with(http_app(), |mut server| async move {
        server
            .apply_echo(DEPLOYMENT_URI, Some(ready_deployment_status()))
            .await;
        server.apply_echo(SERVICE_URI, None).await;
        server.not_found(HPA_URI).await;
        server.pods(json!([])).await;
        server.event().await;
        let status = server.status().await;
        server.done().await;
        status
    })
    .await
}

#[tokio::test]
async fn create_applies_deployment_service_then_event_and_status() {
    let (result, seen) = run_with(http_app(), |mut server| async move {
        let deployment = server.apply_echo(DEPLOYMENT_URI, None).await;
        let service = server.apply_echo(SERVICE_URI, None).await;
        server.not_found(HPA_URI).await;
        server.pods(json!([])).await;
        let event = server.event().await;
        let status = server.status().await;
        server.done().await;
        json!({"deployment": deployment, "service": service, "event": event, "status": status})
    })
    .await;
    assert_eq!(
        result.expect("reconcile"),
        Action::requeue(REQUEUE_NOT_READY)
    );

    let deployment = &seen["deployment"];
    assert_eq!(deployment["apiVersion"], "apps/v1");
    assert_eq!(deployment["kind"], "Deployment");
    assert_eq!(deployment["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    assert_eq!(
        deployment["metadata"]["ownerReferences"][0]["controller"],
        true
    );
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["runtimeClassName"], "spore");
    assert_eq!(
        pod["containers"][0]["image"],
        "registry.example.com/hello:1.0"
    );
    assert_eq!(seen["service"]["kind"], "Service");
    assert_eq!(seen["service"]["spec"]["ports"][0]["port"], 80);

    let event = &seen["event"];
    assert_eq!(event["type"], "Normal");
    assert_eq!(event["reason"], "Deployed");
    assert_eq!(event["action"], "Apply");
    assert_eq!(event["reportingController"], "spore-operator");
    assert_eq!(event["reportingInstance"], "test-pod");
    assert_eq!(event["regarding"]["kind"], "WasmApp");
    assert_eq!(event["regarding"]["name"], "hello");
    assert_eq!(
        event["note"],
        "created Deployment hello running registry.example.com/hello:1.0"
    );

    let status = &seen["status"];
    assert_eq!(status["apiVersion"], "spore.dev/v1alpha1");
    assert_eq!(status["kind"], "WasmApp");
    assert_eq!(status["status"]["observedGeneration"], 1);
    assert_eq!(
        status["status"]["url"],
        "http://hello.default.svc.cluster.local"
    );
    assert_eq!(status["status"]["selector"], "spore.dev/app=hello");
    assert_eq!(status["status"]["replicasSummary"], "0/1");
    assert_eq!(condition(status, "Ready")["status"], "False");
    assert_eq!(condition(status, "Progressing")["status"], "True");
    assert_eq!(condition(status, "Degraded")["status"], "False");
    assert_eq!(
        condition(status, "Ready")["lastTransitionTime"],
        "2027-01-15T08:00:00Z"
    );
}

#[tokio::test]
async fn update_rolls_out_and_a_settled_app_is_left_alone() {
    // first pass: the deployment is ready
    let (result, first) = reconcile_ready_app().await;
    assert_eq!(result.expect("reconcile"), Action::requeue(REQUEUE_READY));
    assert_eq!(condition(&first, "Ready")["status"], "True");
    let settled_status: crate::crd::WasmAppStatus =
        serde_json::from_value(first["status"].clone()).expect("status");

    // nothing changed: same applies, no event, no status write
    let mut settled = http_app();
    settled.status = Some(settled_status.clone());
    let (result, _) = run_with(settled.clone(), |mut server| async move {
        server
            .apply_echo(DEPLOYMENT_URI, Some(ready_deployment_status()))
            .await;
        server.apply_echo(SERVICE_URI, None).await;
        server.not_found(HPA_URI).await;
        server.pods(json!([])).await;
        server.done().await;
        Value::Null
    })
    .await;
    assert_eq!(result.expect("reconcile"), Action::requeue(REQUEUE_READY));

    // a new image: applied, a rollout event, status for generation 2
    let mut updated = settled;
    updated.metadata.generation = Some(2);
    updated.spec.image = "registry.example.com/hello:2.0".into();
    let (result, seen) = run_with(updated, |mut server| async move {
        let deployment = server.apply_echo(DEPLOYMENT_URI, None).await;
        server.apply_echo(SERVICE_URI, None).await;
        server.not_found(HPA_URI).await;
        server.pods(json!([])).await;
        let event = server.event().await;
        let status = server.status().await;
        server.done().await;
        json!({"deployment": deployment, "event": event, "status": status})
    })
    .await;
    result.expect("reconcile");
    assert_eq!(
        seen["deployment"]["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example.com/hello:2.0"
    );
    assert_eq!(seen["event"]["reason"], "RolloutStarted");
    assert!(
        seen["event"]["note"]
            .as_str()
            .expect("note")
            .starts_with("pod template changed (image registry.example.com/hello:2.0")
    );
    assert_eq!(seen["status"]["status"]["observedGeneration"], 2);
    assert_ne!(
        seen["status"]["status"]["appliedTemplateHash"],
        json!(settled_status.applied_template_hash)
    );
}

#[tokio::test]
async fn bad_image_is_degraded_with_an_event_and_nothing_applied() {
    let mut app = http_app();
    app.spec.image = "Registry/UPPER::bad".into();
    let (result, seen) = run_with(app, |mut server| async move {
        let event = server.event().await;
        let status = server.status().await;
        server.done().await;
        json!({"event": event, "status": status})
    })
    .await;
    assert_eq!(
        result.expect("reconcile"),
        Action::requeue(REQUEUE_SPEC_ERROR)
    );
    assert_eq!(seen["event"]["type"], "Warning");
    assert_eq!(seen["event"]["reason"], "InvalidImage");
    assert_eq!(seen["event"]["action"], "Reconcile");
    assert!(
        seen["event"]["note"]
            .as_str()
            .expect("note")
            .contains("\"Registry/UPPER::bad\" is not valid")
    );
    let status = &seen["status"];
    assert_eq!(condition(status, "Degraded")["status"], "True");
    assert_eq!(condition(status, "Degraded")["reason"], "InvalidImage");
    assert_eq!(condition(status, "Ready")["status"], "False");
}

#[tokio::test]
async fn missing_secret_is_degraded_until_it_appears() {
    let (result, seen) = run_with(secret_app(), |mut server| async move {
        server.not_found(SECRET_URI).await;
        let event = server.event().await;
        let status = server.status().await;
        server.done().await;
        json!({"event": event, "status": status})
    })
    .await;
    result.expect("reconcile");
    assert_eq!(seen["event"]["reason"], "MissingReference");
    assert_eq!(seen["event"]["note"], "Secret \"creds\" does not exist");
    assert_eq!(
        condition(&seen["status"], "Degraded")["reason"],
        "MissingReference"
    );
}

fn secret_json(token: &str) -> Value {
    use k8s_openapi::ByteString;
    let secret = Secret {
        metadata: kube::core::ObjectMeta {
            name: Some("creds".into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        data: Some(std::collections::BTreeMap::from([(
            "token".into(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Default::default()
    };
    serde_json::to_value(secret).expect("json")
}

#[tokio::test]
async fn secret_change_changes_the_hash_and_rolls_out() {
    let pass = |app: WasmApp, token: &'static str| {
        run_with(app, move |mut server| async move {
            let (_, send) = server.expect(Method::GET, SECRET_URI).await;
            reply(send, 200, &secret_json(token));
            let deployment = server.apply_echo(DEPLOYMENT_URI, None).await;
            server.apply_echo(SERVICE_URI, None).await;
            server.not_found(HPA_URI).await;
            server.pods(json!([])).await;
            let event = server.event().await;
            let status = server.status().await;
            server.done().await;
            json!({"deployment": deployment, "event": event, "status": status})
        })
    };
    let (result, first) = pass(secret_app(), "one").await;
    result.expect("reconcile");
    let hash = |seen: &Value| {
        seen["deployment"]["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
            .as_str()
            .expect("hash")
            .to_string()
    };
    let mut app = secret_app();
    app.status = Some(serde_json::from_value(first["status"]["status"].clone()).expect("status"));
    let (result, second) = pass(app, "two").await;
    result.expect("reconcile");
    assert_ne!(hash(&first), hash(&second));
    assert_eq!(hash(&first).len(), 64);
    assert_eq!(second["event"]["reason"], "RolloutStarted");
}

#[tokio::test]
async fn service_is_deleted_when_the_app_stops_serving_http() {
    let mut app = http_app();
    app.spec.http = None;
    let (result, _) = run_with(app, |mut server| async move {
        server.apply_echo(DEPLOYMENT_URI, None).await;
        let (_, send) = server
            .expect(Method::GET, "/api/v1/namespaces/default/services/hello")
            .await;
        reply(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "hello", "namespace": "default",
                        "ownerReferences": [{"apiVersion": "spore.dev/v1alpha1", "kind": "WasmApp",
                            "name": "hello", "uid": "uid-1", "controller": true}]}}),
        );
        let (_, send) = server
            .expect(Method::DELETE, "/api/v1/namespaces/default/services/hello?")
            .await;
        reply(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success"}),
        );
        server.not_found(HPA_URI).await;
        server.pods(json!([])).await;
        server.event().await;
        let status = server.status().await;
        server.done().await;
        status
    })
    .await;
    result.expect("reconcile");
}

#[tokio::test]
async fn foreign_service_is_not_deleted() {
    let mut app = http_app();
    app.spec.http = None;
    let (result, _) = run_with(app, |mut server| async move {
        server.apply_echo(DEPLOYMENT_URI, None).await;
        let (_, send) = server
            .expect(Method::GET, "/api/v1/namespaces/default/services/hello")
            .await;
        reply(
            send,
            200,
            &json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": "hello", "namespace": "default"}}),
        );
        server.not_found(HPA_URI).await;
        server.pods(json!([])).await;
        server.event().await;
        server.status().await;
        server.done().await;
        Value::Null
    })
    .await;
    result.expect("reconcile");
}

#[tokio::test]
async fn autoscaled_app_applies_an_hpa() {
    let mut app = http_app();
    app.spec.autoscaling = Some(crate::crd::AutoscalingSpec {
        min_replicas: Some(2),
        max_replicas: 5,
        target_cpu_utilization_percentage: None,
    });
    let (result, hpa) = run_with(app, |mut server| async move {
        let deployment = server.apply_echo(DEPLOYMENT_URI, None).await;
        assert!(deployment["spec"].get("replicas").is_none());
        server.apply_echo(SERVICE_URI, None).await;
        let hpa = server
            .apply_echo(
                "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/hello?&force=true&fieldManager=spore-operator",
                None,
            )
            .await;
        server.pods(json!([])).await;
        server.event().await;
        server.status().await;
        server.done().await;
        hpa
    })
    .await;
    result.expect("reconcile");
    assert_eq!(hpa["spec"]["minReplicas"], 2);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
}

#[tokio::test]
async fn api_failure_is_an_error_and_backs_off() {
    let (ctx, mut server) = mock();
    let app = Arc::new(http_app());
    let script = async move {
        let (_, send) = server.expect(Method::PATCH, DEPLOYMENT_URI).await;
        reply(
            send,
            500,
            &json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                    "message": "etcd unavailable", "reason": "InternalError", "code": 500}),
        );
        server
    };
    let (result, server) = tokio::join!(reconcile(app.clone(), ctx.clone()), script);
    let mut server = server;
    let error = result.expect_err("should fail");
    assert!(
        error
            .to_string()
            .starts_with("apply Deployment default/hello:"),
        "{error}"
    );
    assert_eq!(
        error_policy(app.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(5))
    );
    let event = server.event().await;
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "ReconcileFailed");
    let note = event["note"].as_str().expect("note");
    assert!(
        note.starts_with("apply Deployment default/hello:"),
        "{note}"
    );
    assert!(note.ends_with("; retrying in 5s"), "{note}");
    assert_eq!(
        error_policy(app.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(10))
    );
    // the same event again: the recorder folds it into a series (a PATCH)
    let (body, send) = server
        .expect(
            Method::PATCH,
            &format!(
                "/apis/events.k8s.io/v1/namespaces/default/events/{}?",
                event["metadata"]["name"].as_str().expect("name")
            ),
        )
        .await;
    reply(send, 200, &body);
    assert_eq!(body["series"]["count"], 2);
    let text = ctx.metrics.render().expect("metrics");
    assert!(text.contains("spore_operator_reconcile_failures_total{error=\"kube\"} 2"));
}

#[test]
fn backoff_doubles_up_to_five_minutes() {
    let delays: Vec<u64> = [1, 2, 3, 4, 6, 7, 50, u32::MAX]
        .into_iter()
        .map(|n| backoff_delay(n).as_secs())
        .collect();
    assert_eq!(delays, [5, 10, 20, 40, 160, 300, 300, 300]);
}

#[test]
fn secret_events_map_to_the_apps_that_use_them() {
    let mut other_ns = secret_app();
    other_ns.metadata.namespace = Some("other".into());
    let mut unrelated = http_app();
    unrelated.metadata.name = Some("plain".into());
    let apps = vec![
        Arc::new(secret_app()),
        Arc::new(other_ns),
        Arc::new(unrelated),
    ];
    let hits = apps_referencing(&apps, RefKind::Secret, Some("default"), "creds");
    assert_eq!(
        hits,
        vec![ObjectRef::<WasmApp>::new("hello").within("default")]
    );
    assert!(apps_referencing(&apps, RefKind::ConfigMap, Some("default"), "creds").is_empty());
    assert!(apps_referencing(&apps, RefKind::Secret, Some("default"), "nope").is_empty());
}

fn crash_looping_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hello-7d9f-abcde", "namespace": "default",
                     "labels": {"spore.dev/app": "hello", "app.kubernetes.io/managed-by": "spore-operator"}},
        "status": {"containerStatuses": [{
            "name": "app", "image": "registry.example.com/hello:1.0", "imageID": "", "ready": false,
            "restartCount": 3,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s restarting failed container"}},
            "lastState": {"terminated": {"exitCode": 134, "reason": "Error",
                "message": "guest trapped: wasm `unreachable` instruction executed\n  at app::handle",
                "finishedAt": "2027-01-15T07:59:30Z"}}
        }]}
    })
}

#[tokio::test]
async fn a_pods_failure_becomes_the_apps_condition_and_a_warning_event_in_one_reconcile() {
    // A settled, ready app...
    let (_, first) = reconcile_ready_app().await;
    let mut settled = http_app();
    settled.status = Some(serde_json::from_value(first["status"].clone()).expect("status"));
    // ...whose pod starts crash-looping: the pod watch reconciles the app (app_of_pod), and that
    // one reconcile raises the event and writes the failure into the status.
    let started = Instant::now();
    let (result, seen) = run_with(settled.clone(), |mut server| async move {
        server
            .apply_echo(DEPLOYMENT_URI, Some(ready_deployment_status()))
            .await;
        server.apply_echo(SERVICE_URI, None).await;
        server.not_found(HPA_URI).await;
        server.pods(json!([crash_looping_pod()])).await;
        let event = server.event().await;
        let status = server.status().await;
        let latency = started.elapsed();
        server.done().await;
        json!({"event": event, "status": status, "latency_us": latency.as_micros() as u64})
    })
    .await;
    let latency = Duration::from_micros(seen["latency_us"].as_u64().expect("latency"));
    result.expect("reconcile");
    println!("pod failure to WasmApp status and event: {latency:?} in one reconcile");
    let event = &seen["event"];
    assert_eq!(
        (event["type"].as_str(), event["reason"].as_str()),
        (Some("Warning"), Some("ContainerFailed"))
    );
    let note = event["note"].as_str().expect("note");
    assert!(
        note.starts_with("pod hello-7d9f-abcde: container app: CrashLoopBackOff"),
        "{note}"
    );
    assert!(
        note.contains("guest trapped: wasm `unreachable` instruction executed"),
        "{note}"
    );
    let failure = &seen["status"]["status"]["lastFailure"];
    assert_eq!(failure["reason"], "CrashLoopBackOff");
    assert_eq!(failure["container"], "app");
    assert_eq!(failure["exitCode"], 134);
    assert_eq!(failure["at"], "2027-01-15T07:59:30Z");
    assert_eq!(condition(&seen["status"], "Degraded")["status"], "True");
    assert_eq!(
        condition(&seen["status"], "Degraded")["reason"],
        "CrashLoopBackOff"
    );

    // The same failure seen again: no second event.
    let mut failing = settled;
    failing.status =
        Some(serde_json::from_value(seen["status"]["status"].clone()).expect("status"));
    let (result, _) = run_with(failing, |mut server| async move {
        server
            .apply_echo(DEPLOYMENT_URI, Some(ready_deployment_status()))
            .await;
        server.apply_echo(SERVICE_URI, None).await;
        server.not_found(HPA_URI).await;
        server.pods(json!([crash_looping_pod()])).await;
        server.done().await;
        Value::Null
    })
    .await;
    result.expect("reconcile");
}

#[test]
fn a_pod_maps_to_its_app_by_label() {
    let pod: Pod = serde_json::from_value(crash_looping_pod()).expect("pod");
    assert_eq!(
        app_of_pod(&pod),
        Some(ObjectRef::<WasmApp>::new("hello").within("default"))
    );
    let mut stranger = pod;
    stranger.metadata.labels = None;
    assert_eq!(app_of_pod(&stranger), None);
}
