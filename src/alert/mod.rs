//! Alert delivery: the outbox reader and the dispatchers that carry the event feed to its
//! consumers (MQTT topic, webhooks, server-sent events).
//!
//! The store writes every alert, every alert state change and every filing event to its event
//! feed in the same transaction as the change (see [`crate::store`]). Nothing here holds an
//! alert that the store does not: each dispatcher is a loop over `seq > cursor` that reads the
//! store, hands the events to its consumer, and moves its own durable cursor only once the
//! consumer has acknowledged them (an MQTT PUBACK, a webhook's 2xx). A restart therefore repeats
//! only what was not acknowledged, and a slow or absent consumer never holds up the pipeline:
//! the pipeline only writes to the store, dispatchers only read it.
//!
//! Every channel carries the same envelope, [`cloud_event`]: a CloudEvents 1.0 structured JSON
//! object whose `data` is the alert as it was at that event, or only the fields of it a
//! consumer may see ([`select_fields`]: a webhook's `fields`, the integration's).

pub mod dispatch;
pub mod outbox;

use serde_json::{json, Value};

pub use outbox::{AlertOutbox, Backoff};

use crate::model::{Event, EventKind};

/// The CloudEvents `source` of every event ewall emits.
pub const EVENT_SOURCE: &str = "/ewall";

/// The CloudEvents `type` of an event: `org.ewall.alert.<kind>` for a new alert (`zone_exit`,
/// `sos`, ...), `org.ewall.alert.<state>` for a step of the handling chain (`acknowledged`,
/// `verified`, `disposed`, `closed`; `resolved` for alerts resolved before the chain existed),
/// `org.ewall.person.enrolled` / `released` and `org.ewall.order.started` / `ended` for filing
/// events. Alert kinds and states never share a name, so the type alone says which it is.
pub fn event_type(event: &Event) -> String {
    match event.kind {
        EventKind::AlertRaised => format!(
            "org.ewall.alert.{}",
            event.data["kind"].as_str().unwrap_or("unknown")
        ),
        EventKind::AlertChanged(state) => format!("org.ewall.alert.{}", state.as_str()),
        other => format!("org.ewall.{other}"),
    }
}

/// Fields of the alert always sent, whatever a consumer's field list says: a receiver needs
/// them to name, order and route the alert.
pub const ALWAYS_SENT: [&str; 4] = ["id", "seq", "kind", "person_id"];

/// The alert JSON `data` with only the fields in `fields` (and [`ALWAYS_SENT`]); an empty list
/// keeps every field. The one filter of alert fields, shared by webhooks (their `fields`) and
/// the police integration (`integration.fields`) on every channel it reads.
pub fn select_fields(data: &Value, fields: &[String]) -> Value {
    match data {
        Value::Object(all) if !fields.is_empty() => Value::Object(
            all.iter()
                .filter(|(k, _)| {
                    ALWAYS_SENT.contains(&k.as_str()) || fields.iter().any(|f| f == *k)
                })
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// An event as a CloudEvents 1.0 structured JSON object: `specversion`, `id` (the alert id for
/// a new alert, the event's own id otherwise), `source`, `type` ([`event_type`]), `subject`
/// (the person), `time` (when the change was committed), `datacontenttype`, the extension
/// `seq` (the position in the feed, for ordering and resuming) and `data` (the record).
pub fn cloud_event(event: &Event, data: Value) -> Value {
    json!({
        "specversion": "1.0",
        "id": event.id,
        "source": EVENT_SOURCE,
        "type": event_type(event),
        "subject": event.person_id,
        "time": event.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "seq": event.seq,
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::model::{new_id, AlertState};

    fn event(kind: EventKind) -> Event {
        Event {
            seq: 7,
            id: new_id(),
            kind,
            person_id: new_id(),
            alert_id: None,
            time: Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap(),
            data: json!({"kind": "zone_exit", "note": "x"}),
        }
    }

    #[test]
    fn types_name_the_alert_kind_or_the_change() {
        assert_eq!(
            event_type(&event(EventKind::AlertRaised)),
            "org.ewall.alert.zone_exit"
        );
        assert_eq!(
            event_type(&event(EventKind::AlertChanged(AlertState::Acknowledged))),
            "org.ewall.alert.acknowledged"
        );
        assert_eq!(
            event_type(&event(EventKind::PersonEnrolled)),
            "org.ewall.person.enrolled"
        );
        assert_eq!(
            event_type(&event(EventKind::OrderEnded)),
            "org.ewall.order.ended"
        );
    }

    #[test]
    fn the_envelope_has_every_required_attribute() {
        let e = event(EventKind::AlertRaised);
        let envelope = cloud_event(&e, e.data.clone());
        for key in [
            "specversion",
            "id",
            "source",
            "type",
            "time",
            "datacontenttype",
        ] {
            assert!(envelope.get(key).is_some(), "{key} missing: {envelope}");
        }
        assert_eq!(envelope["specversion"], "1.0");
        assert_eq!(envelope["id"], e.id.to_string());
        assert_eq!(envelope["seq"], 7);
        assert_eq!(envelope["time"], "2026-05-01T08:00:00.000000Z");
        assert_eq!(envelope["data"]["kind"], "zone_exit");
    }
}
