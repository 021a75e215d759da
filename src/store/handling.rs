//! The alarm-handling chain as both stores apply it: which steps a request takes from an
//! alert's current state, what each step changes on the alert, how a new alert enters the chain
//! (open, or born closed), and the statistics over handled alerts.
//!
//! Plain functions over model values, no database: the SQLite and PostgreSQL stores read the
//! alert inside their write transaction, call these, and write what they return, so the two
//! backends cannot disagree on the rules.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreError;
use crate::model::{
    Actor, Alert, AlertAction, AlertId, AlertKind, AlertState, Disposition, PersonId, ZoneId,
};

/// What an operator asks to do to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertStep {
    /// open → acknowledged.
    Acknowledge,
    /// acknowledged → verified.
    Verify,
    /// verified → disposed, with what it was.
    Dispose(Disposition),
    /// disposed → closed.
    Close,
    /// Every step still missing up to closed, each recorded on its own; the disposition is
    /// needed unless the alert is already disposed.
    Resolve(Option<Disposition>),
}

impl AlertStep {
    /// The verb, for messages.
    fn verb(&self) -> &'static str {
        match self {
            AlertStep::Acknowledge => "acknowledged",
            AlertStep::Verify => "verified",
            AlertStep::Dispose(_) => "disposed",
            AlertStep::Close => "closed",
            AlertStep::Resolve(_) => "resolved",
        }
    }
}

/// A step asked for, with who asks, when, and the note.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertActionRequest {
    /// What to do.
    pub step: AlertStep,
    /// Who does it.
    pub actor: Actor,
    /// What the operator wrote (kept on the step's action; for `Resolve`, on the last one).
    pub note: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

/// The state moves that `step` takes from `current`, each with its disposition.
///
/// # Errors
/// [`StoreError::Conflict`] when the step would skip a state, go back, or repeat one, naming
/// where the alert stands and what the step needs.
pub fn plan(
    id: AlertId,
    current: AlertState,
    step: AlertStep,
) -> Result<Vec<(AlertState, Option<Disposition>)>, StoreError> {
    let single = |from: AlertState, to: AlertState, disposition: Option<Disposition>| {
        if current == from {
            Ok(vec![(to, disposition)])
        } else {
            Err(StoreError::Conflict(format!(
                "alert {id} is {current}; it can be {} only when {from}",
                step.verb()
            )))
        }
    };
    match step {
        AlertStep::Acknowledge => single(AlertState::Open, AlertState::Acknowledged, None),
        AlertStep::Verify => single(AlertState::Acknowledged, AlertState::Verified, None),
        AlertStep::Dispose(d) => single(AlertState::Verified, AlertState::Disposed, Some(d)),
        AlertStep::Close => single(AlertState::Disposed, AlertState::Closed, None),
        AlertStep::Resolve(disposition) => {
            if current == AlertState::Closed {
                return Err(StoreError::Conflict(format!(
                    "alert {id} is already closed"
                )));
            }
            if current == AlertState::Disposed && disposition.is_some() {
                return Err(StoreError::Conflict(format!(
                    "alert {id} is already disposed; resolve it without a disposition"
                )));
            }
            let mut moves = Vec::new();
            let mut state = current;
            while let Some(next) = state.next() {
                let with = if next == AlertState::Disposed {
                    Some(disposition.ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "alert {id} is {current}; resolving it needs a disposition \
                             (false_alarm, warned, escalated or returned_by_itself)"
                        ))
                    })?)
                } else {
                    None
                };
                moves.push((next, with));
                state = next;
            }
            Ok(moves)
        }
    }
}

