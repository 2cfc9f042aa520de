//! The repository's `wit/` folder is what the shim really hosts:
//! - `wit/deps/` is, byte for byte, the WASI WIT that the shim's wasmtime-wasi and
//!   wasmtime-wasi-http crates generate their host functions from (`hack/sync-wit.sh` copies it);
//! - a component made from each world of `wit/world.wit` (every import, every export) links
//!   against the shim's real linker for that kind of guest, and the shim classifies it as that
//!   kind;
//! - the interfaces each world imports are the lists the shim's link errors are written from
//!   (`spore_shim::wasm::hosted`), whose match with the linkers `hosted_interfaces.rs` checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use spore_shim::wasm::cache::Compiled;
use spore_shim::wasm::compile::{self, Guest};
use spore_shim::wasm::hosted::{self, COMMAND_INTERFACES, HTTP_INTERFACES, WASI_VERSION};
use spore_shim::wasm::linker::Linkers;
use wasmtime::component::Component;
use wit_component::{ComponentEncoder, StringEncoding, dummy_module, embed_component_metadata};
use wit_parser::{ManglingAndAbi, Resolve, WorldId, WorldItem};

fn wit_dir() -> PathBuf {
    spore_e2e::tools::repo_root().join("wit")
}

fn spore_worlds() -> (Resolve, WorldId, WorldId) {
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(wit_dir())
        .unwrap_or_else(|e| panic!("wit/ does not parse: {e:#}"));
    let world = |name: &str| {
        resolve
            .select_world(&[package], Some(name))
            .unwrap_or_else(|e| panic!("wit/ has no world {name}: {e:#}"))
    };
    let (command, http) = (world("command"), world("http"));
    (resolve, command, http)
}

/// A component with every import and export of `world`, whose functions trap if called.
fn component_of(resolve: &Resolve, world: WorldId) -> Vec<u8> {
    let mut module = dummy_module(resolve, world, ManglingAndAbi::Standard32);
    embed_component_metadata(&mut module, resolve, world, StringEncoding::UTF8)
        .expect("embed the world");
    ComponentEncoder::default()
        .module(&module)
        .expect("the dummy module")
        .validate(true)
        .encode()
        .expect("encode the component")
}

/// The interfaces `world` imports, as `name@version`.
fn imported_interfaces(resolve: &Resolve, world: WorldId) -> BTreeSet<String> {
    resolve.worlds[world]
        .imports
        .values()
        .filter_map(|item| match item {
            WorldItem::Interface { id, .. } => resolve.id_of(*id),
            _ => None,
        })
        .collect()
}

/// The version of `name` in Cargo.lock (one version expected).
fn locked_version(name: &str) -> String {
    let lock = std::fs::read_to_string(spore_e2e::tools::repo_root().join("Cargo.lock"))
        .expect("Cargo.lock");
    let lock: toml::Table = toml::from_str(&lock).expect("Cargo.lock is TOML");
    let versions: Vec<String> = lock["package"]
        .as_array()
        .expect("packages")
        .iter()
        .filter(|p| p["name"].as_str() == Some(name))
        .filter_map(|p| p["version"].as_str().map(str::to_string))
        .collect();
    assert_eq!(versions.len(), 1, "Cargo.lock names {name}: {versions:?}");
    versions[0].clone()
}

/// The source folder of crate `name` in cargo's registry.
fn crate_source(name: &str) -> PathBuf {
    let version = locked_version(name);
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").expect("HOME")).join(".cargo"));
    let registry = home.join("registry/src");
    std::fs::read_dir(&registry)
        .unwrap_or_else(|e| panic!("{}: {e}", registry.display()))
        .filter_map(Result::ok)
        .map(|index| index.path().join(format!("{name}-{version}")))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| panic!("{name} {version} is not in {}", registry.display()))
}

fn wit_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "wit"))
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).expect("read"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn wit_deps_is_the_wasi_the_shim_is_built_with() {
    let mut linked = wit_files(&crate_source("wasmtime-wasi").join("src/p2/wit/deps"));
    linked.extend(
        wit_files(&crate_source("wasmtime-wasi-http").join("wit/deps"))
            .into_iter()
            .filter(|(name, _)| name == "http.wit"),
    );
    linked.sort();
    let ours = wit_files(&wit_dir().join("deps"));
    let names = |files: &[(String, String)]| -> Vec<String> {
        files.iter().map(|(n, _)| n.clone()).collect()
    };
    assert_eq!(
        names(&ours),
        names(&linked),
        "wit/deps/ has other packages than the shim links: run hack/sync-wit.sh"
    );
    for ((name, ours), (_, linked)) in ours.iter().zip(&linked) {
        assert!(
            ours == linked,
            "wit/deps/{name} differs from the WIT the shim links: run hack/sync-wit.sh"
        );
    }
}

#[test]
fn each_world_links_against_the_shims_linker_for_its_kind() {
    let (resolve, command, http) = spore_worlds();
    let engine = spore_shim::wasm::engine::new_engine().expect("engine");
    let linkers = Linkers::new(&engine);
    let (component_linker, http_linker) = (
        linkers.component().expect("command linker"),
        linkers.http().expect("HTTP linker"),
    );
    for (name, world) in [("command", command), ("http", http)] {
        let bytes = component_of(&resolve, world);
        let component = Component::new(&engine, &bytes).expect("compiles");
        let missing = hosted::missing_imports(&engine, &component, name == "http");
        assert!(missing.is_empty(), "world {name}: not hosted: {missing:?}");
        let guest = compile::classify(
            &engine,
            Path::new(name),
            Compiled::Component(component.clone()),
        )
        .unwrap_or_else(|e| panic!("world {name} is not a guest the shim runs: {e}"));
        let linked = match (name, &guest) {
            ("command", Guest::Command(c)) => component_linker.instantiate_pre(c).map(|_| ()),
            ("http", Guest::HttpProxy(c)) => http_linker.instantiate_pre(c).map(|_| ()),
            _ => panic!("world {name} was classified as another kind of guest"),
        };
        linked.unwrap_or_else(|e| panic!("world {name} does not link: {e:#}"));
    }
    // A command gets no wasi:http: the http world does not link as a command.
    let http_as_command = Component::new(&engine, component_of(&resolve, http)).expect("compiles");
    assert!(component_linker.instantiate_pre(&http_as_command).is_err());
}

#[test]
fn the_worlds_import_exactly_the_interfaces_the_shim_lists() {
    let (resolve, command, http) = spore_worlds();
    let versioned = |names: &[&str]| -> BTreeSet<String> {
        names
            .iter()
            .map(|n| format!("{n}@{WASI_VERSION}"))
            .collect()
    };
    let command_imports = imported_interfaces(&resolve, command);
    assert_eq!(command_imports, versioned(COMMAND_INTERFACES));
    let http_imports = imported_interfaces(&resolve, http);
    let http_only: BTreeSet<String> = http_imports.difference(&command_imports).cloned().collect();
    assert_eq!(http_only, versioned(HTTP_INTERFACES));
    assert!(http_imports.is_superset(&command_imports));
}
