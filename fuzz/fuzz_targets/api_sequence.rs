#![no_main]
//! Fuzz target: the input is a sequence of operations on a database (writes, batches,
//! reads, scans, snapshots, seal, compact, checkpoint, reopen, read-only reopen, vector
//! search, clock moves); after each one every read must agree with a `BTreeMap` model.

#[path = "../harness/mod.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::api_sequence(data));
