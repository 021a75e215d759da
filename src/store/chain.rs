//! The audit trail's hash chains: the canonical encoding of each chained record, the link that
//! ties a record to the one before it, and the signature of a retention checkpoint.
//!
//! Three kinds of chain: one per device over its positions (`positions:<device id>`), one over
//! all alerts (`alerts`) and one over operator and admin actions (`actions`). Record `n` of a
//! chain stores `hash(n) = SHA-256(hash(n-1) || canonical(n))`, with 32 zero bytes before the
//! first record. The canonical encoding is compact JSON with the keys in the order the structs
//! below declare them (no spaces; numbers as Rust's shortest round-trip form; times as integer
//! microseconds since the Unix epoch; raw bytes as lower-case hex), so the same record always
//! encodes to the same bytes and anyone can check a record from an export with a JSON parser
//! and SHA-256 (see the README's "Audit" section).
//!
//! The stores compute the links inside the transaction that writes the records (the group
//! commit for positions and alerts, the changing transaction for actions) and keep each chain's
//! newest `(n, hash)` in `audit_heads`. Which actor is recorded for an action comes from
//! [`with_actor`], set by the API for each request and by the command line.

use std::cell::RefCell;
use std::future::Future;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::{Alert, Fix, PersonId, PositionSource};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// What the first record of a chain links to.
pub const GENESIS: Hash = [0; 32];

/// Version of the canonical encoding, the `v` of every encoded record.
pub const ENCODING_VERSION: u8 = 1;

/// The chain of the alerts.
pub const ALERTS_CHAIN: &str = "alerts";
/// The chain of operator and admin actions.
pub const ACTIONS_CHAIN: &str = "actions";
/// Prefix of a device's positions chain.
pub const POSITIONS_CHAIN_PREFIX: &str = "positions:";

/// The name of `device_id`'s positions chain.
pub fn positions_chain(device_id: &str) -> String {
    format!("{POSITIONS_CHAIN_PREFIX}{device_id}")
}

/// `SHA-256(prev || canonical)`.
pub fn link(prev: &Hash, canonical: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(prev);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// A stored hash as the 32 bytes it should be; `None` for any other length.
pub fn hash_of(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn source_name(source: PositionSource) -> &'static str {
    match source {
        PositionSource::Gps => "gps",
        PositionSource::Lbs => "lbs",
        PositionSource::Wifi => "wifi",
    }
}

#[derive(Serialize)]
struct PositionEncoding<'a> {
    v: u8,
    chain: &'a str,
    n: i64,
    device_id: &'a str,
    person_id: PersonId,
    time: i64,
    received_at: i64,
    lat: f64,
    lon: f64,
    valid: bool,
    accuracy_m: Option<f64>,
    speed_kmh: Option<f64>,
    course: Option<f64>,
    altitude_m: Option<f64>,
    satellites: Option<u8>,
    hdop: Option<f64>,
    source: &'static str,
    battery_pct: Option<u8>,
    archived: bool,
    integrity_mismatch: bool,
    protocol: &'a str,
    clock_skew: bool,
    implausible: Option<&'a str>,
    raw: Hex<'a>,
}

/// Bytes serialised as a lower-case hex string, written in pieces rather than built first.
struct Hex<'a>(&'a [u8]);

impl std::fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut piece = [0u8; 128];
        for bytes in self.0.chunks(piece.len() / 2) {
            let digits = &mut piece[..bytes.len() * 2];
            hex::encode_to_slice(bytes, digits).map_err(|_| std::fmt::Error)?;
            f.write_str(std::str::from_utf8(digits).map_err(|_| std::fmt::Error)?)?;
        }
        Ok(())
    }
}

impl Serialize for Hex<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Feeds what is written into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The canonical encoding of position `n` of its device's chain: every stored field of the fix
/// and its raw frame.
pub fn position_canonical(fix: &Fix, n: i64) -> Vec<u8> {
    let chain = positions_chain(&fix.device_id);
    encode(&position_encoding(fix, &chain, n))
}

