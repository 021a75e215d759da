//! Device alarms into alerts, once per episode: `sos`, `tamper`, `low_battery` and `fall`.
//!
//! Role in the pipeline: each fence shard hands [`AlarmEpisodes::observe`] the alarms and
//! fixes of every submission and turns what comes back into alerts. Devices repeat an alarm
//! while it lasts (an SOS button held down is an alarm on every frame, a cut strap or a low
//! battery is flagged on every report), and an operator needs one alert for it, not one per
//! frame. Pure code: no clock (times are the frames' own), no I/O.
//!
//! # Episodes
//!
//! An alarm of a kind from a device opens an episode and raises one alert; later frames with
//! the same kind from the same device continue it and raise nothing. The episode ends
//!
//! * when the alarm clears: for `sos` and `fall` (alarms of a moment, carried on the frame
//!   that reports them), a position from the device, later than the episode's last alarm
//!   frame, that does not carry the alarm; for `low_battery`, a report of a charge more than
//!   [`BATTERY_CLEAR_MARGIN_PCT`] points above the threshold (the device was charged);
//!   `tamper` (a strap cut, a case opened, a removal, a power cut) is a state the devices
//!   here never report as cleared, so only the quiet time ends it;
//! * or after the quiet time with no frame of that kind ([`quiet_time`]): 5 minutes for `sos`
//!   and `fall`, 30 minutes for `tamper`, 6 hours for `low_battery`.
//!
//! A position reporting a battery charge at or below the level's `low_battery_pct` counts as a
//! `low_battery` alarm frame even when the device raises no alarm itself.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use crate::model::{AlertKind, AlertPosition, DeviceAlarm, Fix};

/// Points above the low-battery threshold a report must show to end a `low_battery`
/// episode, so a charge hovering at the threshold does not raise an alert on every report.
pub const BATTERY_CLEAR_MARGIN_PCT: u8 = 5;

/// Most (device, kind) episodes kept; beyond it, the ended ones are dropped.
const MAX_EPISODES: usize = 100_000;

/// How long without a frame of its kind ends an episode.
pub fn quiet_time(kind: AlertKind) -> Duration {
    match kind {
        AlertKind::Sos | AlertKind::Fall => Duration::minutes(5),
        AlertKind::Tamper => Duration::minutes(30),
        _ => Duration::hours(6),
    }
}

/// A device alarm that opened an episode: the alert to raise.
#[derive(Debug, Clone, PartialEq)]
pub struct RaisedAlarm {
    /// `sos`, `tamper`, `low_battery` or `fall`.
    pub kind: AlertKind,
    /// The device.
    pub device_id: String,
    /// The frame's time.
    pub time: DateTime<Utc>,
    /// Where the device was, when the frame had a usable position.
    pub position: Option<AlertPosition>,
}

/// What one frame says, in time order.
enum Observation<'a> {
    Alarm(AlertKind, &'a DeviceAlarm),
    Fix(&'a Fix),
}

impl Observation<'_> {
    fn time(&self) -> DateTime<Utc> {
        match self {
            Observation::Alarm(_, a) => a.time,
            Observation::Fix(f) => f.time,
        }
    }
}

/// Open alarm episodes of the devices of one shard.
#[derive(Debug, Default)]
pub struct AlarmEpisodes {
    /// Time of the last alarm frame of each open (or recently ended by quiet) episode.
    last: HashMap<(String, AlertKind), DateTime<Utc>>,
}

