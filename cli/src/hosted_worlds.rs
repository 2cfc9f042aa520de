//! Spore's worlds, the repository's `wit/` folder built into the CLI, and how a component fits
//! them: which world it targets and which of its imports Spore does not provide (an interface
//! Spore does not host, a version line it does not link, or a function or type newer than the
//! release Spore links).

use std::collections::BTreeMap;

use serde::Serialize;
use wit_parser::decoding::{DecodedWasm, decode};
use wit_parser::{InterfaceId, Resolve, WorldId, WorldItem, WorldKey};

use crate::world::split_version;

/// The WIT packages of `wit/`, dependencies first.
const WIT_SOURCES: &[(&str, &str)] = &[
    ("wit/deps/io.wit", include_str!("../../wit/deps/io.wit")),
    (
        "wit/deps/clocks.wit",
        include_str!("../../wit/deps/clocks.wit"),
    ),
    (
        "wit/deps/random.wit",
        include_str!("../../wit/deps/random.wit"),
    ),
    (
        "wit/deps/filesystem.wit",
        include_str!("../../wit/deps/filesystem.wit"),
    ),
    (
        "wit/deps/sockets.wit",
        include_str!("../../wit/deps/sockets.wit"),
    ),
    ("wit/deps/cli.wit", include_str!("../../wit/deps/cli.wit")),
    ("wit/deps/http.wit", include_str!("../../wit/deps/http.wit")),
    ("wit/world.wit", include_str!("../../wit/world.wit")),
];

/// Which of Spore's worlds a component is run in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostedWorld {
    /// `spore:host/command`: components exporting `wasi:cli/run`.
    Command,
    /// `spore:host/http`: components exporting `wasi:http/incoming-handler`.
    Http,
}

