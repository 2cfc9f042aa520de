//! What `spore inspect` says about an image: the shape of its manifest (Wasm artifact, ordinary
//! container image, something else), what it holds, and whether Spore can run it. Pure: works on
//! manifests and blobs already fetched.

use std::fmt;

use oci_client::manifest::{
    IMAGE_CONFIG_MEDIA_TYPE, IMAGE_DOCKER_CONFIG_MEDIA_TYPE, ImageIndexEntry, OciDescriptor,
    OciImageManifest,
};
use serde::{Deserialize, Serialize};

use crate::artifact::{
    SPORE_WASM_LAYER_MEDIA_TYPES, TITLE_ANNOTATION, WASM_CONFIG_MEDIA_TYPE, WasmConfig,
};
use crate::world::{WasmFileError, WasmWorld};

/// A descriptor as shown to the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
}

impl From<&OciDescriptor> for Descriptor {
    fn from(d: &OciDescriptor) -> Self {
        Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            title: d
                .annotations
                .as_ref()
                .and_then(|a| a.get(TITLE_ANNOTATION))
                .cloned(),
        }
    }
}

/// One manifest of an image index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IndexEntry {
    pub media_type: String,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
}

impl From<&ImageIndexEntry> for IndexEntry {
    fn from(e: &ImageIndexEntry) -> Self {
        IndexEntry {
            media_type: e.media_type.clone(),
            digest: e.digest.clone(),
            platform: e
                .platform
                .as_ref()
                .map(|p| format!("{}/{}", p.os, p.architecture)),
        }
    }
}

/// The manifest of an index that inspect looks at: a Wasm platform first, else linux on this
/// machine's architecture.
pub fn choose_index_entry(entries: &[ImageIndexEntry]) -> Option<&ImageIndexEntry> {
    let platform = |e: &&ImageIndexEntry| {
        e.platform
            .as_ref()
            .map(|p| (p.os.to_string(), p.architecture.to_string()))
    };
    entries
        .iter()
        .find(|e| platform(e).is_some_and(|(_, arch)| arch == "wasm"))
        .or_else(|| {
            entries.iter().find(|e| {
                platform(e).is_some_and(|(os, arch)| os == "linux" && arch == host_oci_arch())
            })
        })
}

/// This machine's architecture as OCI names it.
fn host_oci_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// The kind of a manifest, from its media types alone.
#[derive(Debug, Clone)]
pub enum Shape {
    /// A Wasm artifact (Wasm config or a Wasm layer) with exactly one Wasm layer.
    WasmArtifact {
        layer: OciDescriptor,
    },
    /// Looks like a Wasm artifact but is not one Spore can take.
    BrokenWasmArtifact {
        reason: String,
    },
    /// An OCI or Docker image config.
    ContainerImage,
    Other,
}

pub fn shape_of(manifest: &OciImageManifest) -> Shape {
    let wasm_layers: Vec<&OciDescriptor> = manifest
        .layers
        .iter()
        .filter(|l| SPORE_WASM_LAYER_MEDIA_TYPES.contains(&l.media_type.as_str()))
        .collect();
    let wasm_config = manifest.config.media_type == WASM_CONFIG_MEDIA_TYPE;
    match wasm_layers.as_slice() {
        [layer] if manifest.layers.len() == 1 => Shape::WasmArtifact {
            layer: (*layer).clone(),
        },
        [] if !wasm_config => match manifest.config.media_type.as_str() {
            IMAGE_CONFIG_MEDIA_TYPE | IMAGE_DOCKER_CONFIG_MEDIA_TYPE => Shape::ContainerImage,
            _ => Shape::Other,
        },
        found => Shape::BrokenWasmArtifact {
            reason: format!(
                "it has {} layer(s), {} of them of a Wasm media type ({}): Spore runs an \
                 artifact with exactly one layer of media type {}",
                manifest.layers.len(),
                found.len(),
                media_types(&manifest.layers),
                SPORE_WASM_LAYER_MEDIA_TYPES.join(" or ")
            ),
        },
    }
}