impl AlarmEpisodes {
    /// Takes one submission's alarms and fixes (in any order; they are taken by time, an
    /// alarm before a position of the same time) and returns the alarms that open an episode.
    /// `low_battery_pct` is the person's level's threshold.
    pub fn observe(
        &mut self,
        alarms: &[DeviceAlarm],
        fixes: &[Fix],
        low_battery_pct: u8,
    ) -> Vec<RaisedAlarm> {
        let mut observations: Vec<Observation> = alarms
            .iter()
            .filter_map(|a| AlertKind::from_alarm(a.alarm).map(|k| Observation::Alarm(k, a)))
            .chain(fixes.iter().map(Observation::Fix))
            .collect();
        // Stable: alarms were put first, so at equal times they stay ahead of positions.
        observations.sort_by_key(Observation::time);
        let carries = |fix: &Fix, kind: AlertKind| {
            alarms.iter().any(|a| {
                a.device_id == fix.device_id
                    && a.time == fix.time
                    && AlertKind::from_alarm(a.alarm) == Some(kind)
            })
        };
        let mut raised = Vec::new();
        for observation in &observations {
            match observation {
                Observation::Alarm(kind, alarm) => {
                    if self.frame(&alarm.device_id, *kind, alarm.time) {
                        raised.push(RaisedAlarm {
                            kind: *kind,
                            device_id: alarm.device_id.clone(),
                            time: alarm.time,
                            position: alarm.position,
                        });
                    }
                }
                Observation::Fix(fix) => {
                    for kind in [AlertKind::Sos, AlertKind::Fall] {
                        if !carries(fix, kind) {
                            self.clear_before(&fix.device_id, kind, fix.time);
                        }
                    }
                    let Some(pct) = fix.battery_pct else { continue };
                    if pct <= low_battery_pct {
                        if !carries(fix, AlertKind::LowBattery)
                            && self.frame(&fix.device_id, AlertKind::LowBattery, fix.time)
                        {
                            raised.push(RaisedAlarm {
                                kind: AlertKind::LowBattery,
                                device_id: fix.device_id.clone(),
                                time: fix.time,
                                position: usable_position(fix),
                            });
                        }
                    } else if pct > low_battery_pct.saturating_add(BATTERY_CLEAR_MARGIN_PCT) {
                        self.clear_before(&fix.device_id, AlertKind::LowBattery, fix.time);
                    }
                }
            }
        }
        raised
    }

    /// Records an alarm frame; `true` when it opens a new episode.
    fn frame(&mut self, device: &str, kind: AlertKind, time: DateTime<Utc>) -> bool {
        let key = (device.to_owned(), kind);
        let continues = self
            .last
            .get(&key)
            .is_some_and(|last| (time - *last).abs() < quiet_time(kind));
        if !continues && self.last.len() >= MAX_EPISODES {
            self.last
                .retain(|(_, k), last| (time - *last).abs() < quiet_time(*k));
        }
        let last = self.last.entry(key).or_insert(time);
        *last = if continues { (*last).max(time) } else { time };
        !continues
    }

    /// Ends the device's episode of `kind` if its last alarm frame is older than `time`.
    fn clear_before(&mut self, device: &str, kind: AlertKind, time: DateTime<Utc>) {
        let key = (device.to_owned(), kind);
        if self.last.get(&key).is_some_and(|last| *last < time) {
            self.last.remove(&key);
        }
    }
}

