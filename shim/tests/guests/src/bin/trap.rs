//! Traps: a Rust panic becomes a Wasm `unreachable`.
fn main() {
    println!("about to trap");
    let v: Vec<u32> = std::env::args().map(|a| a.len() as u32).collect();
    // Indexing past the end panics, which aborts with a trap.
    println!("{}", v[v.len() + 7]);
}
