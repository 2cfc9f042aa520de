use containerd_shim::Config;
use spore_shim::shim::SporeShim;

#[tokio::main]
async fn main() {
    let config = Config {
        // Logging goes through `tracing` to containerd's shim log; see `logging.rs`.
        no_setup_logger: true,
        ..Config::default()
    };
    containerd_shim::asynchronous::run::<SporeShim>(spore_shim::RUNTIME_ID, Some(config)).await;
}
