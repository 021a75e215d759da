//! Datum conversion for zones drawn on maps published in China.
//!
//! Role in the pipeline: zone GeoJSON arriving through the API or the `ewall fence` CLI may be
//! drawn in GCJ-02 (the offset datum of every map published in mainland China: Amap, Tencent,
//! Google's China tiles) or in BD-09 (Baidu's further offset of GCJ-02). GPS fixes are WGS-84, so
//! [`ZoneSpec`](super::ZoneSpec) converts every vertex to WGS-84 once, when the zone is parsed; nothing on
//! the per-fix path converts anything. Fixes are never converted here.
//!
//! In: longitude/latitude degrees in one datum. Out: longitude/latitude degrees in another.
//! Plain functions of two `f64`s, no state, no allocation.
//!
//! # How the conversions work
//!
//! * **WGS-84 → GCJ-02** is the published forward transform: a smooth offset of a few hundred
//!   metres, expressed in metres by two polynomial-plus-sine series in `(lon − 105, lat − 35)`, then
//!   turned into degrees with the radii of curvature of the Krasovsky 1940 ellipsoid. Outside a
//!   rough box around China ([`in_china`]) GCJ-02 is WGS-84 and nothing is done.
//! * **GCJ-02 → WGS-84** has no closed form. Because the offset changes by well under a part in
//!   10⁴ per metre, the map `w ↦ forward(w) − w` is a strong contraction, so the fixed-point
//!   iteration `w ← w − (forward(w) − g)` started at `w = g` converges to machine precision in a
//!   handful of steps. We stop when a step is below 10⁻¹⁰ degree (about 0.01 mm) or after
//!   [`MAX_ITERATIONS`]; the result reproduces the input under the forward transform to better
//!   than a millimetre, far below the boundary's own drawing error.
//! * **BD-09 ↔ GCJ-02** is a small rotation and scaling about the origin plus a fixed shift of
//!   (0.0065°, 0.006°). The forward direction (GCJ-02 → BD-09) is exact; the reverse is solved with
//!   the same fixed-point iteration. The BD-09 step is applied everywhere (it is defined
//!   everywhere); the GCJ-02 step only inside [`in_china`].
//!
//! Whether a coordinate is "in China" is decided on the coordinate given, with the same rough
//! box every published implementation uses; it includes some of the neighbouring countries, which
//! is what the map providers do too.

/// Semi-major axis of the Krasovsky 1940 ellipsoid, metres, as the GCJ-02 transform uses it.
const KRASOVSKY_A: f64 = 6_378_245.0;
/// First eccentricity squared of the Krasovsky 1940 ellipsoid.
const KRASOVSKY_E2: f64 = 0.006_693_421_622_965_943;
/// Fixed shift BD-09 adds after its rotation, degrees of longitude.
const BD_SHIFT_LON: f64 = 0.0065;
/// Fixed shift BD-09 adds after its rotation, degrees of latitude.
const BD_SHIFT_LAT: f64 = 0.006;
/// The angular frequency, per degree, of BD-09's small ripple (3000 per radian).
const BD_RIPPLE: f64 = std::f64::consts::PI * 3000.0 / 180.0;
/// Stop iterating an inverse when a step is smaller than this, degrees (about 0.01 mm).
const STEP_TOLERANCE_DEG: f64 = 1e-10;
/// Upper bound on the iterations of an inverse; convergence takes 3–5 in practice.
pub const MAX_ITERATIONS: usize = 20;

/// Whether a coordinate lies in the rough box inside which GCJ-02 differs from WGS-84.
///
/// The box (longitude 72.004°–137.8347°, latitude 0.8293°–55.8271°) is the conventional one;
/// outside it GCJ-02 coordinates are WGS-84 coordinates.
pub fn in_china(lon: f64, lat: f64) -> bool {
    (72.004..=137.8347).contains(&lon) && (0.8293..=55.8271).contains(&lat)
}

