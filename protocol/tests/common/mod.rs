//! Loads the captured-frame vectors in `fixtures/vectors/traccar/` for the per-protocol vector
//! tests. Each record is one frame plus what the reference server asserts about it; see the
//! README next to the files for the format.

#![allow(dead_code)]

use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

/// One line of a `<protocol>.jsonl` vector file.
#[derive(Debug, Clone, Deserialize)]
pub struct Vector {
    pub protocol: String,
    pub source: String,
    pub line: u32,
    pub encoding: String,
    pub frame: String,
    pub check: String,
    pub expected: Value,
    #[serde(default)]
    pub test: Option<String>,
    #[serde(default)]
    pub decoder_state: Option<Value>,
    #[serde(default)]
    pub http: Option<Value>,
    #[serde(default)]
    pub parts: Option<Value>,
}

impl Vector {
    /// The frame's raw bytes (hex decoded, or the text's bytes).
    pub fn bytes(&self) -> Vec<u8> {
        match self.encoding.as_str() {
            "hex" => hex_to_bytes(&self.frame),
            _ => self.frame.as_bytes().to_vec(),
        }
    }

    /// Where the record came from, for assertion messages.
    pub fn origin(&self) -> String {
        format!("{}:{} ({})", self.source, self.line, self.check)
    }
}

/// Every record of `fixtures/vectors/traccar/<protocol>.jsonl`, in file order.
pub fn load(protocol: &str) -> Vec<Vector> {
    let path = fixtures_dir()
        .join("vectors/traccar")
        .join(format!("{protocol}.jsonl"));
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

/// The repository's `fixtures/` directory.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// Lower- or upper-case hex, whitespace ignored, to bytes.
pub fn hex_to_bytes(hex: &str) -> Vec<u8> {
    let clean: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    clean
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("hex is ASCII");
            u8::from_str_radix(s, 16).unwrap_or_else(|e| panic!("bad hex {s:?}: {e}"))
        })
        .collect()
}
