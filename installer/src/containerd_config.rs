//! Structural edits of containerd's TOML config: add, check and remove the `spore` CRI runtime.
//!
//! Pure functions over text: nothing here touches the file system. Everything in the file that is
//! not the `spore` runtime table is left exactly as it was (comments, order, quoting, spacing);
//! when nothing needs to change the input text is handed back unchanged, byte for byte.

use toml_edit::{DocumentMut, Item, Table, TableLike, Value};

/// The CRI runtime handler (and RuntimeClass handler) name.
pub const RUNTIME_NAME: &str = "spore";
/// containerd's runtime type for the shim `containerd-shim-spore-v1`.
pub const RUNTIME_TYPE: &str = spore_format::RUNTIME_TYPE;

/// The config schema containerd reads, from the file's `version` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `version = 1` (or no version, containerd 1.x): CRI plugin is `plugins.cri`.
    V1,
    /// `version = 2` (containerd 1.5 to 1.7; 2.x migrates it): `plugins."io.containerd.grpc.v1.cri"`.
    V2,
    /// `version = 3` (containerd 2.x): `plugins."io.containerd.cri.v1.runtime"`.
    V3,
}

impl Layout {
    /// The plugin table that holds `containerd.runtimes` in this layout.
    pub fn cri_runtime_plugin(self) -> &'static str {
        match self {
            Layout::V1 => "cri",
            Layout::V2 => "io.containerd.grpc.v1.cri",
            Layout::V3 => "io.containerd.cri.v1.runtime",
        }
    }

    /// The value of the `version` key for this layout.
    pub fn version(self) -> i64 {
        match self {
            Layout::V1 => 1,
            Layout::V2 => 2,
            Layout::V3 => 3,
        }
    }

    fn from_version(version: i64) -> Option<Layout> {
        match version {
            1 => Some(Layout::V1),
            2 => Some(Layout::V2),
            3 => Some(Layout::V3),
            _ => None,
        }
    }

    /// The dotted path of the runtime table, for messages and docs.
    pub fn runtime_table_path(self) -> String {
        format!(
            "plugins.\"{}\".containerd.runtimes.{RUNTIME_NAME}",
            self.cri_runtime_plugin()
        )
    }
}

/// What the `spore` runtime entry must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeEntry {
    /// Absolute path of the shim on the host (containerd's `runtime_path`, supported since 1.6).
    pub runtime_path: String,
    /// `options.SystemdCgroup`, copied from the node's runc runtime.
    pub systemd_cgroup: bool,
}

/// Why a config could not be read or edited.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("not valid TOML: {0}")]
    Parse(#[from] toml_edit::TomlError),
    #[error("`version` must be the integer 1, 2 or 3, found {found}")]
    Version { found: String },
    #[error("`{path}` must be a table, found {found}")]
    NotATable { path: String, found: String },
    #[error("`{path}` is an inline table; Spore edits only standard tables there")]
    InlineTable { path: String },
}

/// The result of an edit: the new text and whether it differs from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    pub changed: bool,
}

impl Edited {
    fn unchanged(text: &str) -> Edited {
        Edited {
            text: text.to_owned(),
            changed: false,
        }
    }
}

/// How to pick the layout of a file that has no `version` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unversioned {
    /// As containerd does: an empty file gets `version = 2` written into it (read by 1.7 and
    /// 2.x alike); a non-empty file without `version` is version 1.
    LikeContainerd,
    /// The file is a fragment of a bigger config (a k3s/rke2 template that includes the
    /// platform's base): use this layout and never write a `version` key.
    Fragment(Layout),
}

/// Parses containerd config text.
pub fn parse(text: &str) -> Result<DocumentMut, ConfigError> {
    Ok(text.parse::<DocumentMut>()?)
}

