//! Fuzzes the OsmAnd request and JSON-body decoders: any input gives a message or an error,
//! never a panic. The same bytes go to both: as a request target or form body (when they are
//! UTF-8) and as a JSON body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = ewall_protocol::osmand::decode_request(text);
    }
    let _ = ewall_protocol::osmand::decode_json(data);
});
