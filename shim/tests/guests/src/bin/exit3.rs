//! Exits with code 3 (exact as a preview1 module; WASI 0.2 carries only failure).
fn main() {
    println!("exiting with 3");
    std::process::exit(3);
}
