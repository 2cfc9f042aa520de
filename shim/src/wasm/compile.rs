//! Compiling a guest's Wasm (through the compile cache) and deciding what it is from what it
//! exports: a `wasi:cli` command component, a `wasi:http` proxy component, or a WASI preview1
//! command module. Errors name the guest as the user wrote it and never carry bytes of a file
//! that is not Wasm.

use std::path::{Path, PathBuf};

use spore_format::BinaryKind;
use wasmtime::component::Component;
use wasmtime::{Engine, Module};

use crate::container::ContainerKind;
use crate::wasm::cache::{CacheError, CompileCache, Compiled, Source};

/// What Spore hosts, named in errors about modules it cannot run.
pub const HOSTED_WORLDS: &str = "components exporting wasi:cli/run or wasi:http/incoming-handler, and WASI preview1 modules exporting _start";

#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    #[error(
        "{path} is not a Wasm module: it does not start with the Wasm magic bytes \\0asm ({size} bytes)"
    )]
    NotWasm { path: PathBuf, size: usize },
    #[error(
        "{path} has an unknown Wasm binary version {version:02x?}: neither a core module (01 00 00 00) nor a component (0d 00 01 00)"
    )]
    UnknownVersion { path: PathBuf, version: Vec<u8> },
    #[error("{path} is not a valid Wasm {what}: {reason}")]
    Invalid {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    #[error("{path} cannot run on Spore: it exports [{exports}]; Spore runs {HOSTED_WORLDS}")]
    NothingToRun { path: PathBuf, exports: String },
    #[error(
        "{path} is precompiled native code (an ELF file, such as wasmtime's .cwasm), not Wasm: \
         Spore runs only code it compiles itself from Wasm; publish the .wasm file instead"
    )]
    Precompiled { path: PathBuf },
    #[error("{}", link_message(path, missing, reason))]
    Link {
        path: PathBuf,
        /// The component's imports that Spore does not provide.
        missing: Vec<String>,
        reason: String,
    },
    #[error("{path}: {source}")]
    Cache { path: PathBuf, source: CacheError },
}

fn link_message(path: &Path, missing: &[String], reason: &str) -> String {
    if missing.is_empty() {
        return format!(
            "{} cannot be linked against Spore's host: {reason}",
            path.display()
        );
    }
    format!(
        "{} cannot run on Spore: it imports {}, which Spore does not provide (Spore provides WASI \
         {}: wasi:cli, wasi:clocks, wasi:filesystem, wasi:io, wasi:random, wasi:sockets, and \
         wasi:http to HTTP components)",
        path.display(),
        missing.join(", "),
        crate::wasm::hosted::WASI_VERSION_LINE,
    )
}

/// A compiled, classified guest, ready to instantiate.
#[derive(Clone)]
pub enum Guest {
    /// A component exporting `wasi:cli/run` (and not `wasi:http/incoming-handler`).
    Command(Component),
    /// A component exporting `wasi:http/incoming-handler`, whether or not it also exports
    /// `wasi:cli/run` (`wstd`'s `http_server` macro makes both).
    HttpProxy(Component),
    /// A WASI preview1 core module exporting `_start`.
    Preview1(Module),
}

impl Guest {
    pub fn kind(&self) -> ContainerKind {
        match self {
            Guest::Command(_) => ContainerKind::WasmCommand,
            Guest::HttpProxy(_) => ContainerKind::WasmHttp,
            Guest::Preview1(_) => ContainerKind::Preview1,
        }
    }
}

/// Compiles `bytes` through `cache` and classifies the result. `source` says what the bytes
/// are (an artifact layer: `Source::layer(digest)`, checked against the bytes; a file:
/// `Source::file(bytes)`). Precompiled code is refused, never deserialized. Blocks while
/// compiling.
pub fn compile_cached(
    engine: &Engine,
    cache: &CompileCache,
    path: &Path,
    source: Source,
    bytes: &[u8],
) -> Result<Guest, WasmError> {
    wasm_version(path, bytes)?;
    let key = cache.key(source);
    let compiled = cache
        .get_or_compile(engine, &key, bytes)
        .map_err(|source| cache_error(path, source))?;
    classify(engine, path, compiled)
}

