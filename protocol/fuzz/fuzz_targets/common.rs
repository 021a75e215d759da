//! The checks every stream-protocol fuzz target makes: feed the input whole, then split at a
//! point taken from the input; a session must never panic, must consume bytes for every item it
//! yields, and must never hold more than its maximum frame size in its buffer.

use bytes::BytesMut;
use ewall_protocol::{Protocol, SessionOptions};

/// Upper bound a session may leave buffered: the largest maximum frame size of any protocol.
const MAX_BUFFERED: usize = 64 * 1024;

pub fn drive(protocol: Protocol, data: &[u8]) {
    let split = data.first().map_or(0, |b| *b as usize).min(data.len());
    for chunks in [vec![data], vec![&data[..split], &data[split..]]] {
        for strict in [false, true] {
            let options = SessionOptions {
                strict_checksum: strict,
                ..SessionOptions::default()
            };
            let mut session = protocol.session(&options).expect("stream protocol");
            let mut buf = BytesMut::new();
            for chunk in &chunks {
                buf.extend_from_slice(chunk);
                loop {
                    let before = buf.len();
                    match session.decode(&mut buf) {
                        Ok(Some(_)) => assert!(buf.len() < before, "item without progress"),
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                assert!(buf.len() <= MAX_BUFFERED, "buffered {} bytes", buf.len());
            }
        }
    }
}