/// `link(prev, &position_canonical(fix, n))`, the encoding written into the hash as it is
/// serialised instead of being built first (the store writer's path, once per position).
pub fn link_position(prev: &Hash, fix: &Fix, n: i64) -> Hash {
    let chain = positions_chain(&fix.device_id);
    let mut hasher = Sha256::new();
    hasher.update(prev);
    // Plain structs of strings, numbers and booleans into a writer that cannot fail.
    serde_json::to_writer(HashWriter(&mut hasher), &position_encoding(fix, &chain, n))
        .expect("canonical records serialise");
    hasher.finalize().into()
}

fn position_encoding<'a>(fix: &'a Fix, chain: &'a str, n: i64) -> PositionEncoding<'a> {
    PositionEncoding {
        v: ENCODING_VERSION,
        chain,
        n,
        device_id: &fix.device_id,
        person_id: fix.person_id,
        time: micros(fix.time),
        received_at: micros(fix.received_at),
        lat: fix.lat,
        lon: fix.lon,
        valid: fix.valid,
        accuracy_m: fix.accuracy_m,
        speed_kmh: fix.speed_kmh,
        course: fix.course,
        altitude_m: fix.altitude_m,
        satellites: fix.satellites,
        hdop: fix.hdop,
        source: source_name(fix.source),
        battery_pct: fix.battery_pct,
        archived: fix.archived,
        integrity_mismatch: fix.integrity_mismatch,
        protocol: &fix.protocol,
        clock_skew: fix.clock_skew,
        implausible: fix.implausible.as_deref(),
        raw: Hex(&fix.raw),
    }
}

#[derive(Serialize)]
struct AlertEncoding<'a> {
    v: u8,
    chain: &'static str,
    n: i64,
    id: uuid::Uuid,
    seq: i64,
    kind: &'static str,
    person_id: PersonId,
    device_id: Option<&'a str>,
    zone_id: Option<uuid::Uuid>,
    severity: &'static str,
    time: i64,
    raised_at: i64,
    lat: Option<f64>,
    lon: Option<f64>,
    accuracy_m: Option<f64>,
    late: bool,
}

/// The canonical encoding of alert `n` of the alerts chain: what the alert was when raised.
/// Its later state changes are actions (`alert.state`), chained there.
pub fn alert_canonical(alert: &Alert, n: i64) -> Vec<u8> {
    encode(&AlertEncoding {
        v: ENCODING_VERSION,
        chain: ALERTS_CHAIN,
        n,
        id: alert.id,
        seq: alert.seq,
        kind: alert.kind.as_str(),
        person_id: alert.person_id,
        device_id: alert.device_id.as_deref(),
        zone_id: alert.zone_id,
        severity: alert.severity.as_str(),
        time: micros(alert.time),
        raised_at: micros(alert.raised_at),
        lat: alert.position.map(|p| p.lat),
        lon: alert.position.map(|p| p.lon),
        accuracy_m: alert.position.and_then(|p| p.accuracy_m),
        late: alert.late,
    })
}

/// An operator or admin action about to be recorded, inside the transaction of the change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAction {
    /// What was done: `person.create`, `device.bind`, `alert.state`, ... (see the README).
    pub kind: String,
    /// The record it was done to (a person, device, zone, token or alert id).
    pub subject: String,
    /// The person it concerns, when there is one (an export by person includes it).
    pub person_id: Option<PersonId>,
    /// What changed, as JSON.
    pub detail: serde_json::Value,
}

impl NewAction {
    /// An action of `kind` on `subject`.
    pub fn new(kind: &str, subject: impl ToString, detail: serde_json::Value) -> Self {
        NewAction {
            kind: kind.to_owned(),
            subject: subject.to_string(),
            person_id: None,
            detail,
        }
    }

    /// The same action, concerning `person`.
    #[must_use]
    pub fn person(mut self, person: PersonId) -> Self {
        self.person_id = Some(person);
        self
    }
}