fn media_types(descriptors: &[OciDescriptor]) -> String {
    if descriptors.is_empty() {
        return "none".into();
    }
    descriptors
        .iter()
        .map(|d| d.media_type.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// How Spore runs an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunsAs {
    /// The artifact's Wasm layer, in the shim.
    WasmArtifact,
    /// A `.wasm` file from the image's rootfs, named by the entrypoint, in the shim.
    WasmInRootfs,
    /// An ordinary Linux container, through runc (the pause container, sidecars).
    NativeContainer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// True when Spore runs the image as Wasm.
    pub runs_as_wasm: bool,
    /// How Spore runs it; `None` when it cannot run it at all.
    pub runs_as: Option<RunsAs>,
    pub reason: String,
}

impl Verdict {
    fn refused(reason: String) -> Self {
        Verdict {
            runs_as_wasm: false,
            runs_as: None,
            reason,
        }
    }
}

/// What the image holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Content {
    WasmArtifact {
        #[serde(skip_serializing_if = "Option::is_none")]
        config: Option<Box<WasmConfig>>,
        #[serde(skip_serializing_if = "Option::is_none")]
        config_error: Option<String>,
        /// The imports and exports read from the layer itself.
        #[serde(skip_serializing_if = "Option::is_none")]
        binary: Option<WasmWorld>,
        #[serde(skip_serializing_if = "Option::is_none")]
        binary_error: Option<String>,
    },
    ContainerImage {
        #[serde(skip_serializing_if = "Option::is_none")]
        os: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        architecture: Option<String>,
        entrypoint: Vec<String>,
        cmd: Vec<String>,
    },
    Other,
}

/// The whole answer of `spore inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    pub reference: String,
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_media_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests of the index the reference named, when it named one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub index: Vec<IndexEntry>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    pub content: Content,
    pub verdict: Verdict,
}

/// Judges a Wasm artifact from its config blob and its layer's bytes.
pub fn judge_wasm_artifact(
    config_blob: &[u8],
    binary: Result<WasmWorld, WasmFileError>,
) -> (Content, Verdict) {
    let (config, config_error) = match serde_json::from_slice::<WasmConfig>(config_blob) {
        Ok(config) => (Some(Box::new(config)), None),
        Err(e) => (None, Some(format!("the config is not a Wasm config: {e}"))),
    };
    let verdict = wasm_verdict(&binary, "the Wasm layer");
    let (binary, binary_error) = binary_parts(binary);
    (
        Content::WasmArtifact {
            config,
            config_error,
            binary,
            binary_error,
        },
        verdict,
    )
}

/// Whether Spore runs a Wasm binary (an artifact's layer, or a file that `spore push` would
/// publish as one); `what` names it in a refusal.
pub fn wasm_verdict(binary: &Result<WasmWorld, WasmFileError>, what: &str) -> Verdict {
    match binary {
        Ok(world) => match (world.spore_entry(), world.why_imports_fail()) {
            (Some(_), Some(why)) => Verdict::refused(format!("Spore cannot run it: {why}")),
            (Some(entry), None) => Verdict {
                runs_as_wasm: true,
                runs_as: Some(RunsAs::WasmArtifact),
                reason: format!("Spore runs it: {entry}"),
            },
            (None, _) => {
                Verdict::refused(format!("Spore cannot run it: {}", world.why_not_runnable()))
            }
        },
        Err(e) => Verdict::refused(format!("Spore refuses {what}: {e}")),
    }
}

/// A read binary as the reports hold it: its world, or the reason it could not be read.
pub fn binary_parts(
    binary: Result<WasmWorld, WasmFileError>,
) -> (Option<WasmWorld>, Option<String>) {
    match binary {
        Ok(world) => (Some(world), None),
        Err(e) => (None, Some(e.to_string())),
    }
}

/// The answer of `spore inspect FILE` for a local Wasm file.
#[derive(Debug, Clone, Serialize)]
pub struct FileReport {
    pub file: String,
    pub size: u64,
    /// `sha256:...` of the file: the digest of its layer once pushed.
    pub digest: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary: Option<WasmWorld>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub binary_error: Option<String>,
    pub verdict: Verdict,
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "File:      {}", self.file)?;
        writeln!(f, "Digest:    {}", self.digest)?;
        writeln!(
            f,
            "Size:      {}",
            size(i64::try_from(self.size).unwrap_or(i64::MAX))
        )?;
        if let Some(world) = &self.binary {
            writeln!(f, "Kind:      {}", world.kind)?;
            write_world(f, world)?;
        }
        if let Some(error) = &self.binary_error {
            writeln!(f, "File!:     {error}")?;
        }
        write!(f, "Verdict:   {}", self.verdict.reason)
    }
}

