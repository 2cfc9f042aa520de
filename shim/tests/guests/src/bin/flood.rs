//! Writes to stdout as fast as it can, forever: 64 KiB lines of one letter.
use std::io::Write;

fn main() {
    let mut line = vec![b'x'; 64 * 1024];
    line.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    loop {
        if stdout.write_all(&line).is_err() {
            return;
        }
    }
}
