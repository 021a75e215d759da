//! The store as the second road of the supervision notices in cluster mode. A notice travels
//! over core NATS at most once ([`super::notices`]); so that one lost costs no more than a
//! short delay, every node reads the supervision records from the store each lease round
//! (persons, device bindings, leaves, orders, check-ins), compares them with what it read the
//! round before, and hands each change of a person in a partition it owns to that
//! partition's pipeline as the notice it would have had.
//!
//! A change whose notice did arrive comes a second time this way; the timer-driven rules take
//! every notice as the state of a record, so the second changes nothing. Bindings are handed
//! over before unbindings, so a device swapped within one round never looks like a person
//! left without a device. A partition taken in a round loads its state from the store after
//! this round's read, so nothing falls between the two.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use uuid::Uuid;

use crate::model::{Checkin, LeavePermit, MonitoringOrder, Person};
use crate::store::{Store, StoreError};
use crate::supervision::Notice;

/// What the timer-driven rules are told of, as the store has it at one read.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SupervisionRecords {
    persons: BTreeMap<Uuid, Person>,
    /// Each device's person and when the binding was made.
    bindings: BTreeMap<String, (Uuid, DateTime<Utc>)>,
    leaves: BTreeMap<Uuid, LeavePermit>,
    orders: BTreeMap<Uuid, MonitoringOrder>,
    checkins: BTreeMap<Uuid, Checkin>,
}

impl SupervisionRecords {
    /// Reads them, over the same windows as a takeover's [`crate::pipeline::Resume`].
    ///
    /// # Errors
    /// Store errors.
    pub async fn read(store: &dyn Store, now: DateTime<Utc>) -> Result<Self, StoreError> {
        let mut records = SupervisionRecords::default();
        for person in store.persons().await? {
            records.persons.insert(person.id, person);
        }
        for device in store.devices().await? {
            records
                .bindings
                .insert(device.imei, (device.person_id, device.created_at));
        }
        for leave in store.leaves_ending_since(now - Duration::days(1)).await? {
            records.leaves.insert(leave.id, leave);
        }
        for order in store.open_orders().await? {
            records.orders.insert(order.id, order);
        }
        for checkin in store.checkins_since(now - Duration::days(2)).await? {
            records.checkins.insert(checkin.id, checkin);
        }
        Ok(records)
    }

    /// The notices that take rules knowing `older` to knowing `self`, in the order they are
    /// to be applied. Records that only left the read's windows (a leave ended long ago) are
    /// no change.
    pub fn changes_since(&self, older: &SupervisionRecords, now: DateTime<Utc>) -> Vec<Notice> {
        let mut notices = Vec::new();
        for (id, person) in &self.persons {
            if older.persons.get(id) != Some(person) {
                notices.push(Notice::PersonSaved(person.clone()));
            }
        }
        for (device, (person, at)) in &self.bindings {
            if older.bindings.get(device) != Some(&(*person, *at)) {
                notices.push(Notice::DeviceBound {
                    person: *person,
                    device: device.clone(),
                    at: *at,
                });
            }
        }
        for (device, (person, _)) in &older.bindings {
            let rebound = self.bindings.get(device).map(|(p, _)| p);
            if rebound != Some(person) {
                notices.push(Notice::DeviceUnbound {
                    person: *person,
                    device: device.clone(),
                    at: now,
                });
            }
        }
        for id in older.persons.keys() {
            if !self.persons.contains_key(id) {
                notices.push(Notice::PersonDeleted(*id));
            }
        }
        notices.extend(
            changed(&self.leaves, &older.leaves)
                .cloned()
                .map(Notice::LeaveSaved),
        );
        notices.extend(
            changed(&self.orders, &older.orders)
                .cloned()
                .map(Notice::OrderSaved),
        );
        notices.extend(
            changed(&self.checkins, &older.checkins)
                .cloned()
                .map(Notice::CheckedIn),
        );
        notices
    }
}

/// The records of `newer` that `older` lacks or has otherwise.
fn changed<'a, T: PartialEq>(
    newer: &'a BTreeMap<Uuid, T>,
    older: &'a BTreeMap<Uuid, T>,
) -> impl Iterator<Item = &'a T> {
    newer
        .iter()
        .filter(|(id, record)| older.get(*id) != Some(*record))
        .map(|(_, record)| record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{new_id, SupervisionLevel};

    fn person(level: SupervisionLevel) -> Person {
        Person {
            id: new_id(),
            name: "p".into(),
            level,
            timezone: "Asia/Shanghai".into(),
            created_at: "2026-02-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn leave(person: &Person, at: DateTime<Utc>) -> LeavePermit {
        LeavePermit {
            id: new_id(),
            person_id: person.id,
            from: at,
            to: at + Duration::hours(2),
            zone_ids: Vec::new(),
            reason: "hospital".into(),
            approved_by: "officer 7".into(),
            created_at: at,
            cancelled_at: None,
            ended_at: None,
        }
    }

    fn kinds(notices: &[Notice]) -> Vec<String> {
        notices
            .iter()
            .map(|n| {
                let json = serde_json::to_value(n).unwrap();
                json["notice"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn what_changed_between_two_reads_becomes_the_notices_it_would_have_sent() {
        let now: DateTime<Utc> = "2026-02-01T08:00:00Z".parse().unwrap();
        let mut older = SupervisionRecords::default();
        let p = person(SupervisionLevel::Normal);
        older.persons.insert(p.id, p.clone());
        older
            .bindings
            .insert("old".into(), (p.id, now - Duration::days(3)));
        assert!(older.changes_since(&older, now).is_empty(), "no change");

        let mut newer = older.clone();
        let granted = leave(&p, now);
        newer.leaves.insert(granted.id, granted.clone());
        // The device swapped within the round: bound first, so it is never without one.
        newer.bindings.remove("old");
        newer.bindings.insert("new".into(), (p.id, now));
        let notices = newer.changes_since(&older, now);
        assert_eq!(
            kinds(&notices),
            ["device_bound", "device_unbound", "leave_saved"]
        );
        match &notices[2] {
            Notice::LeaveSaved(l) => assert_eq!(l, &granted),
            other => panic!("{other:?}"),
        }

        // The leave cancelled and the level raised: both are told again.
        let mut latest = newer.clone();
        let cancelled = LeavePermit {
            cancelled_at: Some(now + Duration::minutes(5)),
            ..granted
        };
        latest.leaves.insert(cancelled.id, cancelled);
        let raised = Person {
            level: SupervisionLevel::Strict,
            ..p
        };
        latest.persons.insert(raised.id, raised);
        assert_eq!(
            kinds(&latest.changes_since(&newer, now)),
            ["person_saved", "leave_saved"]
        );
    }
}
