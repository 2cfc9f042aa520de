//! Spore's first example: a `wasi:cli/command` component that prints a greeting, its arguments
//! and the `GREETING_NAME` environment variable.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = std::env::var("GREETING_NAME").unwrap_or_else(|_| "world".to_string());
    println!("Hello, {name}, from a Wasm component on Spore!");
    println!("args: {args:?}");
}
