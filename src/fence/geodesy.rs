//! Metres on the ground from longitude/latitude degrees, for the distances the fence decides on.
//!
//! Role in the pipeline: every "is this fix further than its accuracy radius from the boundary"
//! question is answered in metres. Distances to polygon boundaries are measured in a local
//! tangent plane around the fix; distances to circle centres on the WGS-84 ellipsoid
//! ([`ellipsoidal_distance_m`]).
//!
//! In: WGS-84 degrees. Out: metres. No state, no allocation.
//!
//! # Error bounds
//!
//! * [`LocalScale`] turns degree differences into metres with the WGS-84 ellipsoid's meridional
//!   and prime-vertical radii of curvature *at the fix's latitude* (an equirectangular projection
//!   centred on the fix). Using the ellipsoid instead of a sphere removes the up-to-0.5 % radius
//!   error; what is left comes from the meridians converging, which makes the east-west scale at
//!   the far end of a north-south offset Δφ differ by a factor of about `tan φ · Δφ`. For a
//!   distance `d` that is a relative error of at most about `tan φ · d / R` (R ≈ 6,371 km):
//!   below 0.02 % (0.2 m) for `d` = 1 km at 45° latitude, 0.2 % (20 m) for `d` = 10 km. The fence
//!   only ever compares a distance with an accuracy radius, so the error that matters is the one
//!   at `d` ≈ the radius: a few centimetres for GPS radii, well under a metre for a 2 km cell-tower
//!   radius. Latitudes beyond ±89.99° are clamped (zones near the poles are out of scope), and
//!   zones must not cross the antimeridian.
//! * [`ellipsoidal_distance_m`] (circle zones, device separation) is the same ellipsoidal scale
//!   taken at the *mid-latitude* of the two points. Centring the projection cancels the
//!   first-order convergence error; what remains is of second order, about
//!   `d · (Δλ · sin φ)² / 24`: a few centimetres on a 50 km circle at 30° latitude and below half
//!   a metre at 60° (the test holds it to Karney's geodesic within 0.1 m per km up to 50 km).
//! * [`haversine_m`] is the great-circle distance on a sphere of the mean Earth radius: within
//!   0.5 % of the ellipsoidal distance (0.3 % at 25–30° N: a fix 10 m outside a 5 km circle
//!   comes out 29 m outside), so nothing that decides a fence uses it.

/// WGS-84 semi-major axis, metres.
const WGS84_A: f64 = 6_378_137.0;
/// WGS-84 first eccentricity squared.
const WGS84_E2: f64 = 0.006_694_379_990_141_317;
/// Mean Earth radius (IUGG), metres, for haversine.
pub const EARTH_MEAN_RADIUS_M: f64 = 6_371_008.8;
/// The smallest metres-per-degree of latitude anywhere on the ellipsoid (at the equator).
pub const MIN_M_PER_DEG_LAT: f64 = 110_574.0;
/// Latitudes are clamped to this for scaling, so the east-west scale never reaches zero.
const MAX_SCALING_LAT: f64 = 89.99;

/// Metres per degree of longitude and latitude at one latitude (a local equirectangular
/// projection on the WGS-84 ellipsoid).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LocalScale {
    /// Metres per degree of longitude (east-west).
    pub m_per_deg_lon: f64,
    /// Metres per degree of latitude (north-south).
    pub m_per_deg_lat: f64,
}

impl LocalScale {
    /// The scale at latitude `lat` degrees (clamped to ±89.99°).
    pub fn at(lat: f64) -> LocalScale {
        let phi = lat.clamp(-MAX_SCALING_LAT, MAX_SCALING_LAT).to_radians();
        let s = phi.sin();
        let w = 1.0 - WGS84_E2 * s * s;
        let meridional = WGS84_A * (1.0 - WGS84_E2) / (w * w.sqrt());
        let prime_vertical = WGS84_A / w.sqrt();
        LocalScale {
            m_per_deg_lon: (prime_vertical * phi.cos()).to_radians(),
            m_per_deg_lat: meridional.to_radians(),
        }
    }

    /// The scale guaranteed not to overstate east-west metres anywhere between latitudes `lat_a`
    /// and `lat_b` (the scale at the latitude furthest from the equator).
    pub fn min_over(lat_a: f64, lat_b: f64) -> LocalScale {
        let worst = lat_a.abs().max(lat_b.abs());
        LocalScale {
            m_per_deg_lon: LocalScale::at(worst).m_per_deg_lon,
            m_per_deg_lat: MIN_M_PER_DEG_LAT,
        }
    }

    /// Half-widths in degrees (longitude, latitude) of a box holding every point within `m`
    /// metres under this scale.
    #[inline]
    pub fn degrees(&self, m: f64) -> (f64, f64) {
        (m / self.m_per_deg_lon, m / self.m_per_deg_lat)
    }

    /// Distance in metres from `(lon, lat)` to the segment `[ax, ay, bx, by]` (degrees).
    #[inline]
    pub fn distance_to_segment_m(&self, lon: f64, lat: f64, seg: &[f64; 4]) -> f64 {
        let ax = (seg[0] - lon) * self.m_per_deg_lon;
        let ay = (seg[1] - lat) * self.m_per_deg_lat;
        let dx = (seg[2] - seg[0]) * self.m_per_deg_lon;
        let dy = (seg[3] - seg[1]) * self.m_per_deg_lat;
        let len2 = dx * dx + dy * dy;
        // Parameter of the point on the segment closest to the origin (the fix).
        let t = if len2 > 0.0 {
            (-(ax * dx + ay * dy) / len2).clamp(0.0, 1.0)
        } else {
            0.0
        };
        (ax + t * dx).hypot(ay + t * dy)
    }

