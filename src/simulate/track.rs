//! Synthetic tracks for simulated wearers: a walk that stays well inside a circular zone, or,
//! for the breaching share, the same walk until a quarter of the run, then a departure straight
//! out past the boundary and a wander outside it for the rest of the run.
//!
//! Fix times run on a track clock, not the wall clock: consecutive fixes are `step` apart (a
//! wristband's reporting interval) however fast the simulator sends them, and the track ends
//! about now, so the service sees a believable day of movement at a believable speed, the
//! fence's dwell (`confirm_seconds`) is reached after a few fixes, and no fix is in the future.
//! Every walker is seeded from the run's seed and the device's index, so runs repeat.

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::fence::Confirmation;

/// Metres per degree of latitude (and of longitude at the equator).
const METRES_PER_DEGREE: f64 = 111_320.0;
/// Walking speed, m/s, when the reporting interval is short enough.
const WALK_SPEED: f64 = 1.2;
/// Longest step of a walk, as a share of the zone's radius: long intervals slow the walk
/// rather than carry an inside walker out of the zone in one step.
const LONGEST_WALK_STEP: f64 = 0.05;
/// Fastest departure, m/s (a bicycle): far below the service's implausible-speed bound.
const MAX_LEAVE_SPEED: f64 = 8.0;
/// Share of the radius the inside walk keeps within, leaving room for GPS accuracy.
const INNER_SHARE: f64 = 0.6;
/// The accuracy radius every fix states, metres.
pub const ACCURACY_M: f64 = 10.0;

/// The circular zone the wearers are kept in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Zone {
    /// Centre latitude, degrees.
    pub lat: f64,
    /// Centre longitude, degrees.
    pub lon: f64,
    /// Radius, metres.
    pub radius_m: f64,
}

impl Zone {
    /// How far beyond the boundary a departing wearer goes before wandering: far enough that
    /// no accuracy radius makes the fix uncertain.
    fn margin(&self) -> f64 {
        (0.3 * self.radius_m).max(100.0)
    }

    /// Distance from the centre of (lat, lon), metres (equirectangular: exact enough at the
    /// scale of a zone, and the margins are wide).
    pub fn distance_m(&self, lat: f64, lon: f64) -> f64 {
        let north = (lat - self.lat) * METRES_PER_DEGREE;
        let east = (lon - self.lon) * METRES_PER_DEGREE * self.lat.to_radians().cos();
        north.hypot(east)
    }
}

/// One point of a track: what a device reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackPoint {
    /// Fix time on the track clock.
    pub time: DateTime<Utc>,
    /// Latitude, degrees.
    pub lat: f64,
    /// Longitude, degrees.
    pub lon: f64,
    /// Ground speed, km/h.
    pub speed_kmh: f64,
    /// Course, degrees clockwise from north, 0..360.
    pub course: f64,
}

/// How the track clock runs for a run that plans `fixes` fixes per device: `step` between
/// fixes, from `start`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrackClock {
    /// Time of the first fix.
    pub start: DateTime<Utc>,
    /// Time between consecutive fixes.
    pub step: TimeDelta,
}

impl TrackClock {
    /// Ten seconds between fixes (a wristband under normal supervision), or more when the run
    /// is too short for a departure to last `confirmation` on the track clock otherwise (a
    /// breaching wearer is out for about the second half of the run), and less, down to one
    /// second, when the run is so long that the track would start more than 20 days ago (the
    /// service refuses fixes older than its `max_fix_age`, 30 days by default). The last fix
    /// falls a step before `now`.
    pub fn for_run(fixes: u64, now: DateTime<Utc>, confirmation: Confirmation) -> TrackClock {
        const BUDGET_SECS: u64 = 20 * 86_400;
        const LONGEST_STEP_SECS: u64 = 600;
        let outside = (fixes / 2).saturating_sub(1).max(1);
        // Half as long again as the dwell, for the fixes that are still uncertain at the edge.
        let for_dwell = (u64::from(confirmation.seconds) * 3).div_ceil(2 * outside);
        let step_secs = for_dwell
            .clamp(10, LONGEST_STEP_SECS)
            .min(BUDGET_SECS / fixes.max(1))
            .max(1);
        let span =
            i64::try_from(step_secs.saturating_mul(fixes.saturating_add(1))).unwrap_or(i64::MAX);
        let start = now
            .checked_sub_signed(TimeDelta::seconds(span))
            .unwrap_or(now);
        // Whole seconds: most protocols carry no fraction.
        let start = DateTime::from_timestamp(start.timestamp(), 0).unwrap_or(start);
        TrackClock {
            start,
            step: TimeDelta::seconds(step_secs as i64),
        }
    }
}

/// A wearer's walk.
#[derive(Debug, Clone)]
pub struct Walker {
    zone: Zone,
    rng: StdRng,
    /// Position east and north of the centre, metres.
    east: f64,
    north: f64,
    /// Direction of travel, radians counter-clockwise from east.
    heading: f64,
    clock: TrackClock,
    index: u64,
    /// The fix at which a breaching wearer heads out, and the speed it leaves at.
    leave: Option<(u64, f64)>,
    planned: u64,
}

