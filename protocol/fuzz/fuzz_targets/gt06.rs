//! Fuzzes the gt06 session; see `common.rs` for what is checked. On top of that, the GT06 framer
//! must yield the same items whether the input arrives in one read or split in two.
#![no_main]

mod common;

use bytes::BytesMut;
use ewall_protocol::{FrameError, Item, Protocol, SessionOptions};
use libfuzzer_sys::fuzz_target;

/// Items from feeding `chunks` in order, with the server time in time-request replies blanked
/// (the two runs may straddle a clock tick).
fn items(chunks: &[&[u8]]) -> Vec<Result<Item, FrameError>> {
    let mut session = Protocol::Gt06
        .session(&SessionOptions::default())
        .expect("stream protocol");
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match session.decode(&mut buf) {
                Ok(Some(mut item)) => {
                    if let Item::Frame(decoded) = &mut item {
                        if let Some(reply) = decoded.reply.as_mut() {
                            if reply.len() == 16 && reply[3] == 0x8a {
                                reply[4..10].fill(0);
                                reply[12..14].fill(0);
                            }
                        }
                    }
                    out.push(Ok(item));
                }
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e));
                    return out;
                }
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    common::drive(Protocol::Gt06, data);
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    let (head, tail) = data.split_at(split);
    assert_eq!(items(&[data]), items(&[head, tail]), "split at {split}");
});
