//! Prints a line, then sleeps in the host (not in Wasm code) for a long time.
fn main() {
    println!("sleeping");
    std::thread::sleep(std::time::Duration::from_secs(3600));
}