/// `person.create`, `person.update` or `person.delete` with the person as it then was.
pub(crate) fn person_action(kind: &str, person: &crate::model::Person) -> NewAction {
    NewAction::new(
        kind,
        person.id,
        serde_json::json!({
            "name": person.name,
            "level": person.level.as_str(),
            "timezone": person.timezone,
        }),
    )
    .person(person.id)
}

/// `device.bind`, `device.unbind` or `device.model` with the binding as it then was.
pub(crate) fn device_action(kind: &str, device: &crate::model::Device) -> NewAction {
    NewAction::new(
        kind,
        &device.imei,
        serde_json::json!({ "person_id": device.person_id, "model": device.model }),
    )
    .person(device.person_id)
}

/// `zone.create` or `zone.delete` with the zone as stored.
pub(crate) fn zone_action(kind: &str, zone: &super::ZoneRecord) -> NewAction {
    NewAction::new(
        kind,
        zone.id,
        serde_json::json!({
            "name": zone.name,
            "kind": zone.kind.as_str(),
            "source_crs": zone.source_crs.as_str(),
            "radius_m": zone.radius_m,
            "geometry": zone.geometry,
            "wifi": zone.wifi.bssids,
        }),
    )
}

/// `zone.assign`: the person's zones from now on.
pub(crate) fn assignment_action(person: PersonId, zones: &[crate::model::ZoneId]) -> NewAction {
    NewAction::new("zone.assign", person, serde_json::json!({ "zones": zones })).person(person)
}

/// `alert.state`: the alert's new state, note and times.
pub(crate) fn alert_state_action(alert: &Alert) -> NewAction {
    NewAction::new(
        "alert.state",
        alert.id,
        serde_json::json!({
            "state": alert.state.as_str(),
            "note": alert.note,
            "disposition": alert.disposition.map(|d| d.as_str()),
            "acknowledged_at": alert.acknowledged_at,
            "verified_at": alert.verified_at,
            "disposed_at": alert.disposed_at,
            "closed_at": alert.closed_at,
        }),
    )
    .person(alert.person_id)
}

/// `token.create` or `token.revoke` (never the secret, which the store does not have).
pub(crate) fn token_action(kind: &str, token: &super::TokenRecord) -> NewAction {
    NewAction::new(
        kind,
        token.id,
        serde_json::json!({
            "role": token.role.as_str(),
            "label": token.label,
            "expires_at": token.expires_at,
            "revoked_at": token.revoked_at,
        }),
    )
}

/// `leave.create`, `leave.cancel` or `leave.end` with the permit as it then was.
pub(crate) fn leave_action(kind: &str, leave: &crate::model::LeavePermit) -> NewAction {
    NewAction::new(
        kind,
        leave.id,
        serde_json::json!({
            "from": leave.from,
            "to": leave.to,
            "zone_ids": leave.zone_ids,
            "reason": leave.reason,
            "approved_by": leave.approved_by,
            "cancelled_at": leave.cancelled_at,
            "ended_at": leave.ended_at,
        }),
    )
    .person(leave.person_id)
}

/// `order.create` or `order.renew` (an order that carries on from one not yet ended, named in
/// `renews`), `order.start` or `order.end` with the order as it then was.
pub(crate) fn order_action(
    kind: &str,
    order: &crate::model::MonitoringOrder,
    renews: Option<crate::model::OrderId>,
) -> NewAction {
    let mut detail = serde_json::json!({
        "ground": order.ground,
        "approved_by": order.approved_by,
        "from": order.from,
        "to": order.to,
        "started_at": order.started_at,
        "ended_at": order.ended_at,
    });
    if let Some(renews) = renews {
        detail["renews"] = serde_json::json!(renews);
    }
    NewAction::new(kind, order.id, detail).person(order.person_id)
}

/// `checkin.create`: when, how and where the person checked in.
pub(crate) fn checkin_action(checkin: &crate::model::Checkin) -> NewAction {
    NewAction::new(
        "checkin.create",
        checkin.id,
        serde_json::json!({
            "time": checkin.time,
            "method": checkin.method.as_str(),
            "position": checkin.position,
        }),
    )
    .person(checkin.person_id)
}

