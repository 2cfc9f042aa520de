//! Recurses without end: the guest's stack overflows.
fn main() {
    println!("recursing");
    println!("{}", depth(std::hint::black_box(0)));
}

#[allow(unconditional_recursion)] // the point of this guest
fn depth(n: u64) -> u64 {
    // The work after the call keeps it from becoming a loop.
    let below = depth(std::hint::black_box(n + 1));
    std::hint::black_box(below.wrapping_add(n))
}