impl Walker {
    /// The walker of device `device`, seeded from `seed`; `breaching` wearers leave the zone a
    /// quarter of the way through `planned` fixes.
    pub fn new(
        zone: Zone,
        seed: u64,
        device: u64,
        clock: TrackClock,
        planned: u64,
        breaching: bool,
    ) -> Walker {
        let mut rng = StdRng::seed_from_u64(seed ^ device.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let r = 0.4 * zone.radius_m * rng.random::<f64>().sqrt();
        let angle = rng.random_range(0.0..std::f64::consts::TAU);
        let heading = rng.random_range(0.0..std::f64::consts::TAU);
        Walker {
            zone,
            rng,
            east: r * angle.cos(),
            north: r * angle.sin(),
            heading,
            clock,
            index: 0,
            leave: breaching.then_some((planned / 4, 0.0)),
            planned,
        }
    }

    fn radius(&self) -> f64 {
        self.east.hypot(self.north)
    }

    /// The next point of the track.
    pub fn next_point(&mut self) -> TrackPoint {
        let step_s = self.clock.step.num_seconds() as f64;
        let walk = WALK_SPEED.min(LONGEST_WALK_STEP * self.zone.radius_m / step_s);
        let inner = INNER_SHARE * self.zone.radius_m;
        let outer = self.zone.radius_m + self.zone.margin();
        let r = self.radius();
        let outward = self.north.atan2(self.east);
        let speed = match self.leave {
            Some((at, ref mut speed)) if self.index >= at => {
                if *speed == 0.0 {
                    // Out past the margin by half-way through the run, at a believable speed.
                    let steps = (self.planned / 4).max(1) as f64;
                    *speed =
                        ((outer - r + 1.0) / (steps * step_s)).clamp(WALK_SPEED, MAX_LEAVE_SPEED);
                }
                let speed = *speed;
                if r < outer {
                    self.heading = outward;
                    speed
                } else {
                    // Wander between the margin and twice it.
                    self.heading += self.rng.random_range(-0.5..0.5);
                    if r > outer + self.zone.margin() {
                        self.heading = outward + std::f64::consts::PI;
                    }
                    walk
                }
            }
            _ => {
                self.heading += self.rng.random_range(-0.5..0.5);
                if r > inner {
                    self.heading =
                        outward + std::f64::consts::PI + self.rng.random_range(-0.3..0.3);
                }
                WALK_SPEED
            }
        };
        if self.index > 0 {
            self.east += speed * step_s * self.heading.cos();
            self.north += speed * step_s * self.heading.sin();
        }
        let lat = self.zone.lat + self.north / METRES_PER_DEGREE;
        let lon =
            self.zone.lon + self.east / (METRES_PER_DEGREE * self.zone.lat.to_radians().cos());
        let time =
            self.clock.start + self.clock.step * (self.index.min(u64::from(u32::MAX)) as i32);
        self.index += 1;
        TrackPoint {
            time,
            lat,
            lon,
            speed_kmh: speed * 3.6,
            course: (90.0 - self.heading.to_degrees()).rem_euclid(360.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ZONE: Zone = Zone {
        lat: 25.515,
        lon: 112.3625,
        radius_m: 500.0,
    };

    const TWO_FIXES_30_S: Confirmation = Confirmation {
        fixes: 2,
        seconds: 30,
    };

    fn clock() -> TrackClock {
        TrackClock::for_run(
            40,
            Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap(),
            TWO_FIXES_30_S,
        )
    }

    #[test]
    fn the_clock_ends_before_now_in_whole_seconds() {
        let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
        let c = TrackClock::for_run(40, now, TWO_FIXES_30_S);
        assert_eq!(c.step, TimeDelta::seconds(10));
        assert_eq!(c.start + c.step * 40, now - TimeDelta::seconds(10));
        let long = TrackClock::for_run(10_000_000, now, TWO_FIXES_30_S);
        assert_eq!(long.step, TimeDelta::seconds(1));
        // Sixteen fixes and the default three-minute dwell: seven outside must span 270 s.
        let dwell = Confirmation {
            fixes: 2,
            seconds: 180,
        };
        let short = TrackClock::for_run(16, now, dwell);
        assert_eq!(short.step, TimeDelta::seconds(39));
        assert!(short.step * 6 >= TimeDelta::seconds(180));
    }

    #[test]
    fn inside_walkers_stay_well_inside_and_breachers_leave_by_half_way() {
        for device in 0..50 {
            let mut inside = Walker::new(ZONE, 7, device, clock(), 40, false);
            for _ in 0..400 {
                let p = inside.next_point();
                assert!(ZONE.distance_m(p.lat, p.lon) < 0.7 * ZONE.radius_m);
                assert!(p.speed_kmh < 30.0);
            }
            let mut out = Walker::new(ZONE, 7, device, clock(), 40, true);
            let points: Vec<TrackPoint> = (0..40).map(|_| out.next_point()).collect();
            assert!(points[..10]
                .iter()
                .all(|p| ZONE.distance_m(p.lat, p.lon) < ZONE.radius_m));
            assert!(points[20..]
                .iter()
                .all(|p| ZONE.distance_m(p.lat, p.lon) > ZONE.radius_m + 90.0));
            // Consecutive fixes never imply more than the departure speed.
            for pair in points.windows(2) {
                let metres = ZONE.distance_m(pair[1].lat, pair[1].lon)
                    - ZONE.distance_m(pair[0].lat, pair[0].lon);
                assert!(metres.abs() <= MAX_LEAVE_SPEED * 10.0 + 1e-6);
                assert_eq!(pair[1].time - pair[0].time, TimeDelta::seconds(10));
            }
        }
    }
}