/// `command.create`: a downlink command queued for a device (of `person`, when bound).
pub(crate) fn command_action(
    command: &crate::model::DeviceCommand,
    person: Option<PersonId>,
) -> NewAction {
    let action = NewAction::new(
        "command.create",
        command.id,
        serde_json::json!({
            "device_id": command.device_id,
            "kind": command.kind,
            "text": command.text,
            "interval_s": command.interval_s,
            "expires_at": command.expires_at,
        }),
    );
    match person {
        Some(person) => action.person(person),
        None => action,
    }
}

/// `border_hit.report`: a border check's hit stored as an alert.
pub(crate) fn border_hit_action(alert: &Alert) -> NewAction {
    NewAction::new(
        "border_hit.report",
        alert.id,
        serde_json::json!({ "border": alert.border, "time": alert.time }),
    )
    .person(alert.person_id)
}

/// `webhook.redeliver`: dead deliveries of a webhook put back to pending (one event's, or all).
pub(crate) fn redelivery_action(webhook: &str, event: Option<uuid::Uuid>, count: u64) -> NewAction {
    NewAction::new(
        "webhook.redeliver",
        webhook,
        serde_json::json!({ "event_id": event, "deliveries": count }),
    )
}

/// A recorded action, as the actions chain holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// Its place in the actions chain.
    pub n: i64,
    /// Its id.
    pub id: uuid::Uuid,
    /// When it was committed.
    pub time: DateTime<Utc>,
    /// Who did it: `token:<id>` for an API token, `cli` for the command line, `system`.
    pub actor: String,
    /// What was done.
    pub kind: String,
    /// To which record.
    pub subject: String,
    /// The person it concerns.
    pub person_id: Option<PersonId>,
    /// What changed: JSON text exactly as stored.
    pub detail: String,
}

#[derive(Serialize)]
struct ActionEncoding<'a> {
    v: u8,
    chain: &'static str,
    n: i64,
    id: uuid::Uuid,
    time: i64,
    actor: &'a str,
    kind: &'a str,
    subject: &'a str,
    person_id: Option<PersonId>,
    detail: &'a str,
}

/// The canonical encoding of an action (its `detail` as a JSON string, exactly as stored).
pub fn action_canonical(action: &ActionRecord) -> Vec<u8> {
    encode(&ActionEncoding {
        v: ENCODING_VERSION,
        chain: ACTIONS_CHAIN,
        n: action.n,
        id: action.id,
        time: micros(action.time),
        actor: &action.actor,
        kind: &action.kind,
        subject: &action.subject,
        person_id: action.person_id,
        detail: &action.detail,
    })
}

/// A retention checkpoint: records `1..=n` of `chain` were dropped, the last of them had
/// `hash`; they were older than `before`; the drop happened at `at`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The chain.
    pub chain: String,
    /// Records dropped, from the first.
    pub n: i64,
    /// Hash of record `n`, which the first record kept links to.
    #[serde(with = "hex_hash")]
    pub hash: Hash,
    /// The retention cutoff of the drop.
    pub before: DateTime<Utc>,
    /// When the drop was committed.
    pub at: DateTime<Utc>,
    /// HMAC-SHA256 of [`checkpoint_canonical`] with the checkpoint key, lower-case hex.
    pub signature: String,
}

#[derive(Serialize)]
struct CheckpointEncoding<'a> {
    v: u8,
    chain: &'a str,
    n: i64,
    hash: String,
    before: i64,
    at: i64,
}

/// The canonical encoding a checkpoint's signature covers.
pub fn checkpoint_canonical(checkpoint: &Checkpoint) -> Vec<u8> {
    encode(&CheckpointEncoding {
        v: ENCODING_VERSION,
        chain: &checkpoint.chain,
        n: checkpoint.n,
        hash: hex::encode(checkpoint.hash),
        before: micros(checkpoint.before),
        at: micros(checkpoint.at),
    })
}

