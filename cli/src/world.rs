//! What a Wasm binary is and what it imports and exports: the top-level names of a component
//! (its world, e.g. `wasi:cli/run@0.2.3`) or of a core module (e.g. `_start`), and whether Spore
//! can run it.

use std::fmt;

use serde::Serialize;
use wasmparser::{Encoding, Parser, Payload, Validator, WasmFeatures};

use crate::hosted_worlds::{HostedWorld, HostedWorlds, WorldFit};

/// The first four bytes of every WebAssembly binary.
pub const WASM_MAGIC: &[u8; 4] = &spore_format::WASM_MAGIC;
/// The first four bytes of an ELF file, such as wasmtime's precompiled `.cwasm`.
pub const ELF_MAGIC: &[u8; 4] = b"\x7fELF";

/// The export through which a WASI preview1 module runs as a command.
pub const PREVIEW1_START: &str = "_start";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WasmKind {
    Component,
    CoreModule,
}

impl fmt::Display for WasmKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WasmKind::Component => f.write_str("component"),
            WasmKind::CoreModule => f.write_str("core module"),
        }
    }
}

/// The top-level imports and exports of a Wasm binary. For a module, imports are written
/// `module::name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WasmWorld {
    pub kind: WasmKind,
    pub imports: Vec<String>,
    pub exports: Vec<String>,
    /// For a component Spore runs: the Spore world it runs in and what of its imports that
    /// world lacks (`wit/`, built into the CLI).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fit: Option<WorldFit>,
}

/// Why bytes cannot be taken as a Wasm binary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WasmFileError {
    #[error("the file is empty, not WebAssembly")]
    Empty,
    #[error(
        "this is a precompiled native artifact (an ELF file, such as a wasmtime .cwasm), not \
         portable WebAssembly; Spore compiles Wasm itself and never loads precompiled code from \
         an image: use the .wasm it was compiled from"
    )]
    PrecompiledElf,
    #[error("not WebAssembly: it starts with bytes {found} instead of the Wasm magic 00 61 73 6d")]
    NotWasm { found: String },
    #[error("not valid WebAssembly: {0}")]
    Invalid(String),
}

/// How Spore would run a Wasm binary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SporeEntry {
    /// A component exporting `wasi:cli/run`: runs to completion.
    CliRun { export: String },
    /// A component exporting `wasi:http/incoming-handler`: served over HTTP.
    HttpHandler { export: String },
    /// A WASI preview1 core module exporting `_start`: runs as a command.
    Preview1Command,
}

impl fmt::Display for SporeEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SporeEntry::CliRun { export } => {
                write!(
                    f,
                    "a command component (exports {export}), run to completion"
                )
            }
            SporeEntry::HttpHandler { export } => write!(
                f,
                "an HTTP component (exports {export}), served on the container's PORT"
            ),
            SporeEntry::Preview1Command => write!(
                f,
                "a WASI preview1 module (exports {PREVIEW1_START}), run as a command"
            ),
        }
    }
}

/// Reads a Wasm binary: checks its magic, validates it, and lists its top-level imports and
/// exports.
pub fn read_world(bytes: &[u8]) -> Result<WasmWorld, WasmFileError> {
    check_magic(bytes)?;
    Validator::new_with_features(WasmFeatures::all())
        .validate_all(bytes)
        .map_err(|e| WasmFileError::Invalid(e.to_string()))?;
    let mut world = top_level_names(bytes).map_err(|e| WasmFileError::Invalid(e.to_string()))?;
    world.fit = fit_of(bytes, &world);
    Ok(world)
}

/// How a component that Spore runs fits its Spore world; `None` for anything else, or (with a
/// warning) when its types cannot be read.
fn fit_of(bytes: &[u8], world: &WasmWorld) -> Option<WorldFit> {
    let hosted = match world.spore_entry()? {
        SporeEntry::CliRun { .. } => HostedWorld::Command,
        SporeEntry::HttpHandler { .. } => HostedWorld::Http,
        SporeEntry::Preview1Command => return None,
    };
    match HostedWorlds::load().and_then(|worlds| worlds.fit(bytes, hosted)) {
        Ok(fit) => Some(fit),
        Err(e) => {
            tracing::warn!("cannot check the component's imports against Spore's worlds: {e}");
            None
        }
    }
}

fn check_magic(bytes: &[u8]) -> Result<(), WasmFileError> {
    if bytes.is_empty() {
        return Err(WasmFileError::Empty);
    }
    if bytes.starts_with(ELF_MAGIC) {
        return Err(WasmFileError::PrecompiledElf);
    }
    if !bytes.starts_with(WASM_MAGIC) {
        let found = bytes
            .iter()
            .take(4)
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(" ");
        return Err(WasmFileError::NotWasm { found });
    }
    Ok(())
}

