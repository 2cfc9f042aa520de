//! Spore's developer CLI as a library: the OCI Wasm artifact types (`artifact`), reading a Wasm
//! binary's world (`world`), registry credentials (`auth`), and the `push` and `inspect`
//! commands. The `spore` binary is a thin clap front end over these.

pub mod artifact;
pub mod auth;
pub mod error;
pub mod hosted_worlds;
pub mod inspect;
pub mod push;
pub mod registry;
pub mod report;
pub mod world;

pub use error::Error;
