//! The frames we send back: 0x8001 general response, 0x8100 registration response, 0x8109
//! time answer and the vendor 0x4401.
//!
//! In: the request's header (its terminal number and edition are echoed), our own serial and
//! the answer's fields. Out: a whole escaped frame with its check code.

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::header::{self, Header};

/// Platform general response.
pub const MSG_GENERAL_RESPONSE: u16 = 0x8001;
/// Terminal registration response.
pub const MSG_REGISTRATION_RESPONSE: u16 = 0x8100;
/// Time request answer.
pub const MSG_TIME_RESPONSE: u16 = 0x8109;
/// Vendor general response to 0x5501/0x5502 (one-byte serial).
pub const MSG_VENDOR_RESPONSE: u16 = 0x4401;

/// Result code: success / acknowledged.
pub const RESULT_OK: u8 = 0;
/// Result code: message type not supported.
pub const RESULT_UNSUPPORTED: u8 = 3;

/// A reply frame for `msg_id` with `body`, echoing the request's terminal number and edition.
pub(crate) fn frame(msg_id: u16, request: &Header, serial: u16, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(body.len() + 17);
    header::write_header(
        &mut content,
        msg_id,
        request.edition,
        request.terminal.as_bytes(),
        serial,
        body.len(),
    );
    content.extend_from_slice(body);
    header::wrap(&content)
}

/// 0x8001: the request's serial and ID, then the result.
pub(crate) fn general(request: &Header, serial: u16, result: u8) -> Vec<u8> {
    let mut body = Vec::with_capacity(5);
    body.extend_from_slice(&request.serial.to_be_bytes());
    body.extend_from_slice(&request.msg_id.to_be_bytes());
    body.push(result);
    frame(MSG_GENERAL_RESPONSE, request, serial, &body)
}

/// 0x8100: the request's serial, result 0, then the authentication code.
pub(crate) fn registration(request: &Header, serial: u16, auth_code: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(3 + auth_code.len());
    body.extend_from_slice(&request.serial.to_be_bytes());
    body.push(RESULT_OK);
    body.extend_from_slice(auth_code.as_bytes());
    frame(MSG_REGISTRATION_RESPONSE, request, serial, &body)
}

/// 0x8109: UTC year u16, month, day, hour, minute, second, result 0.
pub(crate) fn time(request: &Header, serial: u16, now: DateTime<Utc>) -> Vec<u8> {
    let year = u16::try_from(now.year()).unwrap_or(0);
    let mut body = Vec::with_capacity(8);
    body.extend_from_slice(&year.to_be_bytes());
    for v in [
        now.month(),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
    ] {
        body.push(v as u8);
    }
    body.push(RESULT_OK);
    frame(MSG_TIME_RESPONSE, request, serial, &body)
}

/// 0x4401: the vendor header (2013 layout, one-byte serial), the request's ID and result 0.
pub(crate) fn vendor(request: &Header, serial: u8) -> Vec<u8> {
    let mut content = Vec::with_capacity(13);
    content.extend_from_slice(&MSG_VENDOR_RESPONSE.to_be_bytes());
    content.extend_from_slice(&3u16.to_be_bytes());
    content.extend_from_slice(request.terminal.as_bytes());
    content.push(serial);
    content.extend_from_slice(&request.msg_id.to_be_bytes());
    content.push(RESULT_OK);
    header::wrap(&content)
}

#[cfg(test)]
mod tests {
    use super::super::header::{Edition, Terminal};
    use super::*;

    #[test]
    fn general_response_matches_the_documented_example() {
        let request = Header {
            msg_id: 0x0200,
            props: 0,
            edition: Edition::V2013,
            terminal: Terminal::from_bytes(&[0x01, 0x20, 0x76, 0x46, 0x32, 0x79]),
            serial: 0x0040,
            packet: None,
        };
        assert_eq!(
            general(&request, 0, RESULT_OK),
            [
                0x7e, // flag
                0x80, 0x01, // general response
                0x00, 0x05, // body length 5
                0x01, 0x20, 0x76, 0x46, 0x32, 0x79, // terminal echoed
                0x00, 0x00, // our serial
                0x00, 0x40, // answered serial
                0x02, 0x00, // answered ID
                0x00, // result OK
                0x9c, // check code
                0x7e, // flag
            ]
        );
    }

    #[test]
    fn a_2019_request_gets_a_2019_reply() {
        let request = Header {
            msg_id: 0x0002,
            props: 0x4000,
            edition: Edition::V2019 { version: 1 },
            terminal: Terminal::from_bytes(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01]),
            serial: 7,
            packet: None,
        };
        let r = general(&request, 3, RESULT_OK);
        assert_eq!(&r[1..6], &[0x80, 0x01, 0x40, 0x05, 0x01]); // ID, 2019 + length 5, version
        assert_eq!(&r[6..16], request.terminal.as_bytes());
        assert_eq!(&r[16..18], &[0x00, 0x03]); // our serial
    }
}
