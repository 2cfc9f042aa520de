//! A registry session: the parsed reference, an `oci_client::Client` (HTTPS, or plain HTTP with
//! `--insecure`), the credentials from the docker config, and the translation of the client's
//! errors into Spore's (unreachable, auth refused, not found).

use std::str::FromStr;

use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::{Client, Reference};

use crate::auth::{self, CredentialSource, ResolvedAuth};
use crate::error::Error;

/// Parses `REGISTRY/REPOSITORY[:TAG][@DIGEST]`.
pub fn parse_reference(reference: &str) -> Result<Reference, Error> {
    if reference.trim().is_empty() {
        return Err(Error::BadReference {
            reference: reference.to_string(),
            reason: "it is empty".into(),
        });
    }
    Reference::from_str(reference).map_err(|e| Error::BadReference {
        reference: reference.to_string(),
        reason: e.to_string(),
    })
}

/// An OCI client speaking HTTPS, or plain HTTP when `insecure`.
pub fn new_client(insecure: bool) -> Result<Client, Error> {
    // reqwest is built without a default TLS provider (no aws-lc C build): rustls needs one
    // installed once per process. A second install fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `Client::new` would fall back to a default (HTTPS) client on failure: say so instead.
    Client::try_from(ClientConfig {
        protocol: if insecure {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        connect_timeout: Some(std::time::Duration::from_secs(10)),
        ..ClientConfig::default()
    })
    .map_err(|e| Error::ClientSetup(e.to_string()))
}

/// Everything needed to talk to one repository.
pub struct RegistrySession {
    pub client: Client,
    pub reference: Reference,
    pub credentials: ResolvedAuth,
    pub insecure: bool,
}

impl RegistrySession {
    /// Parses the reference and finds credentials for its registry.
    pub fn open(reference: &str, insecure: bool) -> Result<Self, Error> {
        let reference = parse_reference(reference)?;
        let credentials = auth::resolve(reference.registry())?;
        Self::with_credentials(reference, credentials, insecure)
    }

    pub fn with_credentials(
        reference: Reference,
        credentials: ResolvedAuth,
        insecure: bool,
    ) -> Result<Self, Error> {
        Ok(RegistrySession {
            client: new_client(insecure)?,
            reference,
            credentials,
            insecure,
        })
    }

    /// The registry as written in the reference (`docker.io` for Docker Hub).
    pub fn registry(&self) -> &str {
        self.reference.registry()
    }

    /// `host:port` the client connects to.
    pub fn address(&self) -> String {
        let host = self.reference.resolve_registry();
        if host_has_port(host) {
            host.to_string()
        } else if self.insecure {
            format!("{host}:80")
        } else {
            format!("{host}:443")
        }
    }

    /// Turns an `oci_client` error into one that says what happened at which registry.
    pub fn error(&self, err: OciDistributionError) -> Error {
        classify_error(
            err,
            &ErrorContext {
                registry: self.registry().to_string(),
                address: self.address(),
                reference: self.reference.whole(),
                insecure: self.insecure,
                source: self.credentials.source.clone(),
            },
        )
    }
}

fn host_has_port(host: &str) -> bool {
    match host.rsplit_once(':') {
        // `[::1]:5000` has a port, `[::1]` has not.
        Some((_, port)) => !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()),
        None => false,
    }
}

/// What an error message needs to know about the session.
#[derive(Debug, Clone)]
pub struct ErrorContext {
    pub registry: String,
    pub address: String,
    pub reference: String,
    pub insecure: bool,
    pub source: CredentialSource,
}

/// The innermost message of an error chain, e.g. "Connection refused (os error 111)".
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}

fn envelope_status<'a>(codes: impl Iterator<Item = &'a OciErrorCode>) -> Option<u16> {
    let mut status = None;
    for code in codes {
        match code {
            OciErrorCode::Unauthorized => status = Some(401),
            OciErrorCode::Denied => return Some(403),
            _ => {}
        }
    }
    status
}

