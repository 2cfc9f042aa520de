//! `spore`: publish Wasm components to OCI registries and inspect images.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use spore_cli::inspect::{self, InspectRequest};
use spore_cli::push::{self, PushRequest};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    name = "spore",
    version,
    about = "Spore developer CLI: push and inspect Wasm images"
)]
struct Cli {
    /// More log output on stderr (repeat for more); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Publish a Wasm component (or a WASI preview1 module) as an OCI Wasm artifact.
    Push {
        /// The .wasm file.
        file: PathBuf,
        /// Where to push: REGISTRY/REPOSITORY:TAG.
        reference: String,
        /// Talk plain HTTP to the registry.
        #[arg(long)]
        insecure: bool,
        /// A manifest annotation KEY=VALUE (repeatable).
        #[arg(long = "annotation", value_name = "KEY=VALUE")]
        annotations: Vec<String>,
        /// The config's `author`.
        #[arg(long)]
        author: Option<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show what an image, an artifact or a local .wasm file holds, which of Spore's worlds it
    /// runs in, what it imports that Spore does not provide, and whether Spore can run it.
    Inspect {
        /// REGISTRY/REPOSITORY:TAG, REGISTRY/REPOSITORY@DIGEST, or the path of a local file.
        reference: String,
        /// Talk plain HTTP to the registry.
        #[arg(long)]
        insecure: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,spore_cli=debug",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Push {
            file,
            reference,
            insecure,
            annotations,
            author,
            json,
        } => {
            let outcome = push::push(PushRequest {
                file,
                reference,
                insecure,
                annotations,
                author,
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&outcome)?);
            } else {
                println!("{}", outcome.pinned_reference());
                match (&outcome.entry, outcome.world.why_imports_fail()) {
                    (Some(_), Some(why)) => {
                        eprintln!("warning: pushed, but Spore cannot run it: {why}")
                    }
                    (Some(entry), None) => {
                        eprintln!("pushed {}: Spore runs it as {entry}", outcome.world.kind)
                    }
                    (None, _) => eprintln!(
                        "warning: pushed, but Spore cannot run it: {}",
                        outcome.world.why_not_runnable()
                    ),
                }
            }
        }
        Command::Inspect {
            reference,
            insecure: _,
            json,
        } if std::path::Path::new(&reference).is_file() => {
            let report = inspect::inspect_file(std::path::Path::new(&reference))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
        Command::Inspect {
            reference,
            insecure,
            json,
        } => {
            let report = inspect::inspect(InspectRequest {
                reference,
                insecure,
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
