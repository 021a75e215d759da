use chrono::TimeZone;

use super::*;

fn window(text: &str) -> CheckinWindow {
    CheckinWindow::try_from(text.to_owned()).unwrap()
}

#[test]
fn check_in_windows_are_local_and_may_span_midnight() {
    let tz = Tz::Asia__Shanghai;
    let windows = [window("20:00-21:00"), window("23:30-00:30")];
    // 2026-03-01 12:00 in Shanghai (04:00 UTC): the evening window is next.
    let noon = Utc.with_ymd_and_hms(2026, 3, 1, 4, 0, 0).unwrap();
    let (open, close) = next_window(tz, &windows, noon, noon).unwrap();
    assert_eq!(open, Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap());
    assert_eq!(close, Utc.with_ymd_and_hms(2026, 3, 1, 13, 0, 0).unwrap());
    // After it closes, the one spanning midnight, closing the next day.
    let (open, close) = next_window(tz, &windows, close, noon).unwrap();
    assert_eq!(open, Utc.with_ymd_and_hms(2026, 3, 1, 15, 30, 0).unwrap());
    assert_eq!(close, Utc.with_ymd_and_hms(2026, 3, 1, 16, 30, 0).unwrap());
    // A window that opened before the person existed is not theirs.
    let late = Utc.with_ymd_and_hms(2026, 3, 1, 12, 30, 0).unwrap();
    let (open, _) = next_window(tz, &windows, late, late).unwrap();
    assert_eq!(open, Utc.with_ymd_and_hms(2026, 3, 1, 15, 30, 0).unwrap());
}

#[test]
fn windows_across_dst_changes_keep_their_local_times() {
    let tz = Tz::Europe__Berlin;
    let since = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    // 2026-03-29: clocks jump from 02:00 to 03:00; 02:00 does not exist and opens at 03:00.
    let windows = [window("02:00-04:00")];
    let evening = Utc.with_ymd_and_hms(2026, 3, 28, 20, 0, 0).unwrap();
    let (open, close) = next_window(tz, &windows, evening, since).unwrap();
    assert_eq!(open, Utc.with_ymd_and_hms(2026, 3, 29, 1, 0, 0).unwrap());
    assert_eq!(close, Utc.with_ymd_and_hms(2026, 3, 29, 2, 0, 0).unwrap());
    // 2026-10-25: 02:00-03:00 happens twice; the window opens at the first 02:00 (CEST).
    let windows = [window("02:00-02:30")];
    let evening = Utc.with_ymd_and_hms(2026, 10, 24, 20, 0, 0).unwrap();
    let (open, close) = next_window(tz, &windows, evening, since).unwrap();
    assert_eq!(open, Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).unwrap());
    assert_eq!(close, Utc.with_ymd_and_hms(2026, 10, 25, 0, 30, 0).unwrap());
    // A summer evening window is an hour earlier in UTC than a winter one.
    let windows = [window("20:00-21:00")];
    let (summer, _) = next_window(
        tz,
        &windows,
        Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap(),
        since,
    )
    .unwrap();
    assert_eq!(summer, Utc.with_ymd_and_hms(2026, 7, 1, 18, 0, 0).unwrap());
    let (winter, _) = next_window(
        tz,
        &windows,
        Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap(),
        since,
    )
    .unwrap();
    assert_eq!(winter, Utc.with_ymd_and_hms(2026, 12, 1, 19, 0, 0).unwrap());
}

#[test]
fn spans_read_as_lengths() {
    assert_eq!(span(5), "5s");
    assert_eq!(span(65), "1m 05s");
    assert_eq!(span(3_725), "1h 02m 05s");
}