/// Applies one move to the alert in memory and returns the action that records it.
pub fn apply(
    alert: &mut Alert,
    to: AlertState,
    disposition: Option<Disposition>,
    actor: &Actor,
    note: Option<String>,
    at: DateTime<Utc>,
) -> AlertAction {
    let previous_state = alert.state;
    alert.state = to;
    match to {
        AlertState::Acknowledged => alert.acknowledged_at = Some(at),
        AlertState::Verified => alert.verified_at = Some(at),
        AlertState::Disposed => {
            alert.disposed_at = Some(at);
            alert.disposition = disposition;
        }
        AlertState::Closed => alert.closed_at = Some(at),
        AlertState::Open => {}
    }
    if note.is_some() {
        alert.note.clone_from(&note);
    }
    AlertAction {
        alert_id: alert.id,
        previous_state,
        state: to,
        disposition,
        actor: actor.clone(),
        at,
        note,
        event_seq: None,
    }
}

/// The moves of a request applied to `alert` in order, with their actions (event seqs not yet
/// known). The note goes on the last move.
///
/// # Errors
/// As [`plan`].
pub fn take_steps(
    alert: &mut Alert,
    request: &AlertActionRequest,
) -> Result<Vec<(Alert, AlertAction)>, StoreError> {
    let moves = plan(alert.id, alert.state, request.step)?;
    let last = moves.len().saturating_sub(1);
    Ok(moves
        .into_iter()
        .enumerate()
        .map(|(i, (to, disposition))| {
            let note = if i == last {
                request.note.clone()
            } else {
                None
            };
            let action = apply(alert, to, disposition, &request.actor, note, request.at);
            (alert.clone(), action)
        })
        .collect())
}

/// The key under which at most one alert is not closed: one alert per (person, kind, zone)
/// episode in the operators' queue.
pub type EpisodeKey = (PersonId, AlertKind, Option<ZoneId>);

/// The episode key of an alert.
pub fn episode_key(alert: &Alert) -> EpisodeKey {
    (alert.person_id, alert.kind, alert.zone_id)
}

/// Decides how each new alert of a batch enters the chain, given the alerts already stored
/// that are not closed (`unclosed`, by episode key). An alert that needs no handling, or one
/// raised while an alert of its episode key is still not closed (stored, or earlier in the
/// batch), is born closed by the service, a repeat pointing at the alert being handled; every
/// other alert is open and becomes the one of its key. Returns, per alert, the action that
/// closed it at birth.
pub fn admit(
    alerts: &mut [Alert],
    mut unclosed: HashMap<EpisodeKey, AlertId>,
) -> Vec<Option<AlertAction>> {
    alerts
        .iter_mut()
        .map(|alert| {
            // A new alert enters the chain here whatever it carried (a batch handed back
            // after a failed commit is decided afresh).
            alert.state = AlertState::Open;
            alert.repeat_of = None;
            alert.closed_at = None;
            let reason = if !alert.kind.needs_handling() {
                format!("{} is recorded and needs no handling", alert.kind)
            } else if let Some(first) = unclosed.get(&episode_key(alert)) {
                alert.repeat_of = Some(*first);
                format!("a repeat of alert {first}, which is still being handled")
            } else {
                unclosed.insert(episode_key(alert), alert.id);
                return None;
            };
            let at = alert.raised_at;
            let action = apply(
                alert,
                AlertState::Closed,
                None,
                &Actor::service(),
                Some(reason),
                at,
            );
            // The reason stays on the action: an alert's `note` shows operators' notes only.
            alert.note = None;
            Some(action)
        })
        .collect()
}

/// One group of alerts counted by [`AlertStats`]: alerts raised in the window sharing these.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertCount {
    /// Kind.
    pub kind: String,
    /// Zone, if any.
    pub zone_id: Option<ZoneId>,
    /// Severity.
    pub severity: String,
    /// The person's supervision level now (`None` for a person since released).
    pub level: Option<String>,
    /// State.
    pub state: String,
    /// Disposition, once disposed.
    pub disposition: Option<String>,
    /// Whether they are repeats.
    pub repeat: bool,
    /// How many.
    pub count: u64,
}

