//! `fhec`: the command-line driver (being written).

#[allow(dead_code)]
mod data;

fn main() {}
