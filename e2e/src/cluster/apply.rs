//! Applying manifests as a user does (`kubectl apply -f`): every document of a YAML file,
//! server-side applied into one namespace, with the examples' placeholder registry replaced.

use std::path::{Path, PathBuf};

use kube::api::{DynamicObject, Patch, PatchParams};
use kube::discovery::{ApiResource, Discovery, Scope};
use kube::{Api, ResourceExt};
use serde::Deserialize;

use super::ClusterError;

/// The registry the examples name; the suite's own replaces it.
pub const EXAMPLE_REGISTRY: &str = "registry.example.com/";

/// One object read from a manifest.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub file: PathBuf,
    pub object: DynamicObject,
}

impl Manifest {
    pub fn kind(&self) -> &str {
        self.object
            .types
            .as_ref()
            .map(|t| t.kind.as_str())
            .unwrap_or_default()
    }
}

/// The documents of every `*.yaml` in `dir`, in file-name order, with `registry.example.com/`
/// replaced by `registry/`.
pub fn read_dir(dir: &Path, registry: &str) -> Result<Vec<Manifest>, ClusterError> {
    let io = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| ClusterError::Io { what, path, source }
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io("reading", dir))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(io("reading", &file))?;
        out.extend(parse(&file, &text, registry)?);
    }
    Ok(out)
}

/// The documents of one YAML text (empty documents skipped).
pub fn parse(file: &Path, text: &str, registry: &str) -> Result<Vec<Manifest>, ClusterError> {
    let text = text.replace(
        EXAMPLE_REGISTRY,
        &format!("{}/", registry.trim_end_matches('/')),
    );
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value =
            serde_yaml::Value::deserialize(document).map_err(|e| ClusterError::Manifest {
                path: file.to_path_buf(),
                message: e.to_string(),
            })?;
        if value.is_null() {
            continue;
        }
        let object: DynamicObject =
            serde_yaml::from_value(value).map_err(|e| ClusterError::Manifest {
                path: file.to_path_buf(),
                message: e.to_string(),
            })?;
        if object.types.is_none() {
            return Err(ClusterError::Manifest {
                path: file.to_path_buf(),
                message: format!("{} has no apiVersion/kind", object.name_any()),
            });
        }
        out.push(Manifest {
            file: file.to_path_buf(),
            object,
        });
    }
    Ok(out)
}

/// Pins every image under `registry` (a string value starting with `registry/`, with a tag) to
/// the digest the registry serves for it now: `REGISTRY/spore/x:0.1.0@sha256:...`. Nodes keep
/// pulled images by name, and the examples' tags never change between runs: without the digest
/// a node would run an earlier run's component. Reads digests over plain HTTP (the suite's
/// registries are local ones).
pub fn pin_images(manifest: &mut Manifest, registry: &str) -> Result<(), ClusterError> {
    let prefix = format!("{}/", registry.trim_end_matches('/'));
    let mut value = serde_json::to_value(&manifest.object).map_err(|e| ClusterError::Manifest {
        path: manifest.file.clone(),
        message: e.to_string(),
    })?;
    pin_value(&mut value, &prefix, &manifest.file)?;
    manifest.object = serde_json::from_value(value).map_err(|e| ClusterError::Manifest {
        path: manifest.file.clone(),
        message: e.to_string(),
    })?;
    Ok(())
}

