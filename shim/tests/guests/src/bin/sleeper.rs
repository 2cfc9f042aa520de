//! Prints a line, then sleeps in the host (not in Wasm code): for the number of seconds of its
//! first argument, else for an hour; then exits 0.
fn main() {
    println!("sleeping");
    let seconds = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3600);
    std::thread::sleep(std::time::Duration::from_secs(seconds));
}
