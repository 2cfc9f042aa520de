//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go does it: the holder renews
//! the lease well within its duration; another replica takes it over only once it has expired.
//! Writes carry the lease's `resourceVersion`, so two replicas racing for it cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};

use crate::{Error, Result};

/// Where the lease lives and how it is held.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// Namespace of the Lease.
    pub namespace: String,
    /// Name of the Lease.
    pub name: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the holder renews and others retry.
    pub retry_period: Duration,
}

/// What to do with the lease as it stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No lease yet: create it, held by us.
    Create,
    /// We hold it: renew.
    Renew,
    /// Someone else held it but it expired (or was released): take it.
    TakeOver,
    /// Someone else holds a valid lease.
    Wait {
        /// The current holder.
        holder: String,
    },
}

/// Decides from the current lease, our identity and the time.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let duration = SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
    let expired = match spec.renew_time.or(spec.acquire_time) {
        Some(MicroTime(renewed)) => renewed + duration < now,
        None => true,
    };
    if expired {
        Decision::TakeOver
    } else {
        Decision::Wait { holder }
    }
}

/// The lease to write for `decision` (`None` for [`Decision::Wait`]).
pub fn next_lease(
    current: Option<&Lease>,
    config: &LeaseConfig,
    decision: &Decision,
    now: Timestamp,
) -> Option<Lease> {
    let duration_seconds = i32::try_from(config.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let previous = current.and_then(|l| l.spec.clone()).unwrap_or_default();
    let spec = match decision {
        Decision::Wait { .. } => return None,
        Decision::Create => LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(0),
            ..Default::default()
        },
        Decision::Renew => LeaseSpec {
            lease_duration_seconds: Some(duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..previous
        },
        Decision::TakeOver => LeaseSpec {
            holder_identity: Some(config.identity.clone()),
            lease_duration_seconds: Some(duration_seconds),
            acquire_time: Some(MicroTime(now)),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(previous.lease_transitions.unwrap_or(0).saturating_add(1)),
            ..previous
        },
    };
    let metadata = match current {
        // keep resourceVersion: the write fails if someone else wrote in between
        Some(lease) => lease.metadata.clone(),
        None => ObjectMeta {
            name: Some(config.name.clone()),
            namespace: Some(config.namespace.clone()),
            ..Default::default()
        },
    };
    Some(Lease {
        metadata,
        spec: Some(spec),
    })
}

/// Takes, holds and releases the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    config: LeaseConfig,
}

impl LeaderElector {
    /// An elector for `config` using `client`.
    pub fn new(client: Client, config: LeaseConfig) -> Self {
        LeaderElector {
            api: Api::namespaced(client, &config.namespace),
            config,
        }
    }

