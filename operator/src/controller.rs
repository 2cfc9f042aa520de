//! The WasmApp controller: fetch what the app references, apply what [`desired`] says with
//! server-side apply, report through status and events. The decisions live in the pure modules.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::crd::{WasmApp, WasmAppStatus};
use crate::desired::{self, DesiredObjects, SpecError};
use crate::metrics::Metrics;
use crate::references::{RefKind, ReferencedObjects, referenced_names, references};
use crate::status::{self, Applied, Outcome};
use crate::{Error, FIELD_MANAGER, Result};

/// Requeue after a successful reconcile of a ready app.
pub const REQUEUE_READY: Duration = Duration::from_secs(300);
/// Requeue while an app is not ready yet (pod changes trigger a reconcile of their own).
pub const REQUEUE_NOT_READY: Duration = Duration::from_secs(30);
/// Requeue of a spec that cannot work; an edit of the app or of a referenced object comes sooner.
pub const REQUEUE_SPEC_ERROR: Duration = Duration::from_secs(300);
/// First retry after an error.
pub const BACKOFF_BASE: Duration = Duration::from_secs(5);
/// Longest wait between retries after errors.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What every reconcile shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes events.
    pub recorder: Recorder,
    /// Reconcile metrics.
    pub metrics: Arc<Metrics>,
    /// Cluster DNS domain used in status URLs.
    pub cluster_domain: String,
    /// Consecutive failures per app, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The current time (fixed in tests).
    clock: fn() -> Time,
}

impl Context {
    /// A context for `client`; events name `instance` as the reporting instance.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        cluster_domain: String,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.to_string(),
            instance,
        };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            cluster_domain,
            failures: Mutex::new(HashMap::new()),
            clock: now,
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: fn() -> Time) -> Self {
        self.clock = clock;
        self
    }

    fn note_failure(&self, key: &str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }

    fn clear_failures(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }
}

fn now() -> Time {
    Time(Timestamp::now())
}

/// Delay before retry number `attempt` (1-based): 5 s doubling up to 5 min.
pub fn backoff_delay(attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(16);
    BACKOFF_BASE
        .saturating_mul(1u32 << exponent)
        .min(BACKOFF_MAX)
}

fn app_key(app: &WasmApp) -> String {
    format!("{}/{}", app.namespace().unwrap_or_default(), app.name_any())
}

/// The app a pod of the operator belongs to, by its `spore.dev/app` label.
pub fn app_of_pod(pod: &Pod) -> Option<ObjectRef<WasmApp>> {
    let app = pod.labels().get(desired::APP_LABEL)?;
    let namespace = pod.namespace()?;
    Some(ObjectRef::new(app).within(&namespace))
}

/// Apps in `namespace` that reference the `kind` object `name`.
pub fn apps_referencing(
    apps: &[Arc<WasmApp>],
    kind: RefKind,
    namespace: Option<&str>,
    name: &str,
) -> Vec<ObjectRef<WasmApp>> {
    apps.iter()
        .filter(|app| app.namespace().as_deref() == namespace)
        .filter(|app| referenced_names(&app.spec, kind).contains(name))
        .map(|app| ObjectRef::from_obj(app.as_ref()))
        .collect()
}

/// Reconciles one WasmApp.
pub async fn reconcile(app: Arc<WasmApp>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    ctx.metrics.reconciles.inc();
    let result = reconcile_inner(&app, &ctx).await;
    ctx.metrics.observe_duration(started.elapsed());
    if result.is_ok() {
        ctx.clear_failures(&app_key(&app));
    }
    result
}

/// Retries a failed reconcile with a per-app exponential backoff.
pub fn error_policy(app: Arc<WasmApp>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.record_failure(error);
    let attempt = ctx.note_failure(&app_key(&app));
    let delay = backoff_delay(attempt);
    tracing::warn!(app = %app_key(&app), %error, attempt, ?delay, "reconcile failed");
    // error_policy is synchronous: the Warning event goes out from a task of its own
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let note = format!("{error}; retrying in {}s", delay.as_secs());
        runtime.spawn(async move {
            if let Err(error) = publish(
                &ctx,
                &app,
                EventType::Warning,
                "ReconcileFailed",
                "Reconcile",
                note,
            )
            .await
            {
                tracing::warn!(%error, "could not publish the failure event");
            }
        });
    }
    Action::requeue(delay)
}

