//! The Secrets and ConfigMaps a WasmApp reads (env, envFrom, volumes, sidecars too), whether they
//! are all there, and a hash of their contents that rolls the pods when one of them changes.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvFromSource, EnvVar, Secret};
use sha2::{Digest, Sha256};

use crate::crd::WasmAppSpec;

/// Kind of a referenced object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RefKind {
    /// A `v1/Secret`.
    Secret,
    /// A `v1/ConfigMap`.
    ConfigMap,
}

impl std::fmt::Display for RefKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RefKind::Secret => "Secret",
            RefKind::ConfigMap => "ConfigMap",
        })
    }
}

/// One use of a Secret or ConfigMap: the whole object, or one key of it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Reference {
    /// Secret or ConfigMap.
    pub kind: RefKind,
    /// Object name (same namespace as the WasmApp).
    pub name: String,
    /// The key read, for `secretKeyRef`/`configMapKeyRef`.
    pub key: Option<String>,
    /// Whether the pod may start without it.
    pub optional: bool,
}

/// Every reference a spec makes, sorted and without duplicates.
pub fn references(spec: &WasmAppSpec) -> BTreeSet<Reference> {
    let mut refs = BTreeSet::new();
    collect_env(&spec.env, &mut refs);
    collect_env_from(&spec.env_from, &mut refs);
    for sidecar in &spec.sidecars {
        collect_container(sidecar, &mut refs);
    }
    for volume in &spec.volumes {
        if let Some(secret) = &volume.secret
            && let Some(name) = &secret.secret_name
        {
            refs.insert(whole(RefKind::Secret, name, secret.optional));
        }
        if let Some(cm) = &volume.config_map {
            refs.insert(whole(RefKind::ConfigMap, &cm.name, cm.optional));
        }
    }
    refs
}

/// Names of the objects of `kind` a spec refers to.
pub fn referenced_names(spec: &WasmAppSpec, kind: RefKind) -> BTreeSet<String> {
    references(spec)
        .into_iter()
        .filter(|r| r.kind == kind)
        .map(|r| r.name)
        .collect()
}

fn whole(kind: RefKind, name: &str, optional: Option<bool>) -> Reference {
    Reference {
        kind,
        name: name.to_string(),
        key: None,
        optional: optional.unwrap_or(false),
    }
}

fn collect_container(container: &Container, refs: &mut BTreeSet<Reference>) {
    if let Some(env) = &container.env {
        collect_env(env, refs);
    }
    if let Some(env_from) = &container.env_from {
        collect_env_from(env_from, refs);
    }
}

fn collect_env(env: &[EnvVar], refs: &mut BTreeSet<Reference>) {
    for var in env {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(sel) = &from.secret_key_ref {
            refs.insert(Reference {
                kind: RefKind::Secret,
                name: sel.name.clone(),
                key: Some(sel.key.clone()),
                optional: sel.optional.unwrap_or(false),
            });
        }
        if let Some(sel) = &from.config_map_key_ref {
            refs.insert(Reference {
                kind: RefKind::ConfigMap,
                name: sel.name.clone(),
                key: Some(sel.key.clone()),
                optional: sel.optional.unwrap_or(false),
            });
        }
    }
}

fn collect_env_from(env_from: &[EnvFromSource], refs: &mut BTreeSet<Reference>) {
    for source in env_from {
        if let Some(s) = &source.secret_ref {
            refs.insert(whole(RefKind::Secret, &s.name, s.optional));
        }
        if let Some(c) = &source.config_map_ref {
            refs.insert(whole(RefKind::ConfigMap, &c.name, c.optional));
        }
    }
}

/// The referenced objects that were found, by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReferencedObjects {
    /// Secrets found.
    pub secrets: BTreeMap<String, Secret>,
    /// ConfigMaps found.
    pub config_maps: BTreeMap<String, ConfigMap>,
}

impl ReferencedObjects {
    fn has(&self, kind: RefKind, name: &str) -> bool {
        match kind {
            RefKind::Secret => self.secrets.contains_key(name),
            RefKind::ConfigMap => self.config_maps.contains_key(name),
        }
    }

    fn has_key(&self, kind: RefKind, name: &str, key: &str) -> bool {
        match kind {
            RefKind::Secret => self.secrets.get(name).is_some_and(|s| {
                s.data.as_ref().is_some_and(|d| d.contains_key(key))
                    || s.string_data.as_ref().is_some_and(|d| d.contains_key(key))
            }),
            RefKind::ConfigMap => self.config_maps.get(name).is_some_and(|c| {
                c.data.as_ref().is_some_and(|d| d.contains_key(key))
                    || c.binary_data.as_ref().is_some_and(|d| d.contains_key(key))
            }),
        }
    }

