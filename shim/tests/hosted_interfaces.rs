//! The interfaces Spore says it hosts (`spore_shim::wasm::hosted`) are the ones its linkers
//! really provide: every import of the real guests (Rust components built for wasm32-wasip2) is
//! listed and links; each listed interface that no real guest imports links in a probe
//! component that imports one of its resources; an interface Spore does not host fails to link
//! and is named in the error.

use std::collections::BTreeSet;

use spore_shim::wasm::compile::{self, Guest};
use spore_shim::wasm::hosted::{self, COMMAND_INTERFACES, HTTP_INTERFACES, WASI_VERSION};
use spore_shim::wasm::linker::Linkers;
use wasmtime::Engine;
use wasmtime::component::Component;

fn engine() -> Engine {
    spore_shim::wasm::engine::new_engine().expect("engine")
}

fn component(engine: &Engine, name: &str) -> Component {
    let wasm =
        spore_e2e::tools::guest_wasm("wasm32-wasip2", name).unwrap_or_else(|e| panic!("{e}"));
    Component::new(engine, wasm).expect("compiles")
}

/// Interfaces with a resource a probe can import (`(type (sub resource))` matches any).
const RESOURCES: &[(&str, &str)] = &[
    ("wasi:io/error", "error"),
    ("wasi:io/poll", "pollable"),
    ("wasi:io/streams", "input-stream"),
    ("wasi:filesystem/types", "descriptor"),
    ("wasi:sockets/network", "network"),
    ("wasi:sockets/tcp", "tcp-socket"),
    ("wasi:sockets/udp", "udp-socket"),
    ("wasi:sockets/ip-name-lookup", "resolve-address-stream"),
    ("wasi:cli/terminal-input", "terminal-input"),
    ("wasi:cli/terminal-output", "terminal-output"),
    ("wasi:http/types", "fields"),
];

/// Interfaces with a function of plain types a probe can import.
const FUNCS: &[(&str, &str, &str)] = &[
    (
        "wasi:cli/environment",
        "get-arguments",
        "(func (result (list string)))",
    ),
    ("wasi:clocks/monotonic-clock", "now", "(func (result u64))"),
    (
        "wasi:random/random",
        "get-random-u64",
        "(func (result u64))",
    ),
    (
        "wasi:random/insecure",
        "get-insecure-random-u64",
        "(func (result u64))",
    ),
    (
        "wasi:random/insecure-seed",
        "insecure-seed",
        "(func (result (tuple u64 u64)))",
    ),
];

fn probe(engine: &Engine, interface: &str) -> Option<Component> {
    let import = format!("{interface}@{WASI_VERSION}");
    let export = RESOURCES
        .iter()
        .find(|(i, _)| *i == interface)
        .map(|(_, r)| format!(r#"(export "{r}" (type (sub resource)))"#))
        .or_else(|| {
            FUNCS
                .iter()
                .find(|(i, _, _)| *i == interface)
                .map(|(_, f, ty)| format!(r#"(export "{f}" {ty})"#))
        })?;
    let wat = format!(r#"(component (import "{import}" (instance {export})))"#);
    Some(Component::new(engine, wat::parse_str(wat).expect("wat")).expect("probe"))
}

#[tokio::test]
async fn the_listed_interfaces_are_exactly_what_the_linkers_provide() {
    let engine = engine();
    let linkers = Linkers::new(&engine);
    let (component_linker, http_linker) = (
        linkers.component().expect("command linker"),
        linkers.http().expect("HTTP linker"),
    );
    let mut covered = BTreeSet::new();
    for name in ["hello", "resolve", "listen", "trap", "files", "hello-http"] {
        let component = component(&engine, name);
        let http = name == "hello-http";
        let missing = hosted::missing_imports(&engine, &component, http);
        assert!(
            missing.is_empty(),
            "{name} imports what Spore does not list: {missing:?}"
        );
        let guest = compile::classify(
            &engine,
            std::path::Path::new(name),
            spore_shim::wasm::cache::Compiled::Component(component.clone()),
        )
        .expect("classified");
        let linked = match &guest {
            Guest::HttpProxy(c) => http_linker.instantiate_pre(c).map(|_| ()),
            Guest::Command(c) => component_linker.instantiate_pre(c).map(|_| ()),
            Guest::Preview1(_) => panic!("{name} is a component"),
        };
        linked.unwrap_or_else(|e| panic!("{name} does not link: {e:#}"));
        for (import, _) in component.component_type().imports(&engine) {
            covered.insert(hosted::split_version(import).0.to_string());
        }
    }
    let mut unchecked = Vec::new();
    for interface in COMMAND_INTERFACES.iter().chain(HTTP_INTERFACES) {
        let http = HTTP_INTERFACES.contains(interface);
        if let Some(probe) = probe(&engine, interface) {
            let linked = if http {
                http_linker.instantiate_pre(&probe).map(|_| ())
            } else {
                component_linker.instantiate_pre(&probe).map(|_| ())
            };
            linked.unwrap_or_else(|e| panic!("{interface} is listed but not provided: {e:#}"));
            covered.insert(interface.to_string());
        }
        if !covered.contains(*interface) {
            unchecked.push(*interface);
        }
    }
    assert!(
        unchecked.is_empty(),
        "listed interfaces no test links: {unchecked:?}"
    );
    // wasi:http is for HTTP components only.
    let http_probe = probe(&engine, "wasi:http/types").expect("probe");
    assert!(component_linker.instantiate_pre(&http_probe).is_err());
}

#[test]
fn a_component_importing_what_spore_does_not_host_fails_naming_the_interfaces() {
    let engine = engine();
    let component_linker = Linkers::new(&engine).component().expect("command linker");
    let wat = r#"(component
        (import "wasi:keyvalue/store@0.2.0-draft" (instance (export "bucket" (type (sub resource)))))
        (import "wasi:io/poll@0.3.0" (instance (export "pollable" (type (sub resource)))))
        (import "wasi:io/poll@0.2.3" (instance (export "pollable" (type (sub resource)))))
    )"#;
    let component = Component::new(&engine, wat::parse_str(wat).expect("wat")).expect("component");
    assert!(component_linker.instantiate_pre(&component).is_err());
    assert_eq!(
        hosted::missing_imports(&engine, &component, false),
        ["wasi:keyvalue/store@0.2.0-draft", "wasi:io/poll@0.3.0"]
    );
}