/// Walks the binary's sections, skipping nested modules and components, whose imports and
/// exports are internal.
fn top_level_names(bytes: &[u8]) -> wasmparser::Result<WasmWorld> {
    let mut kind = None;
    let mut imports = Vec::new();
    let mut exports = Vec::new();
    // 0 is the outermost binary; nested modules and components raise it until their `End`.
    let mut depth: usize = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload? {
            Payload::Version { encoding, .. } if depth == 0 && kind.is_none() => {
                kind = Some(match encoding {
                    Encoding::Component => WasmKind::Component,
                    Encoding::Module => WasmKind::CoreModule,
                });
            }
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => {
                if depth == 0 {
                    break;
                }
                depth -= 1;
            }
            Payload::ComponentImportSection(reader) if depth == 0 => {
                for import in reader {
                    imports.push(import?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export?.name.name.to_string());
                }
            }
            Payload::ImportSection(reader) if depth == 0 => {
                for import in reader.into_imports() {
                    let import = import?;
                    imports.push(format!("{}::{}", import.module, import.name));
                }
            }
            Payload::ExportSection(reader) if depth == 0 => {
                for export in reader {
                    exports.push(export?.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(WasmWorld {
        kind: kind.unwrap_or(WasmKind::CoreModule),
        imports,
        exports,
        fit: None,
    })
}

/// An interface name such as `wasi:cli/run@0.2.3`, split into `wasi:cli/run` and `0.2.3`.
pub(crate) fn split_version(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((path, version)) => (path, Some(version)),
        None => (name, None),
    }
}

/// True when `name` is the WASI 0.2 interface `path` (any 0.2.x version).
fn is_wasi_p2_interface(name: &str, path: &str) -> bool {
    let (found, version) = split_version(name);
    found == path && version.is_some_and(|v| v.starts_with("0.2."))
}

impl WasmWorld {
    /// How Spore runs this binary, or `None` when it exports nothing Spore hosts.
    pub fn spore_entry(&self) -> Option<SporeEntry> {
        match self.kind {
            WasmKind::CoreModule => self
                .exports
                .iter()
                .any(|e| e == PREVIEW1_START)
                .then_some(SporeEntry::Preview1Command),
            WasmKind::Component => {
                let find = |path: &str| {
                    self.exports
                        .iter()
                        .find(|e| is_wasi_p2_interface(e, path))
                        .cloned()
                };
                if let Some(export) = find("wasi:http/incoming-handler") {
                    Some(SporeEntry::HttpHandler { export })
                } else {
                    find("wasi:cli/run").map(|export| SporeEntry::CliRun { export })
                }
            }
        }
    }

    /// The WASI world this component targets, from what it exports: `wasi:cli/command@V` for
    /// `wasi:cli/run@V`, `wasi:http/proxy@V` for `wasi:http/incoming-handler@V`.
    pub fn target_world(&self) -> Option<String> {
        if self.kind != WasmKind::Component {
            return None;
        }
        self.exports.iter().find_map(|export| {
            let (path, version) = split_version(export);
            let world = match path {
                "wasi:http/incoming-handler" => "wasi:http/proxy",
                "wasi:cli/run" => "wasi:cli/command",
                _ => return None,
            };
            Some(match version {
                Some(v) => format!("{world}@{v}"),
                None => world.to_string(),
            })
        })
    }

    /// The imports Spore's world for this component does not provide (empty when it is not a
    /// component Spore runs).
    pub fn not_provided(&self) -> &[String] {
        self.fit.as_ref().map_or(&[], |fit| &fit.not_provided)
    }

    /// A sentence for components that export what Spore hosts but import what it does not.
    pub fn why_imports_fail(&self) -> Option<String> {
        let fit = self
            .fit
            .as_ref()
            .filter(|fit| !fit.not_provided.is_empty())?;
        Some(format!(
            "it runs in {} but imports what Spore does not provide: {} (the container would \
             fail at create)",
            fit.world,
            fit.not_provided.join(", ")
        ))
    }

    /// A sentence for binaries Spore cannot run: what they export and what Spore hosts.
    pub fn why_not_runnable(&self) -> String {
        let exports = if self.exports.is_empty() {
            "nothing".to_string()
        } else {
            self.exports.join(", ")
        };
        format!(
            "this {} exports {exports}; Spore runs components exporting wasi:cli/run@0.2.x or \
             wasi:http/incoming-handler@0.2.x and preview1 modules exporting {PREVIEW1_START}",
            self.kind
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(text: &str) -> Vec<u8> {
        wat::parse_str(text).expect("test WAT is valid")
    }

    const CLI_COMPONENT: &str = r#"
        (component
          (import "wasi:cli/stdout@0.2.3" (instance))
          (import "wasi:cli/environment@0.2.3" (instance))
          (component $inner
            (import "inner-only" (instance))
            (export "inner-export" (instance 0)))
          (core module $m (func (export "run") (result i32) i32.const 0))
          (core instance $i (instantiate $m))
          (func $run (result (result)) (canon lift (core func $i "run")))
          (instance $inst (export "run" (func $run)))
          (export "wasi:cli/run@0.2.3" (instance $inst)))
    "#;

    #[test]
    fn a_component_lists_its_top_level_imports_and_exports_only() {
        let world = read_world(&wasm(CLI_COMPONENT)).expect("reads");
        assert_eq!(world.kind, WasmKind::Component);
        assert_eq!(
            world.imports,
            vec!["wasi:cli/stdout@0.2.3", "wasi:cli/environment@0.2.3"]
        );
        assert_eq!(world.exports, vec!["wasi:cli/run@0.2.3"]);
        assert_eq!(
            world.spore_entry(),
            Some(SporeEntry::CliRun {
                export: "wasi:cli/run@0.2.3".into()
            })
        );
        assert_eq!(
            world.target_world().as_deref(),
            Some("wasi:cli/command@0.2.3")
        );
    }

    #[test]
    fn an_http_component_targets_the_proxy_world() {
        let world = read_world(&wasm(
            r#"(component
                 (core module $m (func (export "handle")))
                 (core instance $i (instantiate $m))
                 (func $handle (canon lift (core func $i "handle")))
                 (instance $inst (export "handle" (func $handle)))
                 (export "wasi:http/incoming-handler@0.2.0" (instance $inst)))"#,
        ))
        .expect("reads");
        assert!(world.imports.is_empty());
        assert_eq!(
            world.spore_entry(),
            Some(SporeEntry::HttpHandler {
                export: "wasi:http/incoming-handler@0.2.0".into()
            })
        );
        assert_eq!(
            world.target_world().as_deref(),
            Some("wasi:http/proxy@0.2.0")
        );
    }

    #[test]
    fn a_library_component_is_not_runnable_and_says_why() {
        let world = read_world(&wasm(
            r#"(component
                 (core module $m (func (export "f")))
                 (core instance $i (instantiate $m))
                 (func $f (canon lift (core func $i "f")))
                 (instance $inst (export "greet" (func $f)))
                 (export "example:lib/greeter@1.0.0" (instance $inst)))"#,
        ))
        .expect("reads");
        assert_eq!(world.spore_entry(), None);
        assert_eq!(world.target_world(), None);
        let why = world.why_not_runnable();
        assert!(why.contains("example:lib/greeter@1.0.0"), "{why}");
        assert!(why.contains("wasi:cli/run"), "{why}");
    }

    #[test]
    fn a_wasi_p3_run_export_is_not_taken_for_p2() {
        let world = WasmWorld {
            kind: WasmKind::Component,
            imports: vec![],
            exports: vec!["wasi:cli/run@0.3.0".into()],
            fit: None,
        };
        assert_eq!(world.spore_entry(), None);
    }

    #[test]
    fn a_preview1_module_with_start_runs_as_a_command() {
        let world = read_world(&wasm(
            r#"(module
                 (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
                 (memory (export "memory") 1)
                 (func (export "_start") i32.const 3 call 0))"#,
        ))
        .expect("reads");
        assert_eq!(world.kind, WasmKind::CoreModule);
        assert_eq!(world.imports, vec!["wasi_snapshot_preview1::proc_exit"]);
        assert_eq!(world.exports, vec!["memory", "_start"]);
        assert_eq!(world.spore_entry(), Some(SporeEntry::Preview1Command));
        assert_eq!(world.target_world(), None);
    }

    #[test]
    fn a_module_without_start_is_not_runnable() {
        let world = read_world(&wasm(r#"(module (func (export "main")))"#)).expect("reads");
        assert_eq!(world.spore_entry(), None);
    }

    #[test]
    fn an_elf_blob_is_refused_as_precompiled() {
        let mut blob = ELF_MAGIC.to_vec();
        blob.extend_from_slice(&[2, 1, 1, 0, 0, 0, 0, 0]);
        assert_eq!(read_world(&blob), Err(WasmFileError::PrecompiledElf));
    }

    #[test]
    fn text_is_not_wasm_and_the_error_shows_its_first_bytes() {
        assert_eq!(
            read_world(b"hello world"),
            Err(WasmFileError::NotWasm {
                found: "68 65 6c 6c".into()
            })
        );
        assert_eq!(read_world(b""), Err(WasmFileError::Empty));
    }

    #[test]
    fn a_truncated_binary_is_invalid() {
        let mut bytes = wasm(CLI_COMPONENT);
        bytes.truncate(bytes.len() / 2);
        assert!(matches!(read_world(&bytes), Err(WasmFileError::Invalid(_))));
    }
}
