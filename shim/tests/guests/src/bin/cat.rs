//! Copies stdin to stdout, prefixing each line, until stdin ends.
use std::io::BufRead;
fn main() {
    for line in std::io::stdin().lock().lines() {
        match line {
            Ok(line) => println!("cat: {line}"),
            Err(e) => {
                eprintln!("stdin: {e}");
                std::process::exit(2);
            }
        }
    }
    println!("cat: end of input");
}