/// GCJ-02 offset in metres (east, north) at a WGS-84 position, from the published series.
fn gcj_offset_m(lon: f64, lat: f64) -> (f64, f64) {
    use std::f64::consts::PI;
    let x = lon - 105.0;
    let y = lat - 35.0;
    // Terms shared by both directions: two fast ripples in longitude.
    let ripple_x = (20.0 * (6.0 * x * PI).sin() + 20.0 * (2.0 * x * PI).sin()) * 2.0 / 3.0;
    let north = -100.0
        + 2.0 * x
        + 3.0 * y
        + 0.2 * y * y
        + 0.1 * x * y
        + 0.2 * x.abs().sqrt()
        + ripple_x
        + (20.0 * (y * PI).sin() + 40.0 * (y / 3.0 * PI).sin()) * 2.0 / 3.0
        + (160.0 * (y / 12.0 * PI).sin() + 320.0 * (y * PI / 30.0).sin()) * 2.0 / 3.0;
    let east = 300.0
        + x
        + 2.0 * y
        + 0.1 * x * x
        + 0.1 * x * y
        + 0.1 * x.abs().sqrt()
        + ripple_x
        + (20.0 * (x * PI).sin() + 40.0 * (x / 3.0 * PI).sin()) * 2.0 / 3.0
        + (150.0 * (x / 12.0 * PI).sin() + 300.0 * (x / 30.0 * PI).sin()) * 2.0 / 3.0;
    (east, north)
}

/// The forward transform without the "in China" test (the inverse iterates on it).
fn wgs84_to_gcj02_unchecked(lon: f64, lat: f64) -> (f64, f64) {
    let (east, north) = gcj_offset_m(lon, lat);
    let phi = lat.to_radians();
    let w = 1.0 - KRASOVSKY_E2 * phi.sin() * phi.sin();
    // Meridional and prime-vertical radii of curvature of the Krasovsky ellipsoid.
    let meridional = KRASOVSKY_A * (1.0 - KRASOVSKY_E2) / (w * w.sqrt());
    let prime_vertical = KRASOVSKY_A / w.sqrt();
    let dlat = (north / meridional).to_degrees();
    let dlon = (east / (prime_vertical * phi.cos())).to_degrees();
    (lon + dlon, lat + dlat)
}

/// Converts WGS-84 to GCJ-02 (the published forward transform).
///
/// Outside [`in_china`] the coordinate is returned unchanged.
pub fn wgs84_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    if in_china(lon, lat) {
        wgs84_to_gcj02_unchecked(lon, lat)
    } else {
        (lon, lat)
    }
}

/// Solves `forward(w) = target` by the fixed-point iteration `w ← w − (forward(w) − target)`.
fn invert(
    forward: impl Fn(f64, f64) -> (f64, f64),
    start: (f64, f64),
    target: (f64, f64),
) -> (f64, f64) {
    let (mut lon, mut lat) = start;
    for _ in 0..MAX_ITERATIONS {
        let (f_lon, f_lat) = forward(lon, lat);
        let (d_lon, d_lat) = (f_lon - target.0, f_lat - target.1);
        lon -= d_lon;
        lat -= d_lat;
        if !(d_lon.abs() > STEP_TOLERANCE_DEG || d_lat.abs() > STEP_TOLERANCE_DEG) {
            break;
        }
    }
    (lon, lat)
}

/// Converts GCJ-02 to WGS-84 by iterating the forward transform (to about 0.01 mm).
///
/// Outside [`in_china`] (tested on the GCJ-02 coordinate) the coordinate is returned unchanged.
/// Non-finite input comes back non-finite; callers validate before converting.
pub fn gcj02_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    if !in_china(lon, lat) {
        return (lon, lat);
    }
    invert(wgs84_to_gcj02_unchecked, (lon, lat), (lon, lat))
}

/// Converts GCJ-02 to BD-09 (exact; the transform Baidu publishes).
pub fn gcj02_to_bd09(lon: f64, lat: f64) -> (f64, f64) {
    let r = lon.hypot(lat) + 0.000_02 * (lat * BD_RIPPLE).sin();
    let theta = lat.atan2(lon) + 0.000_003 * (lon * BD_RIPPLE).cos();
    (
        r * theta.cos() + BD_SHIFT_LON,
        r * theta.sin() + BD_SHIFT_LAT,
    )
}

