//! What the protocol modules' unit tests share: the golden frames in `fixtures/frames/` and
//! feeding a session a byte stream in reads of any size.

use std::path::PathBuf;

use bytes::BytesMut;

use crate::{Decoded, FrameError, Item, Session};

/// The golden frame `fixtures/frames/<protocol>/<name>.hex` as bytes: `#` lines are comments,
/// whitespace is ignored.
pub(crate) fn fixture(protocol: &str, name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/frames")
        .join(protocol)
        .join(format!("{name}.hex"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let hex: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}

/// Feeds `chunks` to `session` in order, collecting every item it yields and, last, the frame
/// error that ends the stream if one does. Every item must consume bytes.
pub(crate) fn run<S: Session + ?Sized>(
    session: &mut S,
    chunks: &[&[u8]],
) -> Vec<Result<Item, FrameError>> {
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match session.decode(&mut buf) {
                Ok(Some(item)) => {
                    assert!(buf.len() < before, "an item must consume bytes");
                    items.push(Ok(item));
                }
                Ok(None) => break,
                Err(e) => {
                    items.push(Err(e));
                    return items;
                }
            }
        }
    }
    items
}

/// Every item `session` yields for `bytes` fed in reads of `chunk` bytes (`usize::MAX`: one
/// read). Panics on a frame error.
pub(crate) fn items<S: Session + ?Sized>(session: &mut S, bytes: &[u8], chunk: usize) -> Vec<Item> {
    let chunks: Vec<&[u8]> = bytes.chunks(chunk.max(1)).collect();
    run(session, &chunks)
        .into_iter()
        .map(|item| item.unwrap_or_else(|e| panic!("frame error: {e}")))
        .collect()
}

/// The items `bytes` gives in one read, having checked that reads of each size in `chunks` give
/// the same. Each pass uses a new session from `new`.
pub(crate) fn same_items_in_reads<S: Session>(
    mut new: impl FnMut() -> S,
    bytes: &[u8],
    chunks: &[usize],
) -> Vec<Item> {
    let whole = items(&mut new(), bytes, usize::MAX);
    for &chunk in chunks {
        assert_eq!(
            items(&mut new(), bytes, chunk),
            whole,
            "reads of {chunk} bytes"
        );
    }
    whole
}

/// Feeds `frame` in two reads split at `at`: the first asks for more and keeps its bytes in the
/// buffer, the second gives the frame and leaves the buffer empty.
pub(crate) fn assert_partial_frame_waits<S: Session + ?Sized>(
    session: &mut S,
    frame: &[u8],
    at: usize,
) {
    let mut buf = BytesMut::from(&frame[..at]);
    assert_eq!(session.decode(&mut buf), Ok(None));
    assert_eq!(buf.len(), at, "a partial frame stays in the buffer");
    buf.extend_from_slice(&frame[at..]);
    assert!(matches!(session.decode(&mut buf), Ok(Some(Item::Frame(_)))));
    assert!(buf.is_empty());
    assert_eq!(session.decode(&mut buf), Ok(None));
}

/// The one decoded frame of `items`; panics on anything else.
pub(crate) fn one_frame(items: Vec<Item>) -> Decoded {
    match <[Item; 1]>::try_from(items) {
        Ok([Item::Frame(decoded)]) => decoded,
        other => panic!("expected one frame, got {other:?}"),
    }
}