    /// The first required reference that cannot be met, if any.
    pub fn first_missing<'a>(
        &self,
        refs: impl IntoIterator<Item = &'a Reference>,
    ) -> Option<MissingReference> {
        refs.into_iter().filter(|r| !r.optional).find_map(|r| {
            if !self.has(r.kind, &r.name) {
                return Some(MissingReference {
                    kind: r.kind,
                    name: r.name.clone(),
                    key: None,
                });
            }
            match &r.key {
                Some(key) if !self.has_key(r.kind, &r.name, key) => Some(MissingReference {
                    kind: r.kind,
                    name: r.name.clone(),
                    key: Some(key.clone()),
                }),
                _ => None,
            }
        })
    }

    /// SHA-256 over the contents of every referenced object (absent ones count as absent), hex.
    pub fn content_hash<'a>(&self, refs: impl IntoIterator<Item = &'a Reference>) -> String {
        let names: BTreeSet<(RefKind, &str)> = refs
            .into_iter()
            .map(|r| (r.kind, r.name.as_str()))
            .collect();
        let mut hasher = Sha256::new();
        for (kind, name) in names {
            hasher.update(format!("{kind}/{name}\n").as_bytes());
            match kind {
                RefKind::Secret => match self.secrets.get(name) {
                    Some(secret) => {
                        hash_map(&mut hasher, "data", secret.data.iter().flatten(), |v| {
                            v.0.as_slice()
                        });
                        hash_map(
                            &mut hasher,
                            "stringData",
                            secret.string_data.iter().flatten(),
                            |v| v.as_bytes(),
                        );
                    }
                    None => hasher.update(b"absent\n"),
                },
                RefKind::ConfigMap => match self.config_maps.get(name) {
                    Some(cm) => {
                        hash_map(&mut hasher, "data", cm.data.iter().flatten(), |v| {
                            v.as_bytes()
                        });
                        hash_map(
                            &mut hasher,
                            "binaryData",
                            cm.binary_data.iter().flatten(),
                            |v| v.0.as_slice(),
                        );
                    }
                    None => hasher.update(b"absent\n"),
                },
            }
        }
        hex::encode(hasher.finalize())
    }
}

/// Hashes `section`, then each entry as length-prefixed key and value (maps iterate sorted).
fn hash_map<'a, V: 'a>(
    hasher: &mut Sha256,
    section: &str,
    entries: impl Iterator<Item = (&'a String, &'a V)>,
    bytes: impl Fn(&V) -> &[u8],
) {
    hasher.update(section.as_bytes());
    hasher.update(b"\n");
    for (key, value) in entries {
        let value = bytes(value);
        hasher.update((key.len() as u64).to_le_bytes());
        hasher.update(key.as_bytes());
        hasher.update((value.len() as u64).to_le_bytes());
        hasher.update(value);
    }
}

/// A required Secret, ConfigMap or key that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingReference {
    /// Secret or ConfigMap.
    pub kind: RefKind,
    /// Object name.
    pub name: String,
    /// The missing key, when the object exists but lacks it.
    pub key: Option<String>,
}

