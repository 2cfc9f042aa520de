//! Grows its memory until the host refuses: 8 MiB a step, each page touched.
fn main() {
    println!("allocating");
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        hoard.push(vec![1u8; 8 << 20]);
        println!("holding {} MiB", hoard.len() * 8);
    }
}
