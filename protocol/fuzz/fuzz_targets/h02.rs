//! Fuzzes the h02 session; see `common.rs` for what is checked.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::drive(ewall_protocol::Protocol::H02, data));