/// The guest compiled from `source` if the cache holds it: the warm path of an artifact, which
/// needs no Wasm bytes. `None` on a miss (then read the bytes and call [`compile_cached`]).
pub fn cached(
    engine: &Engine,
    cache: &CompileCache,
    path: &Path,
    source: Source,
) -> Option<Result<Guest, WasmError>> {
    let compiled = cache.load(engine, &cache.key(source))?;
    Some(classify(engine, path, compiled))
}

/// Classifies code compiled (or loaded) by the cache.
pub fn classify(engine: &Engine, path: &Path, compiled: Compiled) -> Result<Guest, WasmError> {
    match compiled {
        Compiled::Component(component) => classify_component(engine, path, component),
        Compiled::Module(module) => classify_module(path, module),
    }
}

fn cache_error(path: &Path, source: CacheError) -> WasmError {
    let path = path.to_path_buf();
    match source {
        CacheError::Precompiled { .. } => WasmError::Precompiled { path },
        CacheError::Compile { what, reason } => WasmError::Invalid { path, what, reason },
        source => WasmError::Cache { path, source },
    }
}

/// Checks the 8-byte header of `bytes`: the Wasm magic and a known binary version.
fn wasm_version(path: &Path, bytes: &[u8]) -> Result<BinaryKind, WasmError> {
    let path = path.to_path_buf();
    match spore_format::binary_kind(bytes) {
        kind @ (BinaryKind::Component | BinaryKind::CoreModule) => Ok(kind),
        BinaryKind::Elf => Err(WasmError::Precompiled { path }),
        BinaryKind::NotWasm => Err(WasmError::NotWasm {
            path,
            size: bytes.len(),
        }),
        BinaryKind::Truncated => Err(WasmError::Invalid {
            path,
            what: "binary",
            reason: "the file ends inside its 8-byte header".into(),
        }),
        BinaryKind::UnknownWasmVersion(version) => Err(WasmError::UnknownVersion {
            path,
            version: version.to_vec(),
        }),
    }
}

/// Compiles and classifies `bytes` (named `path` in errors).
pub fn compile(engine: &Engine, path: &Path, bytes: &[u8]) -> Result<Guest, WasmError> {
    match wasm_version(path, bytes)? {
        BinaryKind::Component => {
            let component = Component::new(engine, bytes).map_err(|e| WasmError::Invalid {
                path: path.to_path_buf(),
                what: "component",
                reason: format!("{e:#}"),
            })?;
            classify_component(engine, path, component)
        }
        _ => {
            let module = Module::new(engine, bytes).map_err(|e| WasmError::Invalid {
                path: path.to_path_buf(),
                what: "module",
                reason: format!("{e:#}"),
            })?;
            classify_module(path, module)
        }
    }
}