/// Counts of the alerts raised in a window: the monitoring centre's measured false-alarm rate.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertStats {
    /// Start of the window (alerts raised at or after it), UTC.
    pub from: DateTime<Utc>,
    /// End of the window (alerts raised before it), UTC.
    pub to: DateTime<Utc>,
    /// Alerts raised, repeats left out (a repeat is part of the alert it repeats).
    pub alerts: u64,
    /// Repeats raised while their first alert was still being handled.
    pub repeats: u64,
    /// Alerts by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Zone alerts by zone id.
    pub by_zone: BTreeMap<String, u64>,
    /// Alerts by severity (the alert's level).
    pub by_severity: BTreeMap<String, u64>,
    /// Alerts by the person's supervision level now (`unknown` for persons since released).
    pub by_level: BTreeMap<String, u64>,
    /// Alerts by where they stand in the handling chain.
    pub by_state: BTreeMap<String, u64>,
    /// Disposed alerts by disposition.
    pub by_disposition: BTreeMap<String, u64>,
    /// Alerts with a disposition.
    pub disposed: u64,
    /// `false_alarm` dispositions over disposed alerts; `null` while none is disposed.
    pub false_alarm_rate: Option<f64>,
}

impl AlertStats {
    /// Sums the groups a store counted.
    pub fn from_counts(
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        counts: impl IntoIterator<Item = AlertCount>,
    ) -> AlertStats {
        let mut stats = AlertStats {
            from,
            to,
            alerts: 0,
            repeats: 0,
            by_kind: BTreeMap::new(),
            by_zone: BTreeMap::new(),
            by_severity: BTreeMap::new(),
            by_level: BTreeMap::new(),
            by_state: BTreeMap::new(),
            by_disposition: BTreeMap::new(),
            disposed: 0,
            false_alarm_rate: None,
        };
        let mut false_alarms = 0;
        for c in counts {
            if c.repeat {
                stats.repeats += c.count;
                continue;
            }
            stats.alerts += c.count;
            *stats.by_kind.entry(c.kind).or_default() += c.count;
            if let Some(zone) = c.zone_id {
                *stats.by_zone.entry(zone.to_string()).or_default() += c.count;
            }
            *stats.by_severity.entry(c.severity).or_default() += c.count;
            let level = c.level.unwrap_or_else(|| "unknown".into());
            *stats.by_level.entry(level).or_default() += c.count;
            *stats.by_state.entry(c.state).or_default() += c.count;
            if let Some(disposition) = c.disposition {
                stats.disposed += c.count;
                if disposition == Disposition::FalseAlarm.as_str() {
                    false_alarms += c.count;
                }
                *stats.by_disposition.entry(disposition).or_default() += c.count;
            }
        }
        if stats.disposed > 0 {
            stats.false_alarm_rate = Some(false_alarms as f64 / stats.disposed as f64);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{new_id, Severity};

    fn alert(kind: AlertKind, zone: Option<ZoneId>, person: PersonId) -> Alert {
        Alert {
            id: new_id(),
            seq: 0,
            kind,
            person_id: person,
            device_id: None,
            zone_id: zone,
            severity: Severity::High,
            time: Utc::now(),
            raised_at: Utc::now(),
            position: None,
            state: AlertState::Open,
            late: false,
            note: None,
            disposition: None,
            acknowledged_at: None,
            verified_at: None,
            disposed_at: None,
            closed_at: None,
            repeat_of: None,
            border: None,
        }
    }

    #[test]
    fn each_step_moves_one_state_forward_and_no_other() {
        let id = new_id();
        let steps = [
            AlertStep::Acknowledge,
            AlertStep::Verify,
            AlertStep::Dispose(Disposition::Warned),
            AlertStep::Close,
        ];
        for (i, step) in steps.into_iter().enumerate() {
            for (j, current) in AlertState::ALL.into_iter().enumerate() {
                let planned = plan(id, current, step);
                if i == j {
                    assert_eq!(planned.unwrap().len(), 1, "{step:?} from {current}");
                } else {
                    assert!(
                        matches!(planned, Err(StoreError::Conflict(_))),
                        "{step:?} from {current}"
                    );
                }
            }
        }
    }

    #[test]
    fn resolve_takes_every_missing_step_and_needs_a_disposition_to_pass_disposed() {
        let id = new_id();
        let moves = plan(
            id,
            AlertState::Open,
            AlertStep::Resolve(Some(Disposition::FalseAlarm)),
        )
        .unwrap();
        assert_eq!(
            moves,
            [
                (AlertState::Acknowledged, None),
                (AlertState::Verified, None),
                (AlertState::Disposed, Some(Disposition::FalseAlarm)),
                (AlertState::Closed, None),
            ]
        );
        assert!(plan(id, AlertState::Verified, AlertStep::Resolve(None)).is_err());
        assert_eq!(
            plan(id, AlertState::Disposed, AlertStep::Resolve(None)).unwrap(),
            [(AlertState::Closed, None)]
        );
        assert!(plan(
            id,
            AlertState::Disposed,
            AlertStep::Resolve(Some(Disposition::Warned))
        )
        .is_err());
        assert!(plan(id, AlertState::Closed, AlertStep::Resolve(None)).is_err());
    }

    #[test]
    fn a_second_alert_of_an_episode_key_and_a_jump_are_born_closed() {
        let person = new_id();
        let zone = Some(new_id());
        let stored = new_id();
        let mut batch = vec![
            alert(AlertKind::ZoneExit, zone, person),
            alert(AlertKind::Sos, None, person),
            alert(AlertKind::Sos, None, person),
            alert(AlertKind::ImplausibleJump, None, person),
            alert(AlertKind::ZoneExit, Some(new_id()), person),
        ];
        let unclosed = HashMap::from([((person, AlertKind::ZoneExit, zone), stored)]);
        let actions = admit(&mut batch, unclosed);
        let states: Vec<AlertState> = batch.iter().map(|a| a.state).collect();
        assert_eq!(
            states,
            [
                AlertState::Closed,
                AlertState::Open,
                AlertState::Closed,
                AlertState::Closed,
                AlertState::Open
            ]
        );
        assert_eq!(batch[0].repeat_of, Some(stored));
        assert_eq!(batch[2].repeat_of, Some(batch[1].id));
        assert_eq!(batch[3].repeat_of, None);
        assert!(batch.iter().all(|a| a.note.is_none()));
        let closers: Vec<bool> = actions.iter().map(Option::is_some).collect();
        assert_eq!(closers, [true, false, true, true, false]);
        let action = actions[3].as_ref().unwrap();
        assert_eq!(action.actor, Actor::service());
        assert_eq!(action.previous_state, AlertState::Open);
        assert_eq!(action.at, batch[3].raised_at);
        assert_eq!(batch[3].closed_at, Some(batch[3].raised_at));
    }

    #[test]
    fn the_false_alarm_rate_is_over_disposed_alerts_and_leaves_repeats_out() {
        let count = |disposition: Option<&str>, repeat, count| AlertCount {
            kind: "zone_exit".into(),
            zone_id: None,
            severity: "high".into(),
            level: Some("normal".into()),
            state: if disposition.is_some() {
                "closed"
            } else {
                "open"
            }
            .into(),
            disposition: disposition.map(Into::into),
            repeat,
            count,
        };
        let now = Utc::now();
        let stats = AlertStats::from_counts(
            now,
            now,
            [
                count(Some("false_alarm"), false, 3),
                count(Some("warned"), false, 1),
                count(None, false, 2),
                count(None, true, 5),
            ],
        );
        assert_eq!(stats.alerts, 6);
        assert_eq!(stats.repeats, 5);
        assert_eq!(stats.disposed, 4);
        assert_eq!(stats.false_alarm_rate, Some(0.75));
        assert_eq!(stats.by_state["open"], 2);
        let none = AlertStats::from_counts(now, now, []);
        assert_eq!(none.false_alarm_rate, None);
    }
}
