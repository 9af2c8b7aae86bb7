#![no_main]
//! Fuzz target: the input is a directory (files named as strata names its own, or not, with
//! arbitrary contents, optionally over a real database's files); open, read, verify, write,
//! reopen and repair must never panic, and a verified or repaired database must read
//! consistently.

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::open_directory(data));
