#![no_main]
//! Fuzz target: arbitrary bytes as the cold segment a MANIFEST lists (with the MANIFEST's
//! entry as it was, made to match, and with the input's checksums fixed up); open, iterate,
//! get, verify, compact must never panic.

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::open_cold_segment(data));
