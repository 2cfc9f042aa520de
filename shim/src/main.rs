fn main() -> std::process::ExitCode {
    spore_shim::containerd::bootstrap::main()
}
