#![no_main]
//! Fuzz target: arbitrary bytes as the MANIFEST of a database with a cold tier (as they are,
//! and with the checksum fixed up); open, iterate, get, verify, compact must never panic.

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::open_manifest(data));
