//! Lists what it can see: writes a file under /data, reads it back, and tries /etc/shadow of the
//! host, which must not be there.
fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "/data/out.txt".into());
    match std::fs::write(&path, b"written by wasm") {
        Ok(()) => println!("wrote {path}"),
        Err(e) => println!("cannot write {path}: {e}"),
    }
    match std::fs::read_to_string(&path) {
        Ok(s) => println!("read back: {s}"),
        Err(e) => println!("cannot read {path}: {e}"),
    }
    match std::fs::read_to_string("/etc/shadow") {
        Ok(_) => println!("host /etc/shadow: VISIBLE"),
        Err(_) => println!("host /etc/shadow: not visible"),
    }
}
