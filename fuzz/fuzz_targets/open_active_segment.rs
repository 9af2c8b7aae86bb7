#![no_main]
//! Fuzz target: arbitrary bytes as active segment; open, iterate, verify must never panic.

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::open_active_segment(data));
