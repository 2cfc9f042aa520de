use containerd_shim::Config;
use spore_shim::shim::SporeShim;

fn main() {
    // The serving process (started with -socket) joins its pod's network namespace before any
    // thread exists, so every thread, and every socket a guest opens, is in the pod's.
    if std::env::args().any(|a| a == "-socket")
        && let Err(err) = spore_shim::pod::enter_netns(std::path::Path::new("."))
    {
        eprintln!("spore shim: {err}");
        std::process::exit(1);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("spore shim: starting the async runtime: {err}");
            std::process::exit(1);
        }
    };
    // containerd 1.7 speaks the task API v2, which the containerd-shim crate does not serve.
    if spore_shim::legacy::wanted(std::env::var("MAX_SHIM_VERSION").ok().as_deref()) {
        if let Err(err) = runtime.block_on(spore_shim::legacy::run()) {
            eprintln!("spore shim: {err}");
            std::process::exit(1);
        }
        return;
    }
    let config = Config {
        // Logging goes through `tracing` to containerd's shim log; see `logging.rs`.
        no_setup_logger: true,
        ..Config::default()
    };
    runtime.block_on(containerd_shim::asynchronous::run::<SporeShim>(
        spore_shim::RUNTIME_ID,
        Some(config),
    ));
}