/// The layout of `doc`, and whether a `version` key has to be added to it.
pub fn detect_layout(
    doc: &DocumentMut,
    unversioned: Unversioned,
) -> Result<(Layout, bool), ConfigError> {
    match doc.get("version") {
        Some(item) => {
            let layout = item
                .as_integer()
                .and_then(Layout::from_version)
                .ok_or_else(|| ConfigError::Version {
                    found: item.to_string().trim().to_owned(),
                })?;
            Ok((layout, false))
        }
        None => match unversioned {
            Unversioned::Fragment(layout) => Ok((layout, false)),
            Unversioned::LikeContainerd if doc.as_table().is_empty() => Ok((Layout::V2, true)),
            Unversioned::LikeContainerd => Ok((Layout::V1, false)),
        },
    }
}

/// Whether the document defines the CRI runtime plugin's table for `layout` (that decides which
/// imported file wins, since containerd 1.x replaces whole plugin sections on import).
pub fn defines_cri_plugin(doc: &DocumentMut, layout: Layout) -> bool {
    doc.get("plugins")
        .and_then(Item::as_table_like)
        .and_then(|plugins| plugins.get(layout.cri_runtime_plugin()))
        .is_some()
}

fn lookup<'a>(doc: &'a DocumentMut, path: &[&str]) -> Option<&'a Item> {
    let mut item = doc.as_item();
    for key in path {
        item = item.as_table_like()?.get(key)?;
    }
    Some(item)
}

fn containerd_table_path(layout: Layout) -> [&'static str; 3] {
    ["plugins", layout.cri_runtime_plugin(), "containerd"]
}

/// `SystemdCgroup` of the default runtime (`default_runtime_name`, else `runc`), if the file sets it.
pub fn default_runtime_systemd_cgroup(doc: &DocumentMut, layout: Layout) -> Option<bool> {
    let containerd = containerd_table_path(layout);
    let default_name = lookup(doc, &containerd)
        .and_then(Item::as_table_like)
        .and_then(|t| t.get("default_runtime_name"))
        .and_then(Item::as_str)
        .filter(|name| !name.is_empty() && *name != RUNTIME_NAME)
        .unwrap_or("runc");
    let mut path = containerd.to_vec();
    path.extend(["runtimes", default_name, "options", "SystemdCgroup"]);
    lookup(doc, &path).and_then(Item::as_bool)
}

/// Whether the document has a `spore` runtime entry (complete or not).
pub fn has_runtime(doc: &DocumentMut, layout: Layout) -> bool {
    let mut path = containerd_table_path(layout).to_vec();
    path.extend(["runtimes", RUNTIME_NAME]);
    lookup(doc, &path).is_some()
}

/// Whether the document's `spore` entry says exactly what `entry` asks for.
pub fn runtime_matches(doc: &DocumentMut, layout: Layout, entry: &RuntimeEntry) -> bool {
    let mut path = containerd_table_path(layout).to_vec();
    path.extend(["runtimes", RUNTIME_NAME]);
    let Some(table) = lookup(doc, &path).and_then(Item::as_table_like) else {
        return false;
    };
    let systemd = table
        .get("options")
        .and_then(Item::as_table_like)
        .and_then(|o| o.get("SystemdCgroup"))
        .and_then(Item::as_bool);
    let annotations_passed = table
        .get("container_annotations")
        .and_then(Item::as_array)
        .is_some_and(|a| {
            CONTAINER_ANNOTATIONS
                .iter()
                .all(|wanted| a.iter().any(|v| v.as_str() == Some(*wanted)))
        });
    table.get("runtime_type").and_then(Item::as_str) == Some(RUNTIME_TYPE)
        && table.get("runtime_path").and_then(Item::as_str) == Some(entry.runtime_path.as_str())
        && systemd == Some(entry.systemd_cgroup)
        && annotations_passed
}

/// Container annotations containerd passes into the OCI spec of `spore` containers: the
/// kubelet's `terminationMessagePath`, so the shim writes the termination message where the
/// pod said (without it, the shim finds the kubelet's file by its default path and layout).
pub const CONTAINER_ANNOTATIONS: &[&str] = &["io.kubernetes.container.terminationMessagePath"];