/// Converts BD-09 to GCJ-02 (iterative inverse of [`gcj02_to_bd09`], to about 0.01 mm).
pub fn bd09_to_gcj02(lon: f64, lat: f64) -> (f64, f64) {
    // Undo the shift, the ripple and the rotation approximately, then polish by iteration.
    let (x, y) = (lon - BD_SHIFT_LON, lat - BD_SHIFT_LAT);
    let r = x.hypot(y) - 0.000_02 * (y * BD_RIPPLE).sin();
    let theta = y.atan2(x) - 0.000_003 * (x * BD_RIPPLE).cos();
    invert(
        gcj02_to_bd09,
        (r * theta.cos(), r * theta.sin()),
        (lon, lat),
    )
}

/// Converts BD-09 to WGS-84 (BD-09 → GCJ-02 → WGS-84).
pub fn bd09_to_wgs84(lon: f64, lat: f64) -> (f64, f64) {
    let (lon, lat) = bd09_to_gcj02(lon, lat);
    gcj02_to_wgs84(lon, lat)
}

/// Converts WGS-84 to BD-09 (WGS-84 → GCJ-02 → BD-09).
pub fn wgs84_to_bd09(lon: f64, lat: f64) -> (f64, f64) {
    let (lon, lat) = wgs84_to_gcj02(lon, lat);
    gcj02_to_bd09(lon, lat)
}

