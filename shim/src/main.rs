fn main() -> std::process::ExitCode {
    // The same binary is the pod's sandbox init (see `host::pod_init`), told apart by argv[0].
    if spore_shim::host::pod_init::is_pod_init() {
        spore_shim::host::pod_init::run();
    }
    spore_shim::containerd::bootstrap::main()
}