/// Walks to (creating as needed) the standard table at `path` below the root.
fn table_at<'a>(doc: &'a mut DocumentMut, path: &[&str]) -> Result<&'a mut Table, ConfigError> {
    let mut table = doc.as_table_mut();
    let mut walked = String::new();
    for key in path {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(&format!("\"{key}\""));
        let item = table.entry(key).or_insert_with(|| {
            let mut fresh = Table::new();
            fresh.set_implicit(true);
            Item::Table(fresh)
        });
        table = match item {
            Item::Table(t) => t,
            Item::Value(Value::InlineTable(_)) => {
                return Err(ConfigError::InlineTable { path: walked });
            }
            other => {
                return Err(ConfigError::NotATable {
                    path: walked,
                    found: other.type_name().to_owned(),
                });
            }
        };
    }
    Ok(table)
}

fn set_str(table: &mut dyn TableLike, key: &str, value: &str) {
    if table.get(key).and_then(Item::as_str) != Some(value) {
        table.insert(key, toml_edit::value(value));
    }
}

/// Adds or corrects the `spore` runtime. Returns the input unchanged when it already matches.
pub fn ensure_runtime(
    text: &str,
    entry: &RuntimeEntry,
    unversioned: Unversioned,
) -> Result<Edited, ConfigError> {
    let mut doc = parse(text)?;
    let (layout, add_version) = detect_layout(&doc, unversioned)?;
    if runtime_matches(&doc, layout, entry) {
        return Ok(Edited::unchanged(text));
    }
    if doc.as_table().is_empty() {
        // Only comments (or masked template lines): toml_edit keeps them as the document's
        // trailing text, which prints after every table. Keep them first, where they were.
        let mut trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
        if !trailing.is_empty() {
            // A last comment line without its newline would swallow the first key written
            // after it (`#version = 2`, read by containerd as no version at all).
            if !trailing.ends_with('\n') {
                trailing.push('\n');
            }
            doc.decor_mut().set_prefix(trailing);
            doc.set_trailing("");
        }
    }
    if add_version {
        doc.insert("version", toml_edit::value(layout.version()));
    }
    let mut path = containerd_table_path(layout).to_vec();
    path.extend(["runtimes", RUNTIME_NAME]);
    let runtime = table_at(&mut doc, &path)?;
    runtime.set_implicit(false);
    set_str(runtime, "runtime_type", RUNTIME_TYPE);
    set_str(runtime, "runtime_path", &entry.runtime_path);
    let mut annotations: Vec<String> = runtime
        .get("container_annotations")
        .and_then(Item::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let before = annotations.len();
    for wanted in CONTAINER_ANNOTATIONS {
        if !annotations.iter().any(|a| a == wanted) {
            annotations.push((*wanted).to_string());
        }
    }
    if annotations.len() != before || runtime.get("container_annotations").is_none() {
        let array: toml_edit::Array = annotations.iter().map(String::as_str).collect();
        runtime.insert("container_annotations", toml_edit::value(array));
    }
    let options = match runtime.entry("options").or_insert_with(|| {
        let mut fresh = Table::new();
        fresh.set_implicit(false);
        Item::Table(fresh)
    }) {
        Item::Table(t) => t as &mut dyn TableLike,
        Item::Value(Value::InlineTable(t)) => t as &mut dyn TableLike,
        other => {
            return Err(ConfigError::NotATable {
                path: format!("{}.options", layout.runtime_table_path()),
                found: other.type_name().to_owned(),
            });
        }
    };
    if options.get("SystemdCgroup").and_then(Item::as_bool) != Some(entry.systemd_cgroup) {
        options.insert("SystemdCgroup", toml_edit::value(entry.systemd_cgroup));
    }
    let text_out = doc.to_string();
    let changed = text_out != text;
    Ok(Edited {
        text: text_out,
        changed,
    })
}

/// Removes the `spore` runtime table, leaving everything else as it is. It is looked for under
/// every layout's CRI plugin, so a fragment without `version` (a template) is cleaned as well.
pub fn remove_runtime(text: &str) -> Result<Edited, ConfigError> {
    let mut doc = parse(text)?;
    let mut removed = false;
    for layout in [Layout::V1, Layout::V2, Layout::V3] {
        let runtimes = doc
            .get_mut("plugins")
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.get_mut(layout.cri_runtime_plugin()))
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.get_mut("containerd"))
            .and_then(Item::as_table_like_mut)
            .and_then(|t| t.get_mut("runtimes"))
            .and_then(Item::as_table_like_mut);
        if let Some(runtimes) = runtimes {
            removed |= runtimes.remove(RUNTIME_NAME).is_some();
        }
    }
    if !removed {
        return Ok(Edited::unchanged(text));
    }
    let text_out = doc.to_string();
    let changed = text_out != text;
    Ok(Edited {
        text: text_out,
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(systemd: bool) -> RuntimeEntry {
        RuntimeEntry {
            runtime_path: "/opt/spore/bin/containerd-shim-spore-v1".into(),
            systemd_cgroup: systemd,
        }
    }

    const V2: &str = r#"# node config
version = 2
root = "/var/lib/containerd"

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.8"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          SystemdCgroup = true   # matches the kubelet

[metrics]
  address = ""
"#;

    const V3: &str = r#"version = 3
[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = 'io.containerd.runc.v2'
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    SystemdCgroup = false
"#;

    #[test]
    fn v2_gets_the_runtime_in_the_grpc_cri_plugin_and_keeps_the_rest() {
        let out = ensure_runtime(V2, &entry(true), Unversioned::LikeContainerd).expect("patch");
        assert!(out.changed);
        assert!(
            out.text
                .starts_with(V2.trim_end_matches("\n[metrics]\n  address = \"\"\n"))
        );
        let doc = parse(&out.text).expect("reparse");
        assert!(runtime_matches(&doc, Layout::V2, &entry(true)));
        assert!(
            out.text.contains(
                "container_annotations = [\"io.kubernetes.container.terminationMessagePath\"]"
            ),
            "{}",
            out.text
        );
        assert!(out.text.contains(
            "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.spore]\nruntime_type = \"io.containerd.spore.v1\"\nruntime_path = \"/opt/spore/bin/containerd-shim-spore-v1\""
        ));
        assert!(
            out.text
                .contains("SystemdCgroup = true   # matches the kubelet")
        );
    }

    #[test]
    fn a_comment_without_a_newline_does_not_swallow_the_version() {
        // Found by the fuzz target (`tests/fuzz.rs`): the file "#" became "#version = 2 ...".
        let out = ensure_runtime("#", &entry(true), Unversioned::LikeContainerd).expect("patch");
        assert!(out.text.starts_with("#\nversion = 2\n"), "{}", out.text);
        let again = ensure_runtime(&out.text, &entry(true), Unversioned::LikeContainerd)
            .expect("patch again");
        assert!(!again.changed, "{}", again.text);
    }

    #[test]
    fn v3_gets_the_runtime_in_the_cri_runtime_plugin() {
        let out = ensure_runtime(V3, &entry(false), Unversioned::LikeContainerd).expect("patch");
        assert!(out.changed);
        let doc = parse(&out.text).expect("reparse");
        assert!(runtime_matches(&doc, Layout::V3, &entry(false)));
        assert!(!has_runtime(&doc, Layout::V2));
        assert!(out.text.starts_with(V3));
    }

    #[test]
    fn a_second_patch_changes_nothing() {
        let once = ensure_runtime(V2, &entry(true), Unversioned::LikeContainerd).expect("patch");
        let twice =
            ensure_runtime(&once.text, &entry(true), Unversioned::LikeContainerd).expect("again");
        assert!(!twice.changed);
        assert_eq!(twice.text, once.text);
    }

    #[test]
    fn a_wrong_entry_is_corrected_in_place() {
        let once = ensure_runtime(V2, &entry(true), Unversioned::LikeContainerd).expect("patch");
        let moved = once.text.replace("/opt/spore/bin/", "/usr/local/bin/");
        let fixed =
            ensure_runtime(&moved, &entry(false), Unversioned::LikeContainerd).expect("fix");
        assert!(fixed.changed);
        let doc = parse(&fixed.text).expect("reparse");
        assert!(runtime_matches(&doc, Layout::V2, &entry(false)));
        assert_eq!(
            fixed
                .text
                .matches("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.spore]")
                .count(),
            1
        );
    }

    #[test]
    fn remove_restores_the_original_bytes() {
        for original in [V2, V3] {
            let patched =
                ensure_runtime(original, &entry(true), Unversioned::LikeContainerd).expect("patch");
            let removed = remove_runtime(&patched.text).expect("remove");
            assert!(removed.changed);
            assert_eq!(removed.text, original);
        }
    }

    #[test]
    fn remove_without_runtime_is_a_no_op() {
        let out = remove_runtime(V3).expect("remove");
        assert!(!out.changed);
        assert_eq!(out.text, V3);
    }

    #[test]
    fn an_empty_file_becomes_a_version_2_config() {
        let out = ensure_runtime("", &entry(false), Unversioned::LikeContainerd).expect("patch");
        let doc = parse(&out.text).expect("reparse");
        assert_eq!(
            detect_layout(&doc, Unversioned::LikeContainerd).expect("layout"),
            (Layout::V2, false)
        );
        assert!(runtime_matches(&doc, Layout::V2, &entry(false)));
    }

    #[test]
    fn an_unversioned_non_empty_file_is_version_1() {
        let text = "[plugins.cri.containerd]\n  snapshotter = \"overlayfs\"\n";
        let out = ensure_runtime(text, &entry(false), Unversioned::LikeContainerd).expect("patch");
        assert!(out.text.contains("[plugins.cri.containerd.runtimes.spore]"));
        assert!(!out.text.contains("version"));
    }

    #[test]
    fn a_fragment_uses_the_given_layout_and_gets_no_version() {
        let text = "# {{ template \"base\" . }} is masked here\n";
        let out =
            ensure_runtime(text, &entry(true), Unversioned::Fragment(Layout::V3)).expect("patch");
        assert!(
            out.text.starts_with(text),
            "the comment stays first: {}",
            out.text
        );
        assert!(!out.text.contains("version"));
        assert!(out.text.contains("io.containerd.cri.v1.runtime"));
    }

    #[test]
    fn systemd_cgroup_is_read_from_the_default_runtime() {
        let doc = parse(V2).expect("parse");
        assert_eq!(default_runtime_systemd_cgroup(&doc, Layout::V2), Some(true));
        let doc = parse(V3).expect("parse");
        assert_eq!(
            default_runtime_systemd_cgroup(&doc, Layout::V3),
            Some(false)
        );
        let custom = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"crun\"\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun.options]\nSystemdCgroup = true\n";
        assert_eq!(
            default_runtime_systemd_cgroup(&parse(custom).expect("parse"), Layout::V2),
            Some(true)
        );
        assert_eq!(
            default_runtime_systemd_cgroup(&parse("version = 2").expect("parse"), Layout::V2),
            None
        );
    }

    #[test]
    fn bad_input_gives_precise_errors() {
        let err = ensure_runtime("version = [", &entry(false), Unversioned::LikeContainerd)
            .expect_err("broken TOML");
        assert!(matches!(err, ConfigError::Parse(_)), "{err}");
        let err = ensure_runtime("version = 7", &entry(false), Unversioned::LikeContainerd)
            .expect_err("bad version");
        assert_eq!(
            err.to_string(),
            "`version` must be the integer 1, 2 or 3, found 7"
        );
        let err = ensure_runtime(
            "version = 2\n[plugins]\n\"io.containerd.grpc.v1.cri\" = 5\n",
            &entry(false),
            Unversioned::LikeContainerd,
        )
        .expect_err("not a table");
        assert!(matches!(err, ConfigError::NotATable { .. }), "{err}");
        let err = ensure_runtime(
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\"]\ncontainerd = { snapshotter = \"native\" }\n",
            &entry(false),
            Unversioned::LikeContainerd,
        )
        .expect_err("inline");
        assert!(matches!(err, ConfigError::InlineTable { .. }), "{err}");
    }

    #[test]
    fn defines_cri_plugin_follows_the_layout() {
        assert!(defines_cri_plugin(&parse(V2).expect("parse"), Layout::V2));
        assert!(!defines_cri_plugin(&parse(V2).expect("parse"), Layout::V3));
        assert!(defines_cri_plugin(&parse(V3).expect("parse"), Layout::V3));
    }
}