/// The signature of `checkpoint` with `key`.
pub fn sign_checkpoint(key: &[u8], checkpoint: &Checkpoint) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&checkpoint_canonical(checkpoint));
    hex::encode(mac.finalize().into_bytes())
}

/// Whether `checkpoint` carries the signature `key` gives it (compared in constant time).
pub fn checkpoint_signed_by(key: &[u8], checkpoint: &Checkpoint) -> bool {
    let Ok(signature) = hex::decode(&checkpoint.signature) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(&checkpoint_canonical(checkpoint));
    mac.verify_slice(&signature).is_ok()
}

/// The newest record of a chain, as `audit_heads` keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub chain: String,
    /// Records in the chain so far (dropped ones included).
    pub n: i64,
    /// Hash of record `n` ([`GENESIS`] for an empty chain).
    pub hash: Hash,
}

/// One stored record of a chain, read back for verification.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainRecord {
    /// Table it is stored in: `positions`, `alerts` or `audit_actions`.
    pub table: &'static str,
    /// The chain it belongs to.
    pub chain: String,
    /// Its id in that table (the row id, the alert id, the action id).
    pub id: String,
    /// Its paging key in that table (row id, alert `seq`, action `n`).
    pub key: i64,
    /// Its place in the chain, as stored.
    pub n: i64,
    /// Its time (fix time, raised time, action time), for `--from`/`--to`.
    pub time: DateTime<Utc>,
    /// The device it is of, when it has one.
    pub device_id: Option<String>,
    /// Its canonical encoding, rebuilt from the stored columns.
    pub canonical: Vec<u8>,
    /// The hash stored with it (`None` when the column holds something that is no hash).
    pub hash: Option<Hash>,
}

/// A record that carries no hash: stored before the trail existed (`legacy`) or written
/// around ewall.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unchained {
    /// Table.
    pub table: &'static str,
    /// Row id.
    pub id: String,
}

/// What a retention run dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionOutcome {
    /// Positions deleted.
    pub positions_dropped: u64,
    /// Chains whose checkpoint moved.
    pub checkpoints: u64,
    /// Whole daily partitions dropped (PostgreSQL).
    pub partitions_dropped: u64,
}

/// The fixes of a batch that are not repeats of an earlier one in it (same natural key:
/// device, fix time, coordinates), in order: the first copy of a resend is the one chained.
pub fn distinct_positions(fixes: &[Fix]) -> Vec<&Fix> {
    let mut seen = std::collections::HashSet::with_capacity(fixes.len());
    fixes
        .iter()
        // `+ 0.0` makes -0.0 and 0.0 one key, as the database's comparison does.
        .filter(|f| {
            seen.insert((
                f.device_id.as_str(),
                f.time.timestamp_micros(),
                (f.lat + 0.0).to_bits(),
                (f.lon + 0.0).to_bits(),
            ))
        })
        .collect()
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings, numbers and booleans: serialising them cannot fail.
    serde_json::to_vec(value).expect("canonical records serialise")
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(hash: &super::Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Hash, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = hex::decode(&text).map_err(serde::de::Error::custom)?;
        super::hash_of(&bytes).ok_or_else(|| serde::de::Error::custom("not a SHA-256 hash"))
    }
}

tokio::task_local! {
    static ACTOR: RefCell<Option<String>>;
}

/// Runs `future` with actions recorded as done by `actor` (unless it names another with
/// [`set_actor`] on the way).
pub async fn with_actor<F: Future>(actor: Option<String>, future: F) -> F::Output {
    ACTOR.scope(RefCell::new(actor), future).await
}

/// Names the actor of the actions recorded from here on in the current [`with_actor`] scope
/// (the API's authentication does, once it knows the token). Outside a scope it does nothing.
pub fn set_actor(actor: String) {
    let _ = ACTOR.try_with(|cell| *cell.borrow_mut() = Some(actor));
}