#[derive(Deserialize)]
struct ImageConfigFile {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<ImageRuntimeConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ImageRuntimeConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
}

/// Judges an ordinary container image from its config: Spore runs the `.wasm` its entrypoint
/// names (args[0], as containerd builds it from Entrypoint then Cmd), else runs it natively.
pub fn judge_container_image(config_blob: &[u8]) -> (Content, Verdict) {
    let file: ImageConfigFile = match serde_json::from_slice(config_blob) {
        Ok(file) => file,
        Err(e) => {
            return (
                Content::Other,
                Verdict::refused(format!("the image config is not valid JSON: {e}")),
            );
        }
    };
    let (entrypoint, cmd) = match file.config {
        Some(c) => (c.entrypoint.unwrap_or_default(), c.cmd.unwrap_or_default()),
        None => (Vec::new(), Vec::new()),
    };
    let program = entrypoint.first().or(cmd.first()).cloned();
    let verdict = match program {
        Some(program) if program.ends_with(".wasm") => Verdict {
            runs_as_wasm: true,
            runs_as: Some(RunsAs::WasmInRootfs),
            reason: format!(
                "Spore runs it: the entrypoint names {program}, a Wasm file in the image's \
                 rootfs (what it exports is checked when the container starts)"
            ),
        },
        Some(program) => Verdict {
            runs_as_wasm: false,
            runs_as: Some(RunsAs::NativeContainer),
            reason: format!(
                "not Wasm: the entrypoint {program} is not a .wasm file, so Spore runs this \
                 image as an ordinary Linux container through runc"
            ),
        },
        None => Verdict::refused(
            "the image config has no Entrypoint or Cmd: there is nothing to run".to_string(),
        ),
    };
    (
        Content::ContainerImage {
            os: file.os,
            architecture: file.architecture,
            entrypoint,
            cmd,
        },
        verdict,
    )
}

/// The verdict for a manifest that is neither a Wasm artifact nor a container image.
pub fn judge_other(manifest: &OciImageManifest) -> Verdict {
    let artifact_type = manifest
        .artifact_type
        .as_deref()
        .map(|t| format!(", artifact type {t}"))
        .unwrap_or_default();
    Verdict::refused(format!(
        "neither a Wasm artifact nor a container image: config media type {}{artifact_type}, \
         layer media types {}; Spore runs Wasm artifacts (config {WASM_CONFIG_MEDIA_TYPE}, \
         one layer {}) and container images",
        manifest.config.media_type,
        media_types(&manifest.layers),
        SPORE_WASM_LAYER_MEDIA_TYPES.join(" or ")
    ))
}