/// Converts a coordinate in `crs` to WGS-84.
pub fn to_wgs84(crs: crate::model::Crs, lon: f64, lat: f64) -> (f64, f64) {
    use crate::model::Crs;
    match crs {
        Crs::Wgs84 => (lon, lat),
        Crs::Gcj02 => gcj02_to_wgs84(lon, lat),
        Crs::Bd09 => bd09_to_wgs84(lon, lat),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fence::geodesy::haversine_m;
    use crate::model::Crs;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    /// `(input lon, lat)`, then the expected WGS-84 → GCJ-02, GCJ-02 → WGS-84, GCJ-02 → BD-09,
    /// BD-09 → GCJ-02 and BD-09 → WGS-84 results for that input. Reference values computed
    /// independently with the public-domain `prcoords` 1.0.2 Python package (its iterative
    /// "bored" inverses). Places: Beijing, Jiahe, Shanghai, Shenzhen, Harbin, a Jiahe boundary
    /// vertex, Urumqi, Sanya.
    #[allow(clippy::type_complexity)]
    const REFERENCE: [(
        (f64, f64),
        (f64, f64),
        (f64, f64),
        (f64, f64),
        (f64, f64),
        (f64, f64),
    ); 8] = [
        (
            (116.404, 39.915),
            (116.41024449916938, 39.91640428150164),
            (116.3977557546871, 39.91359623568433),
            (116.41036949371029, 39.92133699351021),
            (116.39762708837266, 39.9086563391393),
            (116.39138589077658, 39.90725503854449),
        ),
        (
            (112.37, 25.58),
            (112.3755021109403, 25.577253071715162),
            (112.36450532297202, 25.582755317093245),
            (112.37658334687221, 25.585711898547135),
            (112.36343715324477, 25.574215070594537),
            (112.35795314501595, 25.57697776089706),
        ),
        (
            (121.4737, 31.2304),
            (121.47822305927693, 31.22845773757727),
            (121.46916226346737, 31.232329239140196),
            (121.48023740342614, 31.236334819793708),
            (121.46719518120446, 31.224341912984464),
            (121.46263818312832, 31.22625741461774),
        ),
        (
            (114.0579, 22.5431),
            (114.06301399856547, 22.54038281422246),
            (114.05279233428674, 22.545826497020524),
            (114.06445203727846, 22.548756891768786),
            (114.0513573552333, 22.537411303772114),
            (114.04625989995814, 22.540151753143785),
        ),
        (
            (126.65, 45.75),
            (126.65598759031859, 45.75196555514378),
            (126.64402768309048, 45.74804395629051),
            (126.65663767192991, 45.75567774834113),
            (126.64339349924202, 45.744238634555984),
            (126.63743726208799, 45.742291259333044),
        ),
        (
            (112.420645, 25.435506),
            (112.426149384848, 25.432818647423492),
            (112.41513604344226, 25.43819011295919),
            (112.42710008915809, 25.441683368005325),
            (112.41417177952285, 25.429435240386056),
            (112.40866001782277, 25.432115138306255),
        ),
        (
            (87.6, 43.8),
            (87.60283897227161, 43.80121203029208),
            (87.59716115824617, 43.79878744825191),
            (87.6063685996058, 43.80626279980289),
            (87.5936298856916, 43.793754576149624),
            (87.59078978414195, 43.792537619664266),
        ),
        (
            (109.5, 18.25),
            (109.50411844404833, 18.248331520999667),
            (109.49586953958524, 18.25165657573007),
            (109.50656461345142, 18.255673143878155),
            (109.49344404710729, 18.244308582840322),
            (109.48929503994448, 18.245943435852908),
        ),
    ];

    fn metres(a: (f64, f64), b: (f64, f64)) -> f64 {
        haversine_m(a.0, a.1, b.0, b.1)
    }

    #[test]
    fn matches_reference_coordinate_pairs() {
        for (input, to_gcj, to_wgs, to_bd, bd_to_gcj, bd_to_wgs) in REFERENCE {
            let (lon, lat) = input;
            // The forward transforms are closed forms: agreement to rounding.
            assert!(metres(wgs84_to_gcj02(lon, lat), to_gcj) < 1e-6, "{input:?}");
            assert!(metres(gcj02_to_bd09(lon, lat), to_bd) < 1e-6, "{input:?}");
            // The inverses are iterative on both sides, and the reference stops iterating at
            // about a centimetre (ours round-trips to well under a millimetre, tested below).
            assert!(metres(gcj02_to_wgs84(lon, lat), to_wgs) < 0.01, "{input:?}");
            assert!(
                metres(bd09_to_gcj02(lon, lat), bd_to_gcj) < 0.01,
                "{input:?}"
            );
            assert!(
                metres(bd09_to_wgs84(lon, lat), bd_to_wgs) < 0.01,
                "{input:?}"
            );
            assert_eq!(to_wgs84(Crs::Gcj02, lon, lat), gcj02_to_wgs84(lon, lat));
            assert_eq!(to_wgs84(Crs::Bd09, lon, lat), bd09_to_wgs84(lon, lat));
            assert_eq!(to_wgs84(Crs::Wgs84, lon, lat), (lon, lat));
            // The offsets are the size every map user in China knows: a few hundred metres.
            let shift = metres(input, to_gcj);
            assert!((100.0..900.0).contains(&shift), "{input:?}: {shift}");
        }
    }

    #[test]
    fn outside_china_gcj02_is_wgs84() {
        for (lon, lat) in [(2.35, 48.85), (-74.0, 40.7), (139.7, 35.7), (151.2, -33.9)] {
            assert_eq!(wgs84_to_gcj02(lon, lat), (lon, lat));
            assert_eq!(gcj02_to_wgs84(lon, lat), (lon, lat));
            assert!(!in_china(lon, lat));
        }
        assert!(in_china(112.4, 25.6));
    }

    #[test]
    fn round_trips_to_well_under_a_millimetre() {
        let mut runner = TestRunner::new_with_rng(
            Config {
                cases: 2_000,
                ..Config::default()
            },
            TestRng::from_seed(RngAlgorithm::ChaCha, &[42; 32]),
        );
        runner
            .run(&(73.0f64..135.0, 4.0f64..53.0), |(lon, lat)| {
                let (glon, glat) = wgs84_to_gcj02(lon, lat);
                let back = gcj02_to_wgs84(glon, glat);
                prop_assert!(metres(back, (lon, lat)) < 1e-3, "{:?}", back);
                let (blon, blat) = wgs84_to_bd09(lon, lat);
                let back = bd09_to_wgs84(blon, blat);
                prop_assert!(metres(back, (lon, lat)) < 1e-3, "{:?}", back);
                Ok(())
            })
            .expect("round trip");
    }
}
