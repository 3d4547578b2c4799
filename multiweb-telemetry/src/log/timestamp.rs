//! RFC 3339 timestamps in UTC, written without allocating.

use std::cell::Cell;
use std::time::{SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DDTHH:MM:SS.`
type Prefix = [u8; 20];

thread_local! {
    /// The prefix of the last second this thread wrote: lines come many per
    /// second, so the calendar arithmetic runs about once a second.
    static LAST_SECOND: Cell<(u64, Prefix)> = const { Cell::new((u64::MAX, [0; 20])) };
}

/// Appends `now` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (UTC, microseconds).
pub(crate) fn write_rfc3339(buf: &mut Vec<u8>, now: SystemTime) {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let prefix = LAST_SECOND
        .try_with(|last| {
            let (last_secs, cached) = last.get();
            if last_secs == secs {
                cached
            } else {
                let fresh = prefix(secs);
                last.set((secs, fresh));
                fresh
            }
        })
        .unwrap_or_else(|_| prefix(secs));
    buf.extend_from_slice(&prefix);
    write_digits(buf, u64::from(since_epoch.subsec_micros()), 6);
    buf.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for a time `secs` after the epoch.
fn prefix(secs: u64) -> Prefix {
    let mut buf = Vec::with_capacity(20);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let buf = &mut buf;
    write_digits(buf, u64::try_from(year).unwrap_or(0), 4);
    buf.push(b'-');
    write_digits(buf, u64::from(month), 2);
    buf.push(b'-');
    write_digits(buf, u64::from(day), 2);
    buf.push(b'T');
    write_digits(buf, rem / 3600, 2);
    buf.push(b':');
    write_digits(buf, rem / 60 % 60, 2);
    buf.push(b':');
    write_digits(buf, rem % 60, 2);
    buf.push(b'.');
    Prefix::try_from(buf.as_slice()).unwrap_or([b'0'; 20])
}

fn write_digits(buf: &mut Vec<u8>, mut value: u64, width: usize) {
    let start = buf.len();
    buf.resize(start + width, b'0');
    for slot in buf[start..].iter_mut().rev() {
        // `value % 10` is below 10, so the cast cannot truncate.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (value % 10) as u8;
        *slot = b'0' + digit;
        value /= 10;
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let month = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn format(secs: u64, micros: u32) -> String {
        let mut buf = Vec::new();
        let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(u64::from(micros));
        write_rfc3339(&mut buf, t);
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(format(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(format(951_782_400, 7), "2000-02-29T00:00:00.000007Z");
        assert_eq!(
            format(1_737_547_200, 123_456),
            "2025-01-22T12:00:00.123456Z"
        );
        assert_eq!(
            format(4_102_444_799, 999_999),
            "2099-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn the_cached_second_follows_the_clock() {
        // The same second twice (cached), the next, and back again.
        assert_eq!(format(1_737_547_200, 1), "2025-01-22T12:00:00.000001Z");
        assert_eq!(format(1_737_547_200, 2), "2025-01-22T12:00:00.000002Z");
        assert_eq!(format(1_737_547_201, 3), "2025-01-22T12:00:01.000003Z");
        assert_eq!(format(1_737_547_200, 4), "2025-01-22T12:00:00.000004Z");
        assert_eq!(format(0, 5), "1970-01-01T00:00:00.000005Z");
    }
}
