//! The device agent (work in progress).

fn main() {}