/// Human-readable size.
fn size(bytes: i64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

fn write_list(f: &mut fmt::Formatter<'_>, label: &str, items: &[String]) -> fmt::Result {
    if items.is_empty() {
        return writeln!(f, "{label:<11} (none)");
    }
    writeln!(f, "{label}:")?;
    for item in items {
        writeln!(f, "  {item}")?;
    }
    Ok(())
}

/// A binary's exports and imports and, for a component Spore runs, its Spore world and what of
/// its imports that world does not provide.
pub fn write_world(f: &mut fmt::Formatter<'_>, world: &WasmWorld) -> fmt::Result {
    if let Some(fit) = &world.fit {
        writeln!(f, "World:     {} (Spore's wit/)", fit.world)?;
    }
    write_list(f, "Exports", &world.exports)?;
    write_list(f, "Imports", &world.imports)?;
    if world.fit.is_some() {
        write_list(f, "Not provided", world.not_provided())?;
    }
    Ok(())
}

impl fmt::Display for Descriptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  {}  {}",
            self.media_type,
            self.digest,
            size(self.size)
        )?;
        if let Some(title) = &self.title {
            write!(f, "  {title}")?;
        }
        Ok(())
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "Reference: {}", self.reference)?;
        writeln!(f, "Digest:    {}", self.digest)?;
        if !self.index.is_empty() {
            writeln!(f, "Index:")?;
            for entry in &self.index {
                let platform = entry.platform.as_deref().unwrap_or("no platform");
                writeln!(f, "  {}  {}  {platform}", entry.media_type, entry.digest)?;
            }
        }
        if let Some(media_type) = &self.manifest_media_type {
            writeln!(f, "Manifest:  {media_type}")?;
        }
        if let Some(artifact_type) = &self.artifact_type {
            writeln!(f, "Artifact:  {artifact_type}")?;
        }
        writeln!(f, "Config:    {}", self.config)?;
        writeln!(f, "Layers:")?;
        for layer in &self.layers {
            writeln!(f, "  {layer}")?;
        }
        match &self.content {
            Content::WasmArtifact {
                config,
                config_error,
                binary,
                binary_error,
            } => {
                let kind = binary
                    .as_ref()
                    .map(|w| w.kind.to_string())
                    .unwrap_or_else(|| "unreadable Wasm".into());
                let os = config
                    .as_ref()
                    .map(|c| c.os.as_str())
                    .unwrap_or("unknown os");
                writeln!(f, "Kind:      OCI Wasm artifact ({kind}, {os})")?;
                if let Some(target) = config
                    .as_ref()
                    .and_then(|c| c.component.as_ref())
                    .and_then(|c| c.target.as_ref())
                {
                    writeln!(f, "Target:    {target}")?;
                }
                if let Some(created) = config.as_ref().map(|c| &c.created) {
                    writeln!(f, "Created:   {created}")?;
                }
                if let Some(error) = config_error {
                    writeln!(f, "Config!:   {error}")?;
                }
                if let Some(world) = binary {
                    write_world(f, world)?;
                }
                if let Some(error) = binary_error {
                    writeln!(f, "Layer!:    {error}")?;
                }
            }
            Content::ContainerImage {
                os,
                architecture,
                entrypoint,
                cmd,
            } => {
                let platform = format!(
                    "{}/{}",
                    os.as_deref().unwrap_or("?"),
                    architecture.as_deref().unwrap_or("?")
                );
                writeln!(f, "Kind:      container image ({platform})")?;
                writeln!(f, "Entrypoint: {entrypoint:?}")?;
                writeln!(f, "Cmd:       {cmd:?}")?;
            }
            Content::Other => writeln!(f, "Kind:      not a Wasm artifact nor a container image")?,
        }
        write!(f, "Verdict:   {}", self.verdict.reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{COMPONENT_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE};
    use crate::world::WasmKind;
    use oci_client::manifest::IMAGE_LAYER_GZIP_MEDIA_TYPE;

    fn descriptor(media_type: &str) -> OciDescriptor {
        OciDescriptor {
            media_type: media_type.into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            size: 10,
            ..Default::default()
        }
    }

    fn manifest(config: &str, layers: &[&str]) -> OciImageManifest {
        OciImageManifest {
            config: descriptor(config),
            layers: layers.iter().map(|l| descriptor(l)).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn shapes_follow_the_media_types() {
        assert!(matches!(
            shape_of(&manifest(WASM_CONFIG_MEDIA_TYPE, &[WASM_LAYER_MEDIA_TYPE])),
            Shape::WasmArtifact { .. }
        ));
        // runwasi's images: an image config with one component layer.
        assert!(matches!(
            shape_of(&manifest(
                IMAGE_CONFIG_MEDIA_TYPE,
                &[COMPONENT_LAYER_MEDIA_TYPE]
            )),
            Shape::WasmArtifact { .. }
        ));
        assert!(matches!(
            shape_of(&manifest(
                IMAGE_CONFIG_MEDIA_TYPE,
                &[IMAGE_LAYER_GZIP_MEDIA_TYPE]
            )),
            Shape::ContainerImage
        ));
        assert!(matches!(
            shape_of(&manifest(IMAGE_DOCKER_CONFIG_MEDIA_TYPE, &[])),
            Shape::ContainerImage
        ));
        assert!(matches!(
            shape_of(&manifest(
                "application/vnd.cncf.helm.config.v1+json",
                &["application/tar"]
            )),
            Shape::Other
        ));
        let Shape::BrokenWasmArtifact { reason } = shape_of(&manifest(
            WASM_CONFIG_MEDIA_TYPE,
            &["application/octet-stream"],
        )) else {
            panic!("a Wasm config without a Wasm layer is broken");
        };
        assert!(reason.contains("application/octet-stream"), "{reason}");
        assert!(matches!(
            shape_of(&manifest(
                WASM_CONFIG_MEDIA_TYPE,
                &[WASM_LAYER_MEDIA_TYPE, WASM_LAYER_MEDIA_TYPE]
            )),
            Shape::BrokenWasmArtifact { .. }
        ));
    }

    #[test]
    fn a_runnable_component_artifact_says_how_it_runs() {
        let world = WasmWorld {
            kind: WasmKind::Component,
            imports: vec![],
            exports: vec!["wasi:http/incoming-handler@0.2.0".into()],
            fit: None,
        };
        let config = br#"{"created":"2026-01-01T00:00:00Z","architecture":"wasm","os":"wasip2","layerDigests":[]}"#;
        let (content, verdict) = judge_wasm_artifact(config, Ok(world));
        assert!(verdict.runs_as_wasm);
        assert_eq!(verdict.runs_as, Some(RunsAs::WasmArtifact));
        assert!(verdict.reason.contains("HTTP"), "{}", verdict.reason);
        assert!(matches!(
            content,
            Content::WasmArtifact {
                config: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_precompiled_layer_is_refused() {
        let (content, verdict) = judge_wasm_artifact(b"{}", Err(WasmFileError::PrecompiledElf));
        assert!(!verdict.runs_as_wasm);
        assert_eq!(verdict.runs_as, None);
        assert!(verdict.reason.contains("precompiled"), "{}", verdict.reason);
        let Content::WasmArtifact { config_error, .. } = content else {
            panic!("still a Wasm artifact");
        };
        assert!(config_error.is_some());
    }

    #[test]
    fn container_images_run_wasm_only_when_the_entrypoint_is_a_wasm_file() {
        let (content, verdict) = judge_container_image(
            br#"{"architecture":"amd64","os":"linux","config":{"Entrypoint":["/app.wasm"],"Cmd":["--x"]}}"#,
        );
        assert_eq!(verdict.runs_as, Some(RunsAs::WasmInRootfs));
        assert!(verdict.runs_as_wasm);
        assert_eq!(
            content,
            Content::ContainerImage {
                os: Some("linux".into()),
                architecture: Some("amd64".into()),
                entrypoint: vec!["/app.wasm".into()],
                cmd: vec!["--x".into()],
            }
        );

        let (_, verdict) = judge_container_image(br#"{"config":{"Cmd":["/bin/sh"]}}"#);
        assert_eq!(verdict.runs_as, Some(RunsAs::NativeContainer));
        assert!(!verdict.runs_as_wasm);
        assert!(verdict.reason.contains("/bin/sh"), "{}", verdict.reason);

        let (_, verdict) = judge_container_image(br#"{"os":"linux"}"#);
        assert_eq!(verdict.runs_as, None);

        let (_, verdict) = judge_container_image(b"not json");
        assert!(
            verdict.reason.contains("not valid JSON"),
            "{}",
            verdict.reason
        );
    }

    #[test]
    fn other_manifests_name_their_media_types() {
        let verdict = judge_other(&manifest(
            "application/vnd.cncf.helm.config.v1+json",
            &["application/vnd.cncf.helm.chart.content.v1.tar+gzip"],
        ));
        assert!(!verdict.runs_as_wasm);
        assert!(
            verdict
                .reason
                .contains("application/vnd.cncf.helm.config.v1+json")
        );
        assert!(
            verdict
                .reason
                .contains("application/vnd.cncf.helm.chart.content.v1.tar+gzip")
        );
    }

    #[test]
    fn sizes_are_readable() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(2048), "2.0 KiB");
        assert_eq!(size(5 * 1024 * 1024), "5.0 MiB");
    }
}
