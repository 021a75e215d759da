//! The protocol-neutral result of decoding one frame: what every wire format is turned into.
//!
//! Each protocol module cuts frames from a byte stream and turns each frame into a [`Decoded`]:
//! zero or more [`Message`]s, the reply bytes the device expects, and whether the frame's
//! integrity checks (checksum, length field) held. The service never looks at wire bytes; it
//! reads only these types.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Everything one frame carried.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decoded {
    /// The messages in the frame, in the order the device sent them. A batch upload (JT/T 808
    /// 0x0704) gives one message per position; a frame that only needs an answer gives none.
    pub messages: Vec<Message>,
    /// Bytes to send back to the device once the frame's messages are safely stored, if the
    /// protocol answers this frame at all.
    pub reply: Option<Vec<u8>>,
    /// Whether the frame's checksum and length field were consistent.
    pub integrity: Integrity,
}

impl Decoded {
    /// A frame with no messages and no reply (an echo, an unknown but well-formed type).
    pub fn empty(integrity: Integrity) -> Self {
        Decoded {
            messages: Vec::new(),
            reply: None,
            integrity,
        }
    }
}

/// Outcome of a frame's integrity checks.
///
/// Devices in the field send frames with wrong checksums and odd length fields. A frame whose
/// structure still parses is accepted with [`Integrity::Mismatch`] so the service can count and
/// flag it; a session built with `strict_checksum` rejects it instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Integrity {
    /// Checksum and length field both held.
    Verified,
    /// The protocol carries no checksum (watch, H02, OsmAnd).
    Unchecked,
    /// The frame parsed but a check failed.
    Mismatch(Mismatch),
}

impl Integrity {
    /// True when a check failed.
    pub fn is_mismatch(&self) -> bool {
        matches!(self, Integrity::Mismatch(_))
    }
}

/// Which integrity check failed, with the values seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "check")]
pub enum Mismatch {
    /// The checksum in the frame differs from the one computed over its bytes.
    Checksum {
        /// Checksum computed over the received bytes.
        expected: u32,
        /// Checksum the frame carried.
        actual: u32,
    },
    /// The length field disagrees with the bytes present.
    Length {
        /// Length the frame declared.
        declared: usize,
        /// Length actually present.
        actual: usize,
    },
}

/// One message from a device.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// What the device said.
    pub kind: MessageKind,
    /// The device's identifier (IMEI, terminal phone number, watch ID) when the frame or the
    /// session's login carries it. Messages without one cannot be attributed and are dropped by
    /// the service.
    pub device_id: Option<String>,
    /// The position the message carries, valid or not.
    pub position: Option<Position>,
    /// Alarms the device raised with this message.
    pub alarms: Vec<Alarm>,
    /// Device condition reported alongside (battery, charging, signal).
    pub status: DeviceStatus,
    /// Serving and neighbour cells, when reported (LBS messages).
    pub cells: Vec<CellTower>,
    /// Wi-Fi access points seen, when reported.
    pub wifi: Vec<WifiAccessPoint>,
    /// The device's answer to a command, when the message is one (it may carry a position as
    /// well, as a JT/T 808 0x0201 does).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_reply: Option<crate::command::CommandReply>,
}

impl Message {
    /// A message of `kind` with nothing else filled in.
    pub fn new(kind: MessageKind) -> Self {
        Message {
            kind,
            device_id: None,
            position: None,
            alarms: Vec::new(),
            status: DeviceStatus::default(),
            cells: Vec::new(),
            wifi: Vec::new(),
            command_reply: None,
        }
    }
}

/// The kinds of message the service tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    /// Device identifies itself (GT06 login, watch LK with identity, H02 first frame).
    Login,
    /// JT/T 808 terminal registration (0x0100).
    Registration,
    /// JT/T 808 terminal authentication (0x0102).
    Authentication,
    /// JT/T 808 logout (0x0003).
    Logout,
    /// Keep-alive, possibly with status.
    Heartbeat,
    /// A position report.
    Position,
    /// An alarm report, usually with a position.
    Alarm,
    /// Cell-tower information only.
    Lbs,
    /// Wi-Fi access-point information (often with cells).
    Wifi,
    /// Device status without a position.
    Status,
    /// A time request; the reply carries the server time.
    TimeRequest,
    /// A device's answer to a command sent to it.
    CommandReply,
    /// Health readings (heart rate, blood pressure, temperature).
    Health,
    /// A well-formed message the service has no use for (voice, images, vendor data).
    Other,
}

/// Where a position came from, which decides the accuracy the fence engine assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PositionSource {
    /// Satellite fix.
    #[default]
    Gps,
    /// Located from cell towers by the device or its network.
    Lbs,
    /// Located from Wi-Fi access points.
    Wifi,
}