fn usable_position(fix: &Fix) -> Option<AlertPosition> {
    (fix.valid && fix.implausible.is_none()).then_some(AlertPosition {
        lat: fix.lat,
        lon: fix.lon,
        accuracy_m: fix.accuracy_m,
    })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::model::{Alarm, PositionSource};

    const DEVICE: &str = "864717003283581";

    fn at(second: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 1, 10, 0, 0).unwrap() + Duration::seconds(second)
    }

    fn alarm(kind: Alarm, second: i64) -> DeviceAlarm {
        DeviceAlarm {
            device_id: DEVICE.into(),
            person_id: uuid::Uuid::from_u128(1),
            alarm: kind,
            time: at(second),
            position: None,
        }
    }

    fn fix(second: i64, battery_pct: Option<u8>) -> Fix {
        Fix {
            device_id: DEVICE.into(),
            person_id: uuid::Uuid::from_u128(1),
            time: at(second),
            received_at: at(second),
            lat: 25.6,
            lon: 112.4,
            valid: true,
            accuracy_m: Some(10.0),
            speed_kmh: None,
            course: None,
            altitude_m: None,
            satellites: None,
            hdop: None,
            source: PositionSource::Gps,
            battery_pct,
            archived: false,
            integrity_mismatch: false,
            protocol: "gt06".into(),
            wifi_bssids: Vec::new(),
            clock_skew: false,
            implausible: None,
            raw: Default::default(),
        }
    }

    fn kinds(raised: Vec<RaisedAlarm>) -> Vec<AlertKind> {
        raised.into_iter().map(|r| r.kind).collect()
    }

    #[test]
    fn an_sos_held_for_ten_frames_is_one_episode_and_a_new_press_after_it_clears_another() {
        let mut episodes = AlarmEpisodes::default();
        let mut raised = Vec::new();
        for frame in 0..10 {
            let second = frame * 10;
            raised.extend(episodes.observe(
                &[alarm(Alarm::Sos, second)],
                &[fix(second, Some(80))],
                20,
            ));
        }
        assert_eq!(kinds(raised), [AlertKind::Sos]);
        // A position without the alarm: released. The next press is a new episode.
        assert!(episodes.observe(&[], &[fix(110, Some(80))], 20).is_empty());
        assert_eq!(
            kinds(episodes.observe(&[alarm(Alarm::Sos, 120)], &[fix(120, None)], 20)),
            [AlertKind::Sos]
        );
        // Within one submission too: pressed, released, pressed.
        let mut fresh = AlarmEpisodes::default();
        let raised = fresh.observe(
            &[alarm(Alarm::Sos, 0), alarm(Alarm::Sos, 20)],
            &[fix(0, None), fix(10, None), fix(20, None)],
            20,
        );
        assert_eq!(kinds(raised), [AlertKind::Sos, AlertKind::Sos]);
    }

    #[test]
    fn alarm_frames_without_positions_end_after_the_quiet_time() {
        let mut episodes = AlarmEpisodes::default();
        assert_eq!(
            kinds(episodes.observe(&[alarm(Alarm::Fall, 0)], &[], 20)),
            [AlertKind::Fall]
        );
        assert!(episodes
            .observe(&[alarm(Alarm::Fall, 240)], &[], 20)
            .is_empty());
        // Five minutes after the last frame: a new fall.
        assert_eq!(
            kinds(episodes.observe(&[alarm(Alarm::Fall, 540)], &[], 20)),
            [AlertKind::Fall]
        );
    }

    #[test]
    fn tamper_stays_one_episode_across_positions_and_every_cause_is_tamper() {
        let mut episodes = AlarmEpisodes::default();
        let mut raised = Vec::new();
        for (i, cause) in [Alarm::Tamper, Alarm::Removal, Alarm::PowerCut]
            .into_iter()
            .enumerate()
        {
            let second = i as i64 * 600;
            raised.extend(episodes.observe(&[alarm(cause, second)], &[], 20));
            raised.extend(episodes.observe(&[], &[fix(second + 60, Some(70))], 20));
        }
        assert_eq!(kinds(raised), [AlertKind::Tamper]);
        // Half an hour without a tamper frame: the next one is a new episode.
        assert_eq!(
            kinds(episodes.observe(&[alarm(Alarm::Tamper, 1_200 + 1_800)], &[], 20)),
            [AlertKind::Tamper]
        );
        // Alarms without an alert kind raise nothing.
        assert!(episodes
            .observe(&[alarm(Alarm::Vibration, 4_000)], &[], 20)
            .is_empty());
    }

    #[test]
    fn a_low_charge_raises_low_battery_once_until_the_device_is_charged() {
        let mut episodes = AlarmEpisodes::default();
        let mut raised = Vec::new();
        for (minute, pct) in [(0, 30), (1, 20), (2, 19), (3, 22), (4, 18)] {
            raised.extend(episodes.observe(&[], &[fix(minute * 60, Some(pct))], 20));
        }
        assert_eq!(raised.len(), 1);
        assert_eq!(raised[0].kind, AlertKind::LowBattery);
        assert_eq!(raised[0].time, at(60));
        assert!(raised[0].position.is_some());
        // The device's own alarm continues the same episode.
        assert!(episodes
            .observe(&[alarm(Alarm::LowBattery, 300)], &[], 20)
            .is_empty());
        // Charged past threshold + margin, then low again: a new episode.
        assert!(episodes.observe(&[], &[fix(600, Some(26))], 20).is_empty());
        assert_eq!(
            kinds(episodes.observe(&[], &[fix(660, Some(15))], 20)),
            [AlertKind::LowBattery]
        );
        // A level with a higher threshold.
        let mut strict = AlarmEpisodes::default();
        assert_eq!(
            kinds(strict.observe(&[], &[fix(0, Some(28))], 30)),
            [AlertKind::LowBattery]
        );
    }
}
