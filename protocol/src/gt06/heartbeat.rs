//! Heartbeats and status packets: 0x13 (status), 0x23 (GK310 heartbeat), 0x36 (module-based
//! status of Jimi 4G devices) and short 0xA3 (GL21L status).
//!
//! ```text
//! 0x13: info u8 | voltage level u8 | GSM signal u8 | alarm u8 | language u8
//! ```
//! Some models send other 0x13 layouts, told apart by length (see `README.md`). Every one of
//! these is answered with the generic acknowledgement.
//!
//! In: the packet's content. Out: a [`MessageKind::Heartbeat`] / [`MessageKind::Status`] message
//! with battery, charging, ignition, signal and alarms.

use crate::error::DecodeError;
use crate::message::MessageKind;
use crate::reader::Reader;

use super::status::{self, push_alarm};
use super::{alarm, Ctx, Out};

/// Status / heartbeat.
pub(crate) const STATUS: u8 = 0x13;
/// GK310 heartbeat.
pub(crate) const HEARTBEAT: u8 = 0x23;
/// Module-based status (the same number is a GPS report on some models).
pub(crate) const STATUS_2: u8 = 0x36;

/// 0x13 and 0x23.
///
/// # Errors
/// [`DecodeError::Truncated`] when the terminal-information byte is missing.
pub(crate) fn decode(ctx: &Ctx<'_>, protocol: u8, body: &[u8]) -> Result<Out, DecodeError> {
    let mut r = Reader::new(body);
    let mut message = ctx.message(MessageKind::Heartbeat);
    if protocol == HEARTBEAT {
        // info (bit 0 armed, 1 ACC, 2 charging), battery voltage u16 (0.01 V), signal, language
        let info = r.u8("terminal information")?;
        message.status.ignition = Some(info & status::INFO_ACC != 0);
        message.status.charging = Some(info & status::INFO_CHARGING != 0);
        if r.remaining() >= 2 {
            message.status.voltage = Some(f64::from(r.u16("voltage")?) / 100.0);
        }
        if r.remaining() >= 1 {
            message.status.gsm_signal = Some(r.u8("gsm signal")?);
        }
        return Ok(Out::ack(vec![message]));
    }
    match body.len() {
        14 => {
            // OBD6: info, signal u16 (satellites and GSM), alarm, language, battery %, mode,
            // power u16, ...
            status::apply_info(&mut message, r.u8("terminal information")?);
            let signal = r.u16("signal")?;
            message.status.gsm_signal = u8::try_from(signal & 0x1f).ok();
            if let Some(a) = alarm::from_code_for(r.u8("alarm")?, ctx.family) {
                push_alarm(&mut message, a);
            }
            r.skip(1, "language")?;
            message.status.battery_pct = Some(r.u8("battery")?).filter(|&b| b <= 100);
        }
        16 => {
            // info content, satellites u16, alarm, language, battery %, mode, voltage u16, ...
            r.skip(3, "information content and satellites")?;
            if let Some(a) = alarm::from_code_for(r.u8("alarm")?, ctx.family) {
                push_alarm(&mut message, a);
            }
            r.skip(1, "language")?;
            message.status.battery_pct = Some(r.u8("battery")?).filter(|&b| b <= 100);
        }
        _ => status::read_block(&mut r, &mut message, false, ctx.family)?,
    }
    Ok(Out::ack(vec![message]))
}

/// 0x36 when its content is the status block followed by whole modules (id u16, length u8,
/// value); `None` otherwise (the GPS form of 0x36). Module 0x18 is the battery voltage
/// (0.01 V), 0x6A the battery percentage.
pub(crate) fn status_2(ctx: &Ctx<'_>, body: &[u8]) -> Option<Out> {
    let (block, mut modules) = (body.get(..5)?, body.get(5..)?);
    let mut values = Vec::new();
    while !modules.is_empty() {
        let (&[hi, lo, len], rest) = modules.split_first_chunk::<3>()?;
        let value = rest.get(..usize::from(len))?;
        values.push((u16::from_be_bytes([hi, lo]), value));
        modules = rest.get(usize::from(len)..)?;
    }
    let mut message = ctx.message(MessageKind::Status);
    status::read_block(&mut Reader::new(block), &mut message, false, ctx.family).ok()?;
    for (id, value) in values {
        match (id, value) {
            (0x0018, &[hi, lo]) => {
                message.status.voltage = Some(f64::from(u16::from_be_bytes([hi, lo])) / 100.0);
            }
            (0x006a, &[pct]) if pct <= 100 => message.status.battery_pct = Some(pct),
            _ => {}
        }
    }
    Some(Out::ack(vec![message]))
}

/// Short 0xA3: a status packet whose layout we do not read further.
///
/// # Errors
/// Never; the signature matches the other decoders.
pub(crate) fn status_3(ctx: &Ctx<'_>, _body: &[u8]) -> Result<Out, DecodeError> {
    Ok(Out::ack(vec![ctx.message(MessageKind::Status)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gt06::tests::ctx;
    use crate::message::Alarm;

    #[test]
    fn decodes_a_status_heartbeat() {
        let body = [
            0xc4, // info: relay cut, GPS tracking, charging
            0x06, // voltage level 6
            0x04, // GSM signal
            0x00, // no alarm
            0x02, // language
        ];
        let out = decode(&ctx(), STATUS, &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.kind, MessageKind::Heartbeat);
        assert_eq!(m.status.battery_pct, Some(100));
        assert_eq!(m.status.charging, Some(true));
        assert_eq!(m.status.ignition, Some(false));
        assert_eq!(m.status.gsm_signal, Some(4));
        assert!(m.alarms.is_empty());
    }

    #[test]
    fn a_heartbeat_reports_the_alarm_in_its_info_bits() {
        // info with code 3 (low battery) in bits 3-5, level 1, signal 2
        let out = decode(&ctx(), STATUS, &[0x18, 0x01, 0x02, 0x00, 0x02]).unwrap();
        assert_eq!(out.messages[0].alarms, vec![Alarm::LowBattery]);
        assert_eq!(out.messages[0].status.battery_pct, Some(16));
    }

    #[test]
    fn the_long_0x13_layout_reads_battery_as_percent() {
        let body = [
            0x30, // information content
            0x80, 0x2b, // satellites
            0x00, 0x00, // alarm, language
            0x06, // battery 6 %
            0x42, 0x01, 0x4f, 0x00, 0x08, 0x72, 0x00, 0x00, 0x80, 0x2b, // mode, voltage, ...
        ];
        let out = decode(&ctx(), STATUS, &body).unwrap();
        assert_eq!(out.messages[0].status.battery_pct, Some(6));
    }

    #[test]
    fn module_status_is_recognised_by_its_modules() {
        let body = [
            0x00, 0x05, 0x04, 0x00, 0x02, // status block
            0x00, 0x32, 0x01, 0x01, // module 0x32: startup status
            0x00, 0x18, 0x02, 0x01, 0x92, // module 0x18: 4.02 V
            0x00, 0x6a, 0x01, 0x5f, // module 0x6a: 95 %
        ];
        let out = status_2(&ctx(), &body).unwrap();
        let m = &out.messages[0];
        assert_eq!(m.status.voltage, Some(4.02));
        assert_eq!(m.status.battery_pct, Some(95));
        // A GPS block does not tile into modules.
        assert!(status_2(
            &ctx(),
            &[0x19, 0x0c, 0x1d, 0x0f, 0x17, 0x24, 0xcf, 0x02, 0x6c]
        )
        .is_none());
    }
}