    /// Distance in metres from `(lon, lat)` to the rectangle `[min_x, min_y, max_x, max_y]`
    /// (0 inside it).
    #[inline]
    pub fn distance_to_rect_m(&self, lon: f64, lat: f64, rect: &[f64; 4]) -> f64 {
        let dx = (rect[0] - lon).max(lon - rect[2]).max(0.0) * self.m_per_deg_lon;
        let dy = (rect[1] - lat).max(lat - rect[3]).max(0.0) * self.m_per_deg_lat;
        dx.hypot(dy)
    }
}

/// Distance in metres between two WGS-84 positions on the ellipsoid, by the local scale at
/// their mid-latitude (see the module docs for the error bound). For distances up to tens of
/// kilometres, which is all a fence or a separation check asks.
pub fn ellipsoidal_distance_m(lon_a: f64, lat_a: f64, lon_b: f64, lat_b: f64) -> f64 {
    let scale = LocalScale::at((lat_a + lat_b) / 2.0);
    ((lon_b - lon_a) * scale.m_per_deg_lon).hypot((lat_b - lat_a) * scale.m_per_deg_lat)
}

/// Great-circle distance in metres between two WGS-84 positions (mean-radius sphere).
pub fn haversine_m(lon_a: f64, lat_a: f64, lon_b: f64, lat_b: f64) -> f64 {
    let (phi_a, phi_b) = (lat_a.to_radians(), lat_b.to_radians());
    let d_phi = phi_b - phi_a;
    let d_lambda = (lon_b - lon_a).to_radians();
    let h =
        (d_phi / 2.0).sin().powi(2) + phi_a.cos() * phi_b.cos() * (d_lambda / 2.0).sin().powi(2);
    2.0 * EARTH_MEAN_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// The smallest radius of curvature of the WGS-84 ellipsoid (the meridional one at the
/// equator), metres: an angle computed with it is never smaller than the real one.
const WGS84_MIN_RADIUS_M: f64 = 6_335_439.0;

/// The bounding box `[min_lon, min_lat, max_lon, max_lat]` of every point within `radius_m`
/// of a centre on the ellipsoid (computed on a sphere of the ellipsoid's smallest radius of
/// curvature, so it is never too small). Covers all longitudes when the circle reaches a pole.
pub fn circle_envelope(lon: f64, lat: f64, radius_m: f64) -> [f64; 4] {
    let angle = radius_m / WGS84_MIN_RADIUS_M;
    let d_lat = angle.to_degrees();
    let (min_lat, max_lat) = (lat - d_lat, lat + d_lat);
    if min_lat <= -90.0 || max_lat >= 90.0 {
        return [-180.0, min_lat.max(-90.0), 180.0, max_lat.min(90.0)];
    }
    // The meridian tangent to the circle: sin(Δλ) = sin(angle) / cos(φ).
    let ratio = angle.sin() / lat.to_radians().cos();
    let d_lon = if ratio >= 1.0 {
        180.0
    } else {
        ratio.asin().to_degrees()
    };
    // A hair of slack against rounding; the envelope is only ever a pre-filter.
    let slack = 1e-9;
    [
        lon - d_lon - slack,
        min_lat - slack,
        lon + d_lon + slack,
        max_lat + slack,
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_scale_matches_known_degree_lengths() {
        // Published lengths of a degree on the WGS-84 ellipsoid.
        let eq = LocalScale::at(0.0);
        assert!((eq.m_per_deg_lat - 110_574.3).abs() < 1.0, "{eq:?}");
        assert!((eq.m_per_deg_lon - 111_319.5).abs() < 1.0, "{eq:?}");
        let mid = LocalScale::at(45.0);
        assert!((mid.m_per_deg_lat - 111_132.0).abs() < 1.5, "{mid:?}");
        assert!((mid.m_per_deg_lon - 78_846.8).abs() < 1.0, "{mid:?}");
    }

    #[test]
    fn local_distance_agrees_with_haversine_within_the_documented_bound() {
        // Short distances in several directions at the latitude of the tracks (Paris) and of
        // the boundaries (Hunan): the two should agree to the sphere/ellipsoid difference.
        for &(lon, lat) in &[(2.44, 48.83), (112.4, 25.5)] {
            let scale = LocalScale::at(lat);
            for k in 0..16 {
                let bearing = f64::from(k) * std::f64::consts::PI / 8.0;
                let d = 1_000.0;
                let (dlon, dlat) = scale.degrees(d);
                let (qlon, qlat) = (lon + dlon * bearing.sin(), lat + dlat * bearing.cos());
                let local = scale.distance_to_segment_m(lon, lat, &[qlon, qlat, qlon, qlat]);
                let hav = haversine_m(lon, lat, qlon, qlat);
                assert!((local - d).abs() < 1e-6, "{local}");
                assert!((hav - d).abs() < 0.006 * d, "bearing {k}: {hav}");
            }
        }
    }

    #[test]
    fn circle_envelope_holds_the_circle() {
        let (lon, lat, r) = (112.4, 25.5, 5_000.0);
        let env = circle_envelope(lon, lat, r);
        for k in 0..360 {
            let b = f64::from(k).to_radians();
            // Walk out along bearing b until just inside the circle.
            let scale = LocalScale::at(lat);
            let (dlon, dlat) = scale.degrees(r * 0.999);
            let (qlon, qlat) = (lon + dlon * b.sin(), lat + dlat * b.cos());
            if haversine_m(lon, lat, qlon, qlat) <= r {
                assert!(qlon >= env[0] && qlon <= env[2] && qlat >= env[1] && qlat <= env[3]);
            }
        }
        let polar = circle_envelope(0.0, 89.99, 5_000.0);
        assert_eq!((polar[0], polar[2]), (-180.0, 180.0));
    }
}
