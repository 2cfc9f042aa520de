//! The interfaces Spore's host provides to guests, by world, and what a component imports
//! beyond them. A link error then names the missing interfaces instead of wasmtime's first
//! unresolved name. The lists are checked against the real linkers by
//! `shim/tests/hosted_interfaces.rs`.

use wasmtime::Engine;
use wasmtime::component::Component;

/// The WASI 0.2 interfaces of `wasi:cli/command`, as Spore (wasmtime-wasi 48) links them.
pub const COMMAND_INTERFACES: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/ip-name-lookup",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// What `wasi:http/proxy` components get besides [`COMMAND_INTERFACES`].
pub const HTTP_INTERFACES: &[&str] = &["wasi:http/types", "wasi:http/outgoing-handler"];

/// The WASI release line Spore links (wasmtime links any 0.2.x import to its 0.2 definitions).
pub const WASI_VERSION_LINE: &str = "0.2";
/// The newest 0.2 release Spore's linkers define.
pub const WASI_VERSION: &str = "0.2.12";

/// `wasi:cli/run@0.2.3` -> (`wasi:cli/run`, `Some("0.2.3")`).
pub fn split_version(import: &str) -> (&str, Option<&str>) {
    match import.split_once('@') {
        Some((name, version)) => (name, Some(version)),
        None => (import, None),
    }
}

/// Whether Spore's host provides `import` (an interface name with its version) to a guest that
/// is an HTTP component (`http`) or not.
pub fn provides(import: &str, http: bool) -> bool {
    let (name, version) = split_version(import);
    let line_matches = version
        .is_some_and(|v| v == WASI_VERSION_LINE || v.starts_with(&format!("{WASI_VERSION_LINE}.")));
    let known = COMMAND_INTERFACES.contains(&name) || (http && HTTP_INTERFACES.contains(&name));
    known && line_matches
}

/// The imports of `component` that Spore's host does not provide, in import order.
pub fn missing_imports(engine: &Engine, component: &Component, http: bool) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .filter(|name| !provides(name, http))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_outside_the_0_2_line_are_missing() {
        assert!(provides("wasi:io/poll@0.2.0", false));
        assert!(provides("wasi:io/poll@0.2.12", false));
        assert!(!provides("wasi:io/poll@0.3.0", false));
        assert!(!provides("wasi:http/types@0.2.3", false));
        assert!(provides("wasi:http/types@0.2.3", true));
        assert!(!provides("wasi:io/poll", false));
        assert!(!provides("wasi:keyvalue/store@0.2.0", true));
    }
}