fn pin_value(value: &mut serde_json::Value, prefix: &str, file: &Path) -> Result<(), ClusterError> {
    match value {
        serde_json::Value::String(text) if text.starts_with(prefix) && !text.contains('@') => {
            let rest = &text[prefix.len()..];
            let Some((repo, tag)) = rest.rsplit_once(':') else {
                return Ok(());
            };
            let host = prefix.split('/').next().unwrap_or_default();
            let path_prefix = &prefix[host.len()..];
            let url = format!("http://{host}/v2{path_prefix}{repo}/manifests/{tag}");
            let accept = "application/vnd.oci.image.manifest.v1+json,                           application/vnd.oci.image.index.v1+json,                           application/vnd.docker.distribution.manifest.v2+json";
            let response =
                crate::http::request("HEAD", &url, &[("Accept", accept)], &[]).map_err(|e| {
                    ClusterError::Manifest {
                        path: file.to_path_buf(),
                        message: format!("{text}: {e}"),
                    }
                })?;
            let digest = match (response.status, response.header("docker-content-digest")) {
                (200, Some(digest)) => digest.to_owned(),
                (status, _) => {
                    return Err(ClusterError::Manifest {
                        path: file.to_path_buf(),
                        message: format!(
                            "{text} is not in the registry (HTTP {status} from {url})"
                        ),
                    });
                }
            };
            *text = format!("{text}@{digest}");
        }
        serde_json::Value::Array(items) => {
            for item in items {
                pin_value(item, prefix, file)?;
            }
        }
        serde_json::Value::Object(map) => {
            for item in map.values_mut() {
                pin_value(item, prefix, file)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Server-side applies `manifest` into `namespace` (namespaced kinds) as field manager
/// `spore-e2e`.
pub async fn apply(
    client: &kube::Client,
    discovery: &Discovery,
    namespace: &str,
    manifest: &Manifest,
) -> Result<(), ClusterError> {
    let types = manifest
        .object
        .types
        .as_ref()
        .ok_or_else(|| ClusterError::Manifest {
            path: manifest.file.clone(),
            message: "no apiVersion/kind".into(),
        })?;
    let (group, version) = match types.api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", types.api_version.as_str()),
    };
    let gvk = kube::api::GroupVersionKind::gvk(group, version, &types.kind);
    let (resource, capabilities): (ApiResource, _) =
        discovery
            .resolve_gvk(&gvk)
            .ok_or_else(|| ClusterError::Manifest {
                path: manifest.file.clone(),
                message: format!("the cluster does not serve {}", types.api_version),
            })?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(client.clone(), namespace, &resource),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    let name = manifest.object.name_any();
    api.patch(
        &name,
        &PatchParams::apply("spore-e2e").force(),
        &Patch::Apply(&manifest.object),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_are_read_with_the_registry_replaced() {
        let text = "# comment\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n---\n\
                    apiVersion: spore.dev/v1alpha1\nkind: WasmApp\nmetadata:\n  name: b\n\
                    spec:\n  image: registry.example.com/spore/hello:0.1.0\n---\n";
        let docs = parse(Path::new("x.yaml"), text, "127.0.0.1:5000/").expect("parse");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].kind(), "ConfigMap");
        assert_eq!(docs[1].kind(), "WasmApp");
        assert_eq!(
            docs[1].object.data["spec"]["image"],
            "127.0.0.1:5000/spore/hello:0.1.0"
        );
    }

    #[test]
    fn a_document_without_a_kind_is_refused() {
        let err = parse(Path::new("x.yaml"), "metadata:\n  name: a\n", "r").expect_err("no kind");
        assert!(err.to_string().contains("x.yaml"), "{err}");
    }

    #[test]
    fn images_in_the_registry_are_pinned_to_their_digest_and_missing_ones_named() {
        let registry = crate::Registry::start().expect("registry");
        let image = crate::image::ImageBuilder::new()
            .file("/hello.txt", "hi")
            .build()
            .expect("image");
        image
            .push_http(&registry.host(), "spore/hello", "0.1.0")
            .expect("push");
        let prefix = format!("{}/", registry.host());
        let text = "apiVersion: spore.dev/v1alpha1\nkind: WasmApp\nmetadata:\n  name: a\nspec:\n  \
                    image: registry.example.com/spore/hello:0.1.0\n  sidecars:\n  - image: docker.io/x:1\n";
        let mut docs = parse(Path::new("a.yaml"), text, &registry.host()).expect("parse");
        pin_images(&mut docs[0], &registry.host()).expect("pin");
        assert_eq!(
            docs[0].object.data["spec"]["image"],
            format!("{prefix}spore/hello:0.1.0@{}", image.digest())
        );
        assert_eq!(
            docs[0].object.data["spec"]["sidecars"][0]["image"],
            "docker.io/x:1"
        );
        let missing = text.replace("hello:0.1.0", "absent:0.1.0");
        let mut docs = parse(Path::new("a.yaml"), &missing, &registry.host()).expect("parse");
        let err = pin_images(&mut docs[0], &registry.host()).expect_err("not pushed");
        assert!(
            err.to_string()
                .contains("spore/absent:0.1.0 is not in the registry"),
            "{err}"
        );
    }

    #[test]
    fn every_example_parses() {
        let dir = crate::tools::repo_root().join("examples/apps");
        let docs = read_dir(&dir, "r.test").expect("examples parse");
        assert!(docs.iter().any(|d| d.kind() == "WasmApp"));
        for doc in &docs {
            assert!(
                !serde_json::to_string(&doc.object)
                    .expect("json")
                    .contains(EXAMPLE_REGISTRY),
                "{} still names {EXAMPLE_REGISTRY}",
                doc.file.display()
            );
        }
    }
}
