//! Placeholder: the isa-tests emitter (being written).
fn main() {}