fn classify_module(path: &Path, module: Module) -> Result<Guest, WasmError> {
    let has_start = module
        .exports()
        .any(|e| e.name() == "_start" && e.ty().func().is_some());
    if has_start {
        Ok(Guest::Preview1(module))
    } else {
        Err(WasmError::NothingToRun {
            path: path.to_path_buf(),
            exports: module
                .exports()
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

fn classify_component(
    engine: &Engine,
    path: &Path,
    component: Component,
) -> Result<Guest, WasmError> {
    let exports: Vec<String> = component
        .component_type()
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports_interface = |iface: &str| exports.iter().any(|e| interface_name(e) == iface);
    if exports_interface("wasi:http/incoming-handler") {
        Ok(Guest::HttpProxy(component))
    } else if exports_interface("wasi:cli/run") {
        Ok(Guest::Command(component))
    } else {
        Err(WasmError::NothingToRun {
            path: path.to_path_buf(),
            exports: exports.join(", "),
        })
    }
}

/// `wasi:cli/run@0.2.3` -> `wasi:cli/run`.
fn interface_name(export: &str) -> &str {
    export.split_once('@').map_or(export, |(name, _)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine() -> Engine {
        crate::wasm::engine::new_engine().expect("engine")
    }

    fn expect_err(result: Result<Guest, WasmError>) -> WasmError {
        match result {
            Ok(guest) => panic!("expected an error, got a {:?}", guest.kind()),
            Err(e) => e,
        }
    }

    #[test]
    fn text_file_is_not_wasm_and_its_bytes_stay_out_of_the_error() {
        let err = expect_err(compile(
            &engine(),
            Path::new("/app.wasm"),
            b"root:$6$secret:19000:0:99999:7:::",
        ));
        assert!(matches!(err, WasmError::NotWasm { .. }));
        let text = err.to_string();
        assert!(text.contains("/app.wasm is not a Wasm module"), "{text}");
        assert!(!text.contains("root") && !text.contains("secret"), "{text}");
    }

    #[test]
    fn corrupt_module_names_the_file_and_the_reason() {
        let mut bytes = b"\0asm".to_vec();
        bytes.extend_from_slice(&spore_format::CORE_MODULE_VERSION);
        bytes.extend_from_slice(&[0x01, 0xff, 0xff, 0xff]);
        let err = expect_err(compile(&engine(), Path::new("/bad.wasm"), &bytes));
        let text = err.to_string();
        assert!(
            text.starts_with("/bad.wasm is not a valid Wasm module:"),
            "{text}"
        );
    }

    #[test]
    fn truncated_header_is_invalid() {
        let err = expect_err(compile(&engine(), Path::new("/t.wasm"), b"\0asm\x01"));
        assert!(
            err.to_string().contains("ends inside its 8-byte header"),
            "{err}"
        );
    }

    #[test]
    fn preview1_module_with_start_is_a_command() {
        let wasm =
            wat::parse_str(r#"(module (func (export "_start")) (memory (export "memory") 1))"#)
                .expect("wat");
        let guest = compile(&engine(), Path::new("/m.wasm"), &wasm).expect("compiles");
        assert!(matches!(guest, Guest::Preview1(_)));
    }

    #[test]
    fn module_without_start_names_its_exports() {
        let wasm =
            wat::parse_str(r#"(module (func (export "handle")) (memory (export "memory") 1))"#)
                .expect("wat");
        let err = expect_err(compile(&engine(), Path::new("/lib.wasm"), &wasm));
        let text = err.to_string();
        assert!(text.contains("exports [handle, memory]"), "{text}");
        assert!(
            text.contains("Spore runs components exporting wasi:cli/run"),
            "{text}"
        );
    }

    #[test]
    fn component_exporting_nothing_runnable_is_refused() {
        let wasm = wat::parse_str("(component)").expect("wat");
        let err = expect_err(compile(&engine(), Path::new("/empty.wasm"), &wasm));
        assert!(matches!(err, WasmError::NothingToRun { .. }), "{err}");
    }

    #[test]
    fn component_exporting_http_handler_is_an_http_proxy() {
        let wasm = wat::parse_str(
            r#"(component
                (core module $m (func (export "handle")))
                (core instance $i (instantiate $m))
                (func $f (canon lift (core func $i "handle")))
                (instance $h (export "handle" (func $f)))
                (export "wasi:http/incoming-handler@0.2.3" (instance $h))
                (instance $r (export "run" (func $f)))
                (export "wasi:cli/run@0.2.3" (instance $r)))"#,
        )
        .expect("wat");
        let guest = compile(&engine(), Path::new("/srv.wasm"), &wasm).expect("compiles");
        assert!(matches!(guest, Guest::HttpProxy(_)), "{:?}", guest.kind());
    }

    #[test]
    fn precompiled_code_is_not_wasm() {
        let engine = engine();
        let wasm = wat::parse_str(r#"(module (func (export "_start")))"#).expect("wat");
        let cwasm = engine.precompile_module(&wasm).expect("precompile");
        let err = expect_err(compile(&engine, Path::new("/m.wasm"), &cwasm));
        assert!(matches!(err, WasmError::Precompiled { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("/m.wasm is precompiled native code"),
            "{err}"
        );
    }

    #[test]
    fn interface_names_drop_the_version() {
        assert_eq!(interface_name("wasi:cli/run@0.2.3"), "wasi:cli/run");
        assert_eq!(interface_name("plain"), "plain");
    }
}
