//! Fuzzes the jt808 session; see `common.rs` for what is checked.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| common::drive(ewall_protocol::Protocol::Jt808, data));
