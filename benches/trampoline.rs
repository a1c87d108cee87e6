//! Placeholder: criterion benches of trampoline overhead (being written).
fn main() {}
