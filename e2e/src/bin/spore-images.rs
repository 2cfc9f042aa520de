//! Writes Spore's operator and node-installer images as OCI layouts, from static binaries,
//! without Docker (run by `hack/images.sh`, which builds the binaries and pushes the layouts):
//!
//!   spore-images --operator BIN --shim BIN --tag TAG [--arch amd64] --out DIR
//!
//! DIR/spore-operator and DIR/spore-node-installer get one image each, tagged TAG; one line per
//! image says its digest and sizes.

use std::path::PathBuf;
use std::process::ExitCode;

use spore_e2e::image::spore_images;

struct Args {
    operator: PathBuf,
    shim: PathBuf,
    tag: String,
    arch: String,
    out: PathBuf,
}

fn parse(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut operator, mut shim, mut tag, mut out) = (None, None, None, None);
    let mut arch = "amd64".to_owned();
    while let Some(flag) = argv.next() {
        let mut value = || argv.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--operator" => operator = Some(PathBuf::from(value()?)),
            "--shim" => shim = Some(PathBuf::from(value()?)),
            "--tag" => tag = Some(value()?),
            "--arch" => arch = value()?,
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let need = |name: &str| format!("{name} is required");
    Ok(Args {
        operator: operator.ok_or_else(|| need("--operator"))?,
        shim: shim.ok_or_else(|| need("--shim"))?,
        tag: tag.ok_or_else(|| need("--tag"))?,
        arch,
        out: out.ok_or_else(|| need("--out"))?,
    })
}

fn main() -> ExitCode {
    match parse(std::env::args().skip(1)).and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("spore-images: {err}");
            eprintln!(
                "usage: spore-images --operator BIN --shim BIN --tag TAG [--arch amd64] --out DIR"
            );
            ExitCode::FAILURE
        }
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn run(args: &Args) -> Result<(), String> {
    let operator = read(&args.operator)?;
    let shim = read(&args.shim)?;
    let images = [
        (
            "spore-operator",
            spore_images::operator(operator.clone(), &args.tag, &args.arch),
        ),
        (
            "spore-node-installer",
            spore_images::node_installer(operator, shim, &args.tag, &args.arch),
        ),
    ];
    for (name, builder) in images {
        let unpacked = builder.layer_tar().map_err(|e| e.to_string())?.len();
        let image = builder.build().map_err(|e| e.to_string())?;
        let dir = args.out.join(name);
        // A stale layout would keep blobs of an earlier build next to this one.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        image
            .write_layout(&dir, &args.tag)
            .map_err(|e| e.to_string())?;
        let packed: usize = image.layers.iter().map(|l| l.data.len()).sum();
        println!(
            "{name} {} linux/{} compressed={} unpacked={} layout={}",
            image.digest(),
            args.arch,
            packed,
            unpacked,
            dir.display()
        );
    }
    Ok(())
}