/// A position as the device reported it, converted to WGS-84 degrees and UTC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Position {
    /// Fix time in UTC (device time converted with the session's time zone).
    pub time: DateTime<Utc>,
    /// Latitude in degrees, north positive.
    pub lat: f64,
    /// Longitude in degrees, east positive.
    pub lon: f64,
    /// The device marked the fix valid.
    pub valid: bool,
    /// Ground speed in km/h.
    pub speed_kmh: Option<f64>,
    /// Course over ground in degrees from north.
    pub course: Option<f64>,
    /// Altitude in metres.
    pub altitude_m: Option<f64>,
    /// Satellites used for the fix.
    pub satellites: Option<u8>,
    /// Horizontal accuracy radius in metres, when the device states one.
    pub accuracy_m: Option<f64>,
    /// Horizontal dilution of precision, when reported.
    pub hdop: Option<f64>,
    /// How the position was obtained.
    pub source: PositionSource,
    /// The device marked this as stored and re-sent (blind-area backlog).
    pub archived: bool,
    /// The date and time fields as the device sent them, when they do not form a real date
    /// (month 13, day 32, hour 25). `time` is then the moment the frame was decoded, and the
    /// service stores the position flagged as implausible instead of losing it.
    pub unreadable_time: Option<String>,
}

impl Position {
    /// A valid GPS position at `time` with no optional fields.
    pub fn new(time: DateTime<Utc>, lat: f64, lon: f64) -> Self {
        Position {
            time,
            lat,
            lon,
            valid: true,
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            accuracy_m: None,
            hdop: None,
            source: PositionSource::Gps,
            archived: false,
            unreadable_time: None,
        }
    }
}

/// Device condition reported with a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceStatus {
    /// Battery charge in percent.
    pub battery_pct: Option<u8>,
    /// Supply or battery voltage in volts.
    pub voltage: Option<f64>,
    /// Charging or on external power.
    pub charging: Option<bool>,
    /// GSM signal, as the protocol's own scale.
    pub gsm_signal: Option<u8>,
    /// Ignition / ACC line (vehicle trackers).
    pub ignition: Option<bool>,
    /// Odometer in metres.
    pub odometer_m: Option<f64>,
    /// Step counter (watches).
    pub steps: Option<u32>,
}

/// One cell tower.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CellTower {
    /// Mobile country code.
    pub mcc: u16,
    /// Mobile network code.
    pub mnc: u16,
    /// Location area code (or TAC).
    pub lac: u32,
    /// Cell identifier.
    pub cid: u64,
    /// Signal strength, as reported.
    pub rssi: Option<i16>,
}

/// One Wi-Fi access point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WifiAccessPoint {
    /// MAC address as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Signal strength in dBm.
    pub rssi: Option<i16>,
}

/// Alarms the service understands, from every protocol's own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alarm {
    /// Emergency button.
    Sos,
    /// Case opened or strap cut.
    Tamper,
    /// Device taken off the body.
    Removal,
    /// External power removed.
    PowerCut,
    /// Device switched off.
    PowerOff,
    /// Battery low or supply under-voltage.
    LowBattery,
    /// Shock or vibration.
    Vibration,
    /// Speed above the device's threshold.
    Overspeed,
    /// Wearer fell.
    Fall,
    /// The device's own geofence was entered.
    GeofenceEnter,
    /// The device's own geofence was left.
    GeofenceExit,
    /// The device's own geofence, direction not stated.
    Geofence,
    /// Movement while parked / armed.
    Movement,
    /// Crash detected.
    Accident,
    /// Hard braking.
    HarshBraking,
    /// Hard acceleration.
    HarshAcceleration,
    /// Sharp cornering.
    HarshCornering,
    /// Driver fatigue.
    Fatigue,
    /// Device or module fault.
    Fault,
    /// GNSS antenna cut or shorted.
    GnssAntenna,
    /// Parked too long.
    Parking,
    /// Door opened.
    Door,
    /// Radio jamming detected.
    Jamming,
    /// Lock engaged / released (padlocks).
    Lock,
    /// Temperature out of range.
    Temperature,
    /// An alarm the device did not qualify.
    General,
}

impl Alarm {
    /// The snake_case name used in JSON and metrics.
    pub fn as_str(&self) -> &'static str {
        match self {
            Alarm::Sos => "sos",
            Alarm::Tamper => "tamper",
            Alarm::Removal => "removal",
            Alarm::PowerCut => "power_cut",
            Alarm::PowerOff => "power_off",
            Alarm::LowBattery => "low_battery",
            Alarm::Vibration => "vibration",
            Alarm::Overspeed => "overspeed",
            Alarm::Fall => "fall",
            Alarm::GeofenceEnter => "geofence_enter",
            Alarm::GeofenceExit => "geofence_exit",
            Alarm::Geofence => "geofence",
            Alarm::Movement => "movement",
            Alarm::Accident => "accident",
            Alarm::HarshBraking => "harsh_braking",
            Alarm::HarshAcceleration => "harsh_acceleration",
            Alarm::HarshCornering => "harsh_cornering",
            Alarm::Fatigue => "fatigue",
            Alarm::Fault => "fault",
            Alarm::GnssAntenna => "gnss_antenna",
            Alarm::Parking => "parking",
            Alarm::Door => "door",
            Alarm::Jamming => "jamming",
            Alarm::Lock => "lock",
            Alarm::Temperature => "temperature",
            Alarm::General => "general",
        }
    }
}