async fn reconcile_inner(app: &WasmApp, ctx: &Context) -> Result<Action> {
    let name = app.name_any();
    let namespace = app
        .namespace()
        .ok_or_else(|| Error::MissingNamespace(name.clone()))?;
    let found = fetch_references(app, &ctx.client, &namespace).await?;
    let objects = match desired::desired(app, &found) {
        Ok(objects) => objects,
        Err(spec_error) => return report_spec_error(app, ctx, &namespace, &spec_error).await,
    };
    let DesiredObjects {
        deployment,
        service,
        hpa,
        template_hash,
    } = objects;

    let applied_deployment = apply(&ctx.client, &namespace, &name, &deployment).await?;
    let url = match &service {
        Some(service) => {
            apply(&ctx.client, &namespace, &name, service).await?;
            Some(desired::service_url(&name, &namespace, &ctx.cluster_domain))
        }
        None => {
            delete_if_owned::<Service>(&ctx.client, &namespace, app).await?;
            None
        }
    };
    match &hpa {
        Some(hpa) => {
            apply(&ctx.client, &namespace, &name, hpa).await?;
        }
        None => delete_if_owned::<HorizontalPodAutoscaler>(&ctx.client, &namespace, app).await?,
    }

    let selector = desired::selector_string(&name);
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &namespace)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| Error::kube(format!("list pods of {namespace}/{name}"), e))?
        .items;

    let previous = app.status.as_ref();
    let previous_hash = previous.and_then(|s| s.applied_template_hash.as_deref());
    if previous_hash != Some(template_hash.as_str()) {
        let (reason, note) = match previous_hash {
            None => (
                "Deployed",
                format!("created Deployment {name} running {}", app.spec.image),
            ),
            Some(_) => (
                "RolloutStarted",
                format!(
                    "pod template changed (image {}, template {template_hash})",
                    app.spec.image
                ),
            ),
        };
        publish(ctx, app, EventType::Normal, reason, "Apply", note).await?;
    }

    let now = (ctx.clock)();
    let new_status = status::compute_status(
        app.metadata.generation,
        previous,
        Outcome::Applied(Applied {
            deployment: &applied_deployment,
            pods: &pods,
            url: url.as_deref(),
            selector: &selector,
            template_hash: &template_hash,
        }),
        &now,
    );
    if let Some(failure) = status::new_failure(previous, &new_status) {
        let note = status::describe_failure(failure);
        publish(
            ctx,
            app,
            EventType::Warning,
            "ContainerFailed",
            "Observe",
            note,
        )
        .await?;
    }
    let ready = status::condition_status(&new_status.conditions, status::READY) == Some("True");
    patch_status(ctx, app, &namespace, &new_status).await?;
    Ok(Action::requeue(if ready {
        REQUEUE_READY
    } else {
        REQUEUE_NOT_READY
    }))
}

async fn report_spec_error(
    app: &WasmApp,
    ctx: &Context,
    namespace: &str,
    spec_error: &SpecError,
) -> Result<Action> {
    ctx.metrics.spec_errors.inc();
    tracing::info!(app = %app_key(app), error = %spec_error, "spec cannot be applied");
    publish(
        ctx,
        app,
        EventType::Warning,
        spec_error.reason(),
        "Reconcile",
        spec_error.to_string(),
    )
    .await?;
    let now = (ctx.clock)();
    let new_status = status::compute_status(
        app.metadata.generation,
        app.status.as_ref(),
        Outcome::Rejected(spec_error),
        &now,
    );
    patch_status(ctx, app, namespace, &new_status).await?;
    Ok(Action::requeue(REQUEUE_SPEC_ERROR))
}

async fn fetch_references(
    app: &WasmApp,
    client: &Client,
    namespace: &str,
) -> Result<ReferencedObjects> {
    let refs = references(&app.spec);
    let names = |kind: RefKind| -> BTreeSet<&str> {
        refs.iter()
            .filter(|r| r.kind == kind)
            .map(|r| r.name.as_str())
            .collect()
    };
    let mut found = ReferencedObjects::default();
    let secrets = Api::<Secret>::namespaced(client.clone(), namespace);
    for name in names(RefKind::Secret) {
        if let Some(secret) = secrets
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("get Secret {namespace}/{name}"), e))?
        {
            found.secrets.insert(name.to_string(), secret);
        }
    }
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), namespace);
    for name in names(RefKind::ConfigMap) {
        if let Some(cm) = config_maps
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("get ConfigMap {namespace}/{name}"), e))?
        {
            found.config_maps.insert(name.to_string(), cm);
        }
    }
    Ok(found)
}