impl std::fmt::Display for MissingReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            None => write!(f, "{} {:?} does not exist", self.kind, self.name),
            Some(key) => write!(f, "{} {:?} has no key {:?}", self.kind, self.name, key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::WasmVolume;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::core::v1::{
        ConfigMapEnvSource, ConfigMapKeySelector, ConfigMapVolumeSource, EnvVarSource,
        SecretEnvSource, SecretKeySelector, SecretVolumeSource,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(name: &str, data: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Default::default()
        }
    }

    fn env_secret(var: &str, name: &str, key: &str, optional: Option<bool>) -> EnvVar {
        EnvVar {
            name: var.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: name.into(),
                    key: key.into(),
                    optional,
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn spec_with_all_kinds() -> WasmAppSpec {
        WasmAppSpec {
            image: "app:1".into(),
            env: vec![
                env_secret("TOKEN", "creds", "token", None),
                EnvVar {
                    name: "MODE".into(),
                    value_from: Some(EnvVarSource {
                        config_map_key_ref: Some(ConfigMapKeySelector {
                            name: "settings".into(),
                            key: "mode".into(),
                            optional: Some(true),
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                EnvVar {
                    name: "PLAIN".into(),
                    value: Some("x".into()),
                    ..Default::default()
                },
            ],
            env_from: vec![EnvFromSource {
                config_map_ref: Some(ConfigMapEnvSource {
                    name: "envcm".into(),
                    optional: None,
                }),
                secret_ref: Some(SecretEnvSource {
                    name: "envsecret".into(),
                    optional: Some(false),
                }),
                prefix: None,
            }],
            volumes: vec![
                WasmVolume {
                    name: "site".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: "site-files".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                WasmVolume {
                    name: "tls".into(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some("tls-cert".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            ],
            sidecars: vec![Container {
                name: "shipper".into(),
                env: Some(vec![env_secret("KEY", "shipper-key", "k", None)]),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn collects_every_kind_of_reference() {
        let refs = references(&spec_with_all_kinds());
        let listed: Vec<(RefKind, &str, Option<&str>, bool)> = refs
            .iter()
            .map(|r| (r.kind, r.name.as_str(), r.key.as_deref(), r.optional))
            .collect();
        assert_eq!(
            listed,
            vec![
                (RefKind::Secret, "creds", Some("token"), false),
                (RefKind::Secret, "envsecret", None, false),
                (RefKind::Secret, "shipper-key", Some("k"), false),
                (RefKind::Secret, "tls-cert", None, false),
                (RefKind::ConfigMap, "envcm", None, false),
                (RefKind::ConfigMap, "settings", Some("mode"), true),
                (RefKind::ConfigMap, "site-files", None, false),
            ]
        );
        assert_eq!(
            referenced_names(&spec_with_all_kinds(), RefKind::ConfigMap),
            ["envcm", "settings", "site-files"]
                .into_iter()
                .map(String::from)
                .collect()
        );
    }

    #[test]
    fn missing_object_and_missing_key_are_told_apart() {
        let spec = WasmAppSpec {
            env: vec![env_secret("T", "creds", "token", None)],
            ..Default::default()
        };
        let refs = references(&spec);
        let none = ReferencedObjects::default();
        let missing = none.first_missing(&refs).expect("missing");
        assert_eq!(missing.to_string(), "Secret \"creds\" does not exist");

        let mut wrong_key = ReferencedObjects::default();
        wrong_key
            .secrets
            .insert("creds".into(), secret("creds", &[("other", "v")]));
        let missing = wrong_key.first_missing(&refs).expect("missing key");
        assert_eq!(missing.to_string(), "Secret \"creds\" has no key \"token\"");

        let mut good = ReferencedObjects::default();
        good.secrets
            .insert("creds".into(), secret("creds", &[("token", "v")]));
        assert_eq!(good.first_missing(&refs), None);
    }

    #[test]
    fn optional_references_may_be_missing() {
        let spec = WasmAppSpec {
            env: vec![env_secret("T", "creds", "token", Some(true))],
            ..Default::default()
        };
        assert_eq!(
            ReferencedObjects::default().first_missing(&references(&spec)),
            None
        );
    }

    #[test]
    fn hash_changes_with_content_and_presence_only() {
        let spec = WasmAppSpec {
            env: vec![env_secret("T", "creds", "token", Some(true))],
            ..Default::default()
        };
        let refs = references(&spec);
        let absent = ReferencedObjects::default().content_hash(&refs);
        let mut v1 = ReferencedObjects::default();
        v1.secrets
            .insert("creds".into(), secret("creds", &[("token", "one")]));
        let mut v2 = ReferencedObjects::default();
        v2.secrets
            .insert("creds".into(), secret("creds", &[("token", "two")]));
        let h1 = v1.content_hash(&refs);
        assert_eq!(h1.len(), 64);
        assert_ne!(h1, absent);
        assert_ne!(h1, v2.content_hash(&refs));
        assert_eq!(h1, v1.clone().content_hash(&refs));
        // an unreferenced object does not move the hash
        let mut extra = v1.clone();
        extra
            .secrets
            .insert("unrelated".into(), secret("unrelated", &[("a", "b")]));
        assert_eq!(h1, extra.content_hash(&refs));
    }

    #[test]
    fn hash_separates_keys_from_values() {
        let refs = references(&WasmAppSpec {
            env_from: vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: "s".into(),
                    optional: None,
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        let mut a = ReferencedObjects::default();
        a.secrets.insert("s".into(), secret("s", &[("ab", "c")]));
        let mut b = ReferencedObjects::default();
        b.secrets.insert("s".into(), secret("s", &[("a", "bc")]));
        assert_ne!(a.content_hash(&refs), b.content_hash(&refs));
    }
}