impl HostedWorld {
    fn name(self) -> &'static str {
        match self {
            HostedWorld::Command => "command",
            HostedWorld::Http => "http",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WorldsError {
    #[error("Spore's built-in WIT does not resolve ({path}): {reason}")]
    BuiltIn { path: &'static str, reason: String },
    #[error("the component's types cannot be read: {0}")]
    Decode(String),
    #[error("this is a WIT package, not a component")]
    WitPackage,
}

/// How a component fits the Spore world it is run in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorldFit {
    /// The world, e.g. `spore:host/http@0.1.0`.
    pub world: String,
    /// The component's imports that world does not provide: an interface
    /// (`wasi:keyvalue/store@0.2.0`) or a function or type of an interface Spore hosts at an
    /// older release (`wasi:cli/environment@0.2.13#get-foo`).
    pub not_provided: Vec<String>,
}

/// Spore's worlds, resolved from the built-in `wit/`.
pub struct HostedWorlds {
    resolve: Resolve,
    command: WorldId,
    http: WorldId,
}

impl HostedWorlds {
    pub fn load() -> Result<Self, WorldsError> {
        let mut resolve = Resolve::default();
        let mut main = None;
        for (path, source) in WIT_SOURCES {
            let package = resolve
                .push_source(path, source)
                .map_err(|e| WorldsError::BuiltIn {
                    path,
                    reason: format!("{e:#}"),
                })?;
            main = Some(package);
        }
        let packages: Vec<_> = main.into_iter().collect();
        let world = |name: &str| {
            resolve
                .select_world(&packages, Some(name))
                .map_err(|e| WorldsError::BuiltIn {
                    path: "wit/world.wit",
                    reason: format!("{e:#}"),
                })
        };
        let (command, http) = (world("command")?, world("http")?);
        Ok(HostedWorlds {
            resolve,
            command,
            http,
        })
    }

    /// The world's full name, e.g. `spore:host/command@0.1.0`.
    pub fn world_name(&self, world: HostedWorld) -> String {
        let id = self.world_id(world);
        let package = self.resolve.worlds[id]
            .package
            .map(|p| self.resolve.packages[p].name.to_string())
            .unwrap_or_default();
        match package.split_once('@') {
            Some((name, version)) => format!("{name}/{}@{version}", world.name()),
            None => format!("{package}/{}", world.name()),
        }
    }

    fn world_id(&self, world: HostedWorld) -> WorldId {
        match world {
            HostedWorld::Command => self.command,
            HostedWorld::Http => self.http,
        }
    }

    /// The interfaces `world` imports, by unversioned name.
    fn hosted_interfaces(&self, world: HostedWorld) -> BTreeMap<String, (String, InterfaceId)> {
        self.resolve.worlds[self.world_id(world)]
            .imports
            .values()
            .filter_map(|item| match item {
                WorldItem::Interface { id, .. } => {
                    let full = self.resolve.id_of(*id)?;
                    let (name, version) = split_version(&full);
                    Some((name.to_string(), (version.unwrap_or("").to_string(), *id)))
                }
                _ => None,
            })
            .collect()
    }

    /// How `component` (a component binary) fits `world`.
    pub fn fit(&self, component: &[u8], world: HostedWorld) -> Result<WorldFit, WorldsError> {
        let (guest, guest_world) = match decode(component) {
            Ok(DecodedWasm::Component(resolve, world)) => (resolve, world),
            Ok(DecodedWasm::WitPackage(..)) => return Err(WorldsError::WitPackage),
            Err(e) => return Err(WorldsError::Decode(format!("{e:#}"))),
        };
        let hosted = self.hosted_interfaces(world);
        let mut not_provided = Vec::new();
        for (key, item) in &guest.worlds[guest_world].imports {
            match item {
                WorldItem::Interface { id, .. } => {
                    // An interface defined inline in the world has only its key's name.
                    let full = match key {
                        WorldKey::Name(name) => name.clone(),
                        WorldKey::Interface(_) => guest.id_of(*id).unwrap_or_default(),
                    };
                    not_provided.extend(self.missing_from(&guest, *id, &full, &hosted));
                }
                WorldItem::Function(function) => not_provided.push(function.name.clone()),
                WorldItem::Type { .. } => {}
            }
        }
        Ok(WorldFit {
            world: self.world_name(world),
            not_provided,
        })
    }

    /// What of the guest's interface `id` (named `full`) Spore's `hosted` interfaces lack.
    fn missing_from(
        &self,
        guest: &Resolve,
        id: InterfaceId,
        full: &str,
        hosted: &BTreeMap<String, (String, InterfaceId)>,
    ) -> Vec<String> {
        let (name, version) = split_version(full);
        let Some((hosted_version, hosted_id)) = hosted.get(name) else {
            return vec![full.to_string()];
        };
        if !version.is_some_and(|v| same_version_line(v, hosted_version)) {
            return vec![full.to_string()];
        }
        let ours = &self.resolve.interfaces[*hosted_id];
        let theirs = &guest.interfaces[id];
        let functions = theirs
            .functions
            .keys()
            .filter(|f| !ours.functions.contains_key(*f));
        let types = theirs.types.keys().filter(|t| !ours.types.contains_key(*t));
        functions
            .chain(types)
            .map(|item| format!("{full}#{item}"))
            .collect()
    }
}

/// Whether wasmtime links an import at version `wanted` to a definition at `hosted`: the same
/// major version, and for 0.x the same minor (0.2.3 and 0.2.12, not 0.3.0), with no
/// pre-release on either side.
fn same_version_line(wanted: &str, hosted: &str) -> bool {
    let parse = |v: &str| -> Option<(u64, u64)> {
        if v.contains('-') {
            return None;
        }
        let mut parts = v.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        Some((major, minor))
    };
    match (parse(wanted), parse(hosted)) {
        (Some((0, a)), Some((0, b))) => a == b,
        (Some((a, _)), Some((b, _))) => a == b && a != 0,
        _ => wanted == hosted,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wasm(text: &str) -> Vec<u8> {
        wat::parse_str(text).expect("test WAT is valid")
    }

    /// A command importing `imports` (WAT instance imports), exporting `wasi:cli/run@0.2.3`.
    fn command(imports: &str) -> Vec<u8> {
        wasm(&format!(
            r#"(component
                 {imports}
                 (core module $m (func (export "run") (result i32) i32.const 0))
                 (core instance $i (instantiate $m))
                 (func $run (result (result)) (canon lift (core func $i "run")))
                 (instance $r (export "run" (func $run)))
                 (export "wasi:cli/run@0.2.3" (instance $r)))"#
        ))
    }

    const ENVIRONMENT: &str = r#"(import "wasi:cli/environment@0.2.3"
        (instance (export "get-arguments" (func (result (list string))))))"#;

    #[test]
    fn the_built_in_wit_resolves_into_both_worlds() {
        let worlds = HostedWorlds::load().expect("built-in WIT");
        assert_eq!(
            worlds.world_name(HostedWorld::Command),
            "spore:host/command@0.1.0"
        );
        assert_eq!(
            worlds.world_name(HostedWorld::Http),
            "spore:host/http@0.1.0"
        );
        let command = worlds.hosted_interfaces(HostedWorld::Command);
        let http = worlds.hosted_interfaces(HostedWorld::Http);
        assert!(command.contains_key("wasi:cli/environment"));
        assert!(!command.contains_key("wasi:http/types"));
        assert!(http.contains_key("wasi:http/outgoing-handler"));
        assert!(http.contains_key("wasi:filesystem/preopens"));
    }

    #[test]
    fn a_command_of_an_older_wasi_release_fits() {
        let worlds = HostedWorlds::load().expect("built-in WIT");
        let fit = worlds
            .fit(&command(ENVIRONMENT), HostedWorld::Command)
            .expect("fits");
        assert_eq!(fit.world, "spore:host/command@0.1.0");
        assert!(fit.not_provided.is_empty(), "{:?}", fit.not_provided);
    }

    #[test]
    fn imports_spore_does_not_provide_are_named() {
        let worlds = HostedWorlds::load().expect("built-in WIT");
        let imports = r#"
            (import "wasi:keyvalue/store@0.2.0-draft" (instance (export "bucket" (type (sub resource)))))
            (import "wasi:io/poll@0.3.0" (instance (export "pollable" (type (sub resource)))))
            (import "wasi:cli/environment@0.2.13"
              (instance (export "get-arguments" (func (result (list string))))
                        (export "get-argv0" (func (result string)))))
            (import "wasi:http/types@0.2.3" (instance (export "fields" (type (sub resource)))))
        "#;
        let fit = worlds
            .fit(&command(imports), HostedWorld::Command)
            .expect("reads");
        assert_eq!(
            fit.not_provided,
            [
                "wasi:keyvalue/store@0.2.0-draft",
                "wasi:io/poll@0.3.0",
                "wasi:cli/environment@0.2.13#get-argv0",
                "wasi:http/types@0.2.3",
            ]
        );
        // An HTTP component gets wasi:http.
        let fit = worlds
            .fit(&command(imports), HostedWorld::Http)
            .expect("reads");
        assert!(!fit.not_provided.iter().any(|i| i.starts_with("wasi:http")));
    }

    #[test]
    fn bytes_that_are_not_a_component_are_an_error() {
        let worlds = HostedWorlds::load().expect("built-in WIT");
        assert!(matches!(
            worlds.fit(b"\0asm not really", HostedWorld::Command),
            Err(WorldsError::Decode(_))
        ));
    }

    #[test]
    fn version_lines_follow_wasmtimes_semver_rule() {
        assert!(same_version_line("0.2.0", "0.2.12"));
        assert!(same_version_line("0.2.13", "0.2.12"));
        assert!(!same_version_line("0.3.0", "0.2.12"));
        assert!(!same_version_line("0.2.0-rc-2023-11-10", "0.2.12"));
        assert!(same_version_line("1.4.0", "1.0.0"));
        assert!(!same_version_line("2.0.0", "1.0.0"));
    }
}