/// Maps an `oci_client` error to Spore's: unreachable registry, refused access, not found, or
/// the registry's own error.
pub fn classify_error(err: OciDistributionError, ctx: &ErrorContext) -> Error {
    let refused = |status: u16| Error::AuthFailed {
        registry: ctx.registry.clone(),
        status,
        credentials: ctx.source.explain_refusal(&ctx.registry),
    };
    let not_found = |detail: String| Error::NotFound {
        reference: ctx.reference.clone(),
        detail,
    };
    match err {
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            Error::Unreachable {
                registry: ctx.registry.clone(),
                address: ctx.address.clone(),
                detail: root_cause(&e),
                insecure: ctx.insecure,
            }
        }
        OciDistributionError::RequestError(e)
            if matches!(e.status().map(|s| s.as_u16()), Some(401 | 403)) =>
        {
            refused(e.status().map(|s| s.as_u16()).unwrap_or(401))
        }
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => refused(401),
        OciDistributionError::ServerError { code, .. } if code == 401 || code == 403 => {
            refused(code)
        }
        OciDistributionError::ServerError { code: 404, url, .. } => {
            not_found(format!("HTTP 404 for {url}"))
        }
        OciDistributionError::ImageManifestNotFoundError(detail) => not_found(detail),
        OciDistributionError::RegistryError { envelope, url } => {
            if let Some(status) = envelope_status(envelope.errors.iter().map(|e| &e.code)) {
                return refused(status);
            }
            let unknown = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            });
            if unknown {
                let messages: Vec<String> =
                    envelope.errors.iter().map(|e| e.message.clone()).collect();
                return not_found(format!("{} ({url})", messages.join("; ")));
            }
            Error::Registry {
                registry: ctx.registry.clone(),
                source: OciDistributionError::RegistryError { envelope, url },
            }
        }
        other => Error::Registry {
            registry: ctx.registry.clone(),
            source: other,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::errors::{OciEnvelope, OciError};
    use std::path::PathBuf;

    fn ctx() -> ErrorContext {
        ErrorContext {
            registry: "r.example.com".into(),
            address: "r.example.com:443".into(),
            reference: "r.example.com/app:1".into(),
            insecure: false,
            source: CredentialSource::Anonymous {
                config: Some(PathBuf::from("/home/u/.docker/config.json")),
            },
        }
    }

    #[test]
    fn references_parse_or_say_why_not() {
        let reference = parse_reference("127.0.0.1:5000/apps/hello:v1").expect("parses");
        assert_eq!(reference.registry(), "127.0.0.1:5000");
        assert_eq!(reference.repository(), "apps/hello");
        assert_eq!(reference.tag(), Some("v1"));
        for bad in [
            "",
            "UPPER/Case:tag",
            "r.example.com/app:bad tag",
            "r.example.com/app@sha256:xyz",
        ] {
            let err = parse_reference(bad).expect_err(bad);
            assert!(matches!(err, Error::BadReference { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn addresses_get_the_default_port_of_the_protocol() {
        let anonymous = ResolvedAuth {
            auth: oci_client::secrets::RegistryAuth::Anonymous,
            source: CredentialSource::Anonymous { config: None },
        };
        let session = |r: &str, insecure| {
            RegistrySession::with_credentials(
                parse_reference(r).expect("parses"),
                anonymous.clone(),
                insecure,
            )
            .expect("client")
        };
        assert_eq!(
            session("127.0.0.1:5000/a:1", true).address(),
            "127.0.0.1:5000"
        );
        assert_eq!(
            session("r.example.com/a:1", false).address(),
            "r.example.com:443"
        );
        assert_eq!(
            session("r.example.com/a:1", true).address(),
            "r.example.com:80"
        );
    }

    #[test]
    fn unauthorized_answers_become_auth_failures_naming_the_config_file() {
        for err in [
            OciDistributionError::UnauthorizedError { url: "u".into() },
            OciDistributionError::ServerError {
                code: 401,
                url: "u".into(),
                message: "".into(),
            },
        ] {
            let mapped = classify_error(err, &ctx());
            assert!(
                matches!(mapped, Error::AuthFailed { status: 401, .. }),
                "{mapped}"
            );
            let text = mapped.to_string();
            assert!(text.contains("r.example.com"), "{text}");
            assert!(text.contains("/home/u/.docker/config.json"), "{text}");
        }
        let denied = OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code: OciErrorCode::Denied,
                    message: "requested access to the resource is denied".into(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "u".into(),
        };
        assert!(matches!(
            classify_error(denied, &ctx()),
            Error::AuthFailed { status: 403, .. }
        ));
    }

    #[test]
    fn unknown_manifests_are_not_found() {
        let unknown = OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code: OciErrorCode::ManifestUnknown,
                    message: "manifest unknown".into(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "u".into(),
        };
        let mapped = classify_error(unknown, &ctx());
        assert!(matches!(mapped, Error::NotFound { .. }), "{mapped}");
        assert!(
            mapped.to_string().contains("r.example.com/app:1"),
            "{mapped}"
        );
    }
}