    /// One round: returns whether we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&self) -> Result<bool> {
        let name = &self.config.name;
        let current = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("get Lease {name}"), e))?;
        let now = Timestamp::now();
        let decision = decide(current.as_ref(), &self.config.identity, now);
        if let Decision::Wait { holder } = &decision {
            tracing::debug!(%holder, "lease held by another replica");
        }
        let Some(lease) = next_lease(current.as_ref(), &self.config, &decision, now) else {
            return Ok(false);
        };
        let written = match decision {
            Decision::Create => self.api.create(&PostParams::default(), &lease).await,
            _ => self.api.replace(name, &PostParams::default(), &lease).await,
        };
        match written {
            Ok(_) => {
                if decision != Decision::Renew {
                    tracing::info!(identity = %self.config.identity, lease = %name, "became leader");
                }
                Ok(true)
            }
            // another replica wrote first
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(Error::kube(format!("write Lease {name}"), e)),
        }
    }

    /// Waits until we hold the lease. Errors are logged and retried.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, "leader election"),
            }
            tokio::time::sleep(self.config.retry_period).await;
        }
    }

    /// Renews the lease until it cannot be renewed within its duration; returns why.
    pub async fn hold(&self) -> Error {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renewal = tokio::time::Instant::now(),
                Ok(false) => return Error::LeaseLost(self.config.name.clone()),
                Err(error) => tracing::warn!(%error, "renewing the lease"),
            }
            if last_renewal.elapsed() >= self.config.lease_duration {
                return Error::LeaseLost(self.config.name.clone());
            }
        }
    }

    /// Gives the lease up so another replica takes over at once.
    pub async fn release(&self) -> Result<()> {
        let name = &self.config.name;
        let Some(current) = self
            .api
            .get_opt(name)
            .await
            .map_err(|e| Error::kube(format!("get Lease {name}"), e))?
        else {
            return Ok(());
        };
        let mut spec = current.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        let released = Lease {
            metadata: current.metadata,
            spec: Some(spec),
        };
        self.api
            .replace(name, &PostParams::default(), &released)
            .await
            .map_err(|e| Error::kube(format!("release Lease {name}"), e))?;
        tracing::info!(lease = %name, "released the lease");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaseConfig {
        LeaseConfig {
            namespace: "spore-system".into(),
            name: "spore-operator".into(),
            identity: "me".into(),
            lease_duration: Duration::from_secs(15),
            retry_period: Duration::from_secs(2),
        }
    }

    fn lease(holder: Option<&str>, renewed: Timestamp, duration: i32) -> Lease {
        Lease {
            metadata: ObjectMeta {
                name: Some("spore-operator".into()),
                namespace: Some("spore-system".into()),
                resource_version: Some("42".into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(String::from),
                lease_duration_seconds: Some(duration),
                renew_time: Some(MicroTime(renewed)),
                acquire_time: Some(MicroTime(renewed)),
                lease_transitions: Some(3),
                ..Default::default()
            }),
        }
    }

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("time")
    }

    mod against_mock_api {
        use super::*;
        use http::{Method, Request, Response};
        use kube::client::Body;
        use serde_json::{Value, json};
        use tower_test::mock::{Handle, SendResponse};

        const LEASE_URI: &str =
            "/apis/coordination.k8s.io/v1/namespaces/spore-system/leases/spore-operator";

        fn elector() -> (LeaderElector, Handle<Request<Body>, Response<Body>>) {
            let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let client = Client::new(service, "default");
            (LeaderElector::new(client, config()), handle)
        }

        async fn expect(
            handle: &mut Handle<Request<Body>, Response<Body>>,
            method: Method,
            uri: &str,
        ) -> (Value, SendResponse<Response<Body>>) {
            let (request, send) = handle.next_request().await.expect("a request");
            assert_eq!(
                (request.method().clone(), request.uri().to_string()),
                (method, uri.to_string())
            );
            let bytes = request.into_body().collect_bytes().await.expect("body");
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).expect("json")
            };
            (body, send)
        }

        fn reply(send: SendResponse<Response<Body>>, code: u16, body: &Value) {
            send.send_response(
                Response::builder()
                    .status(code)
                    .body(Body::from(serde_json::to_vec(body).expect("json")))
                    .expect("response"),
            );
        }

        fn status(code: u16, reason: &str) -> Value {
            json!({"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Failure",
                   "message": reason, "reason": reason, "code": code})
        }

        fn lease_json(holder: &str, renewed: Timestamp) -> Value {
            serde_json::to_value(lease(Some(holder), renewed, 15)).expect("json")
        }

        #[tokio::test]
        async fn creates_the_lease_when_there_is_none() {
            let (elector, mut handle) = elector();
            let server = async move {
                let (_, send) = expect(&mut handle, Method::GET, LEASE_URI).await;
                reply(send, 404, &status(404, "NotFound"));
                let (body, send) = expect(
                    &mut handle,
                    Method::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/spore-system/leases?",
                )
                .await;
                reply(send, 201, &body);
                body
            };
            let (held, body) = tokio::join!(elector.try_acquire_or_renew(), server);
            assert!(held.expect("acquire"));
            assert_eq!(body["spec"]["holderIdentity"], "me");
            assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        }

        #[tokio::test]
        async fn losing_the_race_is_not_an_error() {
            let (elector, mut handle) = elector();
            let server = async move {
                let (_, send) = expect(&mut handle, Method::GET, LEASE_URI).await;
                reply(send, 200, &lease_json("other", Timestamp::UNIX_EPOCH));
                let (body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_URI}?")).await;
                reply(send, 409, &status(409, "Conflict"));
                body
            };
            let (held, body) = tokio::join!(elector.try_acquire_or_renew(), server);
            assert!(!held.expect("no error"));
            // the take-over carried the version it read
            assert_eq!(body["metadata"]["resourceVersion"], "42");
            assert_eq!(body["spec"]["leaseTransitions"], 4);
        }

        #[tokio::test]
        async fn a_valid_foreign_lease_is_left_alone() {
            let (elector, mut handle) = elector();
            let server = async move {
                let (_, send) = expect(&mut handle, Method::GET, LEASE_URI).await;
                reply(send, 200, &lease_json("other", Timestamp::now()));
                handle
            };
            let (held, mut handle) = tokio::join!(elector.try_acquire_or_renew(), server);
            assert!(!held.expect("no error"));
            drop(elector);
            assert!(handle.next_request().await.is_none(), "no write expected");
        }

        #[tokio::test]
        async fn release_clears_the_holder() {
            let (elector, mut handle) = elector();
            let server = async move {
                let (_, send) = expect(&mut handle, Method::GET, LEASE_URI).await;
                reply(send, 200, &lease_json("me", Timestamp::now()));
                let (body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_URI}?")).await;
                reply(send, 200, &body);
                body
            };
            let (released, body) = tokio::join!(elector.release(), server);
            released.expect("release");
            assert!(body["spec"].get("holderIdentity").is_none());
            assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
        }
    }

    #[test]
    fn no_lease_means_create() {
        assert_eq!(decide(None, "me", at(0)), Decision::Create);
        let new = next_lease(None, &config(), &Decision::Create, at(0)).expect("lease");
        let spec = new.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(spec.lease_transitions, Some(0));
        assert_eq!(new.metadata.name.as_deref(), Some("spore-operator"));
        assert_eq!(new.metadata.namespace.as_deref(), Some("spore-system"));
    }

    #[test]
    fn own_lease_is_renewed_keeping_resource_version() {
        let current = lease(Some("me"), at(0), 15);
        assert_eq!(decide(Some(&current), "me", at(5)), Decision::Renew);
        let renewed =
            next_lease(Some(&current), &config(), &Decision::Renew, at(5)).expect("lease");
        assert_eq!(renewed.metadata.resource_version.as_deref(), Some("42"));
        let spec = renewed.spec.expect("spec");
        assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
        assert_eq!(spec.lease_transitions, Some(3));
    }

    #[test]
    fn valid_foreign_lease_means_wait() {
        let current = lease(Some("other"), at(0), 15);
        assert_eq!(
            decide(Some(&current), "me", at(10)),
            Decision::Wait {
                holder: "other".into()
            }
        );
        assert_eq!(
            next_lease(
                Some(&current),
                &config(),
                &Decision::Wait {
                    holder: "other".into()
                },
                at(10)
            ),
            None
        );
    }

    #[test]
    fn expired_or_released_lease_is_taken_over() {
        let expired = lease(Some("other"), at(0), 15);
        assert_eq!(decide(Some(&expired), "me", at(16)), Decision::TakeOver);
        let taken =
            next_lease(Some(&expired), &config(), &Decision::TakeOver, at(16)).expect("lease");
        let spec = taken.spec.expect("spec");
        assert_eq!(spec.holder_identity.as_deref(), Some("me"));
        assert_eq!(spec.lease_transitions, Some(4));
        assert_eq!(spec.acquire_time, Some(MicroTime(at(16))));

        let released = lease(None, at(0), 1);
        assert_eq!(decide(Some(&released), "me", at(0)), Decision::TakeOver);
    }
}