/// The actor actions are recorded under now: the scope's, or `system`.
pub fn current_actor() -> String {
    ACTOR
        .try_with(|cell| cell.borrow().clone())
        .ok()
        .flatten()
        .unwrap_or_else(|| "system".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_link_is_sha256_of_the_previous_hash_and_the_encoding() {
        let first = link(&GENESIS, b"{}");
        let mut hasher = Sha256::new();
        hasher.update([0u8; 32]);
        hasher.update(b"{}");
        assert_eq!(first, <[u8; 32]>::from(hasher.finalize()));
        assert_ne!(
            link(&first, b"{}"),
            first,
            "the chain position changes the hash"
        );
    }

    #[test]
    fn a_position_hashed_as_it_is_serialised_links_as_its_encoding_does() {
        let mut fix: Fix = serde_json::from_value(serde_json::json!({
            "device_id": "864717003283581",
            "person_id": "00000000-0000-0000-0000-000000000001",
            "time": "2026-05-01T20:00:00.123456Z",
            "received_at": "2026-05-01T20:00:01Z",
            "lat": 25.5,
            "lon": 112.3,
            "valid": true,
            "accuracy_m": 15.0,
            "speed_kmh": null,
            "course": null,
            "altitude_m": null,
            "satellites": 8,
            "hdop": null,
            "source": "gps",
            "battery_pct": null,
            "archived": false,
            "integrity_mismatch": false,
            "protocol": "gt06",
            "implausible": "a \"quoted\" reason"
        }))
        .unwrap();
        // Longer than one piece of the hex writer, and with every byte value.
        fix.raw = (0..=255u8).chain(0..=255).collect::<Vec<u8>>().into();
        let canonical = position_canonical(&fix, 7);
        let text = String::from_utf8(canonical.clone()).unwrap();
        assert!(
            text.ends_with(&format!("\"raw\":\"{}\"}}", hex::encode(&fix.raw))),
            "{text}"
        );
        let prev = link(&GENESIS, b"{}");
        assert_eq!(link_position(&prev, &fix, 7), link(&prev, &canonical));
        fix.raw = Default::default();
        assert_eq!(
            link_position(&prev, &fix, 8),
            link(&prev, &position_canonical(&fix, 8))
        );
    }

    #[test]
    fn an_action_encodes_with_its_keys_in_order_and_its_detail_as_a_string() {
        let action = ActionRecord {
            n: 3,
            id: uuid::Uuid::nil(),
            time: Utc.timestamp_micros(1_700_000_000_123_456).unwrap(),
            actor: "cli".into(),
            kind: "token.create".into(),
            subject: "t1".into(),
            person_id: None,
            detail: r#"{"role":"admin"}"#.into(),
        };
        assert_eq!(
            String::from_utf8(action_canonical(&action)).unwrap(),
            r#"{"v":1,"chain":"actions","n":3,"id":"00000000-0000-0000-0000-000000000000","time":1700000000123456,"actor":"cli","kind":"token.create","subject":"t1","person_id":null,"detail":"{\"role\":\"admin\"}"}"#
        );
    }

    #[test]
    fn a_checkpoint_signed_with_one_key_fails_with_another_or_when_changed() {
        let mut checkpoint = Checkpoint {
            chain: "positions:864717003283581".into(),
            n: 10,
            hash: [7; 32],
            before: Utc.timestamp_micros(1_700_000_000_000_000).unwrap(),
            at: Utc.timestamp_micros(1_700_000_100_000_000).unwrap(),
            signature: String::new(),
        };
        checkpoint.signature = sign_checkpoint(b"key one", &checkpoint);
        assert!(checkpoint_signed_by(b"key one", &checkpoint));
        assert!(!checkpoint_signed_by(b"key two", &checkpoint));
        checkpoint.n = 9;
        assert!(!checkpoint_signed_by(b"key one", &checkpoint));
    }

    #[tokio::test]
    async fn the_actor_is_the_scope_s_once_named() {
        assert_eq!(current_actor(), "system");
        let inner = with_actor(None, async {
            set_actor("token:abc".into());
            current_actor()
        })
        .await;
        assert_eq!(inner, "token:abc");
        assert_eq!(
            with_actor(Some("cli".into()), async { current_actor() }).await,
            "cli"
        );
    }
}