/// Server-side applies `object` as `spore-operator`, taking over conflicting fields.
async fn apply<K>(client: &Client, namespace: &str, name: &str, object: &K) -> Result<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Serialize
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let api = Api::<K>::namespaced(client.clone(), namespace);
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(object),
    )
    .await
    .map_err(|e| Error::kube(format!("apply {} {namespace}/{name}", K::kind(&())), e))
}

/// Deletes the object named like `app` when it exists and `app` controls it.
async fn delete_if_owned<K>(client: &Client, namespace: &str, app: &WasmApp) -> Result<()>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + DeserializeOwned
        + Clone
        + std::fmt::Debug,
{
    let name = app.name_any();
    let api = Api::<K>::namespaced(client.clone(), namespace);
    let kind = K::kind(&());
    let Some(existing) = api
        .get_opt(&name)
        .await
        .map_err(|e| Error::kube(format!("get {kind} {namespace}/{name}"), e))?
    else {
        return Ok(());
    };
    let uid = app.uid();
    let owned = existing
        .owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && Some(&o.uid) == uid.as_ref());
    if !owned {
        return Ok(());
    }
    tracing::info!(app = %app_key(app), %kind, "deleting object the spec no longer asks for");
    match api.delete(&name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(Error::kube(format!("delete {kind} {namespace}/{name}"), e)),
    }
}

async fn publish(
    ctx: &Context,
    app: &WasmApp,
    type_: EventType,
    reason: &str,
    action: &str,
    note: String,
) -> Result<()> {
    let event = Event {
        type_,
        reason: reason.to_string(),
        note: Some(note),
        action: action.to_string(),
        secondary: None,
    };
    ctx.recorder
        .publish(&event, &app.object_ref(&()))
        .await
        .map_err(|e| Error::kube(format!("publish event {reason} for {}", app_key(app)), e))
}

async fn patch_status(
    ctx: &Context,
    app: &WasmApp,
    namespace: &str,
    new_status: &WasmAppStatus,
) -> Result<()> {
    if app.status.as_ref() == Some(new_status) {
        return Ok(());
    }
    let name = app.name_any();
    let body = serde_json::json!({
        "apiVersion": WasmApp::api_version(&()),
        "kind": WasmApp::kind(&()),
        "status": new_status,
    });
    Api::<WasmApp>::namespaced(ctx.client.clone(), namespace)
        .patch_status(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await
        .map_err(|e| Error::kube(format!("patch status of WasmApp {namespace}/{name}"), e))?;
    Ok(())
}

/// Watch configuration for the objects the operator owns: only those it labelled.
fn owned_objects() -> watcher::Config {
    watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"))
}

/// Runs the controller until `shutdown` completes.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let client = ctx.client.clone();
    let apps = Api::<WasmApp>::all(client.clone());
    let controller = Controller::new(apps, watcher::Config::default().any_semantic());
    let store = controller.store();
    let secret_store = store.clone();
    let config_map_store = store;
    controller
        .owns(Api::<Deployment>::all(client.clone()), owned_objects())
        .owns(Api::<Service>::all(client.clone()), owned_objects())
        .owns(
            Api::<HorizontalPodAutoscaler>::all(client.clone()),
            owned_objects(),
        )
        // The pods of the apps (only those the operator labelled): a container's failure
        // reaches the app's status and events at once, not at the next requeue.
        .watches(
            Api::<Pod>::all(client.clone()),
            owned_objects(),
            |pod: Pod| app_of_pod(&pod),
        )
        .watches(
            Api::<Secret>::all(client.clone()),
            watcher::Config::default(),
            move |secret: Secret| {
                apps_referencing(
                    &secret_store.state(),
                    RefKind::Secret,
                    secret.metadata.namespace.as_deref(),
                    &secret.name_any(),
                )
            },
        )
        .watches(
            Api::<ConfigMap>::all(client),
            watcher::Config::default(),
            move |cm: ConfigMap| {
                apps_referencing(
                    &config_map_store.state(),
                    RefKind::ConfigMap,
                    cm.metadata.namespace.as_deref(),
                    &cm.name_any(),
                )
            },
        )
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(%object, "reconciled"),
                Err(error) => tracing::warn!(%error, "reconcile error"),
            }
        })
        .await;
}

#[cfg(test)]
#[path = "controller_tests.rs"]
mod tests;
