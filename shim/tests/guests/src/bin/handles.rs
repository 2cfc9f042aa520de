//! Opens the file of its first argument again and again, keeping every handle, until the host
//! refuses; prints how many it got and what the host said.
fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "/handles.wasm".into());
    let mut kept = Vec::new();
    loop {
        match std::fs::File::open(&path) {
            Ok(file) => kept.push(file),
            Err(err) => {
                println!("opened {} handles, then: {err}", kept.len());
                return;
            }
        }
    }
}
