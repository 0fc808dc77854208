//! Timestamps without a date library: RFC 3339 formatting of Unix milliseconds, and a check
//! that a client-given timestamp is an ISO 8601 date-time (as Python's `isoformat()` writes it,
//! with or without an offset).

/// Formats Unix milliseconds as RFC 3339 in UTC with millisecond precision:
/// `2024-05-01T12:34:56.789Z`.
pub fn format_rfc3339_ms(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let millis = unix_ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Whether `s` is an ISO 8601 date-time: `YYYY-MM-DD(T| )HH:MM[:SS[.fraction]]` followed by
/// nothing, `Z`, or `±HH:MM` / `±HHMM`. Accepts RFC 3339 and Python's `isoformat()` output.
/// Fields are range-checked (month 1–12, day within the month, hour < 24, minute < 60,
/// second ≤ 60 for leap seconds).
pub fn is_iso8601_datetime(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        if part.iter().all(u8::is_ascii_digit) {
            std::str::from_utf8(part).ok()?.parse().ok()
        } else {
            None
        }
    };
    let (Some(year), Some(month), Some(day)) = (num(0, 4), num(5, 2), num(8, 2)) else {
        return false;
    };
    if b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || !matches!(b.get(10), Some(b'T' | b't' | b' '))
    {
        return false;
    }
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&month) || day == 0 || day > month_days[month as usize - 1] {
        return false;
    }
    let (Some(hour), Some(minute)) = (num(11, 2), num(14, 2)) else {
        return false;
    };
    if b.get(13) != Some(&b':') || hour > 23 || minute > 59 {
        return false;
    }
    let mut i = 16;
    if b.get(i) == Some(&b':') {
        match num(i + 1, 2) {
            Some(sec) if sec <= 60 => i += 3,
            _ => return false,
        }
        if matches!(b.get(i), Some(b'.' | b',')) {
            let start = i + 1;
            i = start;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return false;
            }
        }
    }
    match b.get(i) {
        None => true,
        Some(b'Z' | b'z') => i + 1 == b.len(),
        Some(b'+' | b'-') => {
            let rest = &s[i + 1..];
            let (hh, mm) = match rest.len() {
                5 if rest.as_bytes()[2] == b':' => (&rest[0..2], &rest[3..5]),
                4 => (&rest[0..2], &rest[2..4]),
                2 => (&rest[0..2], "00"),
                _ => return false,
            };
            let ok = |p: &str, max: u32| {
                p.bytes().all(|c| c.is_ascii_digit()) && p.parse::<u32>().is_ok_and(|v| v <= max)
            };
            ok(hh, 23) && ok(mm, 59)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            format_rfc3339_ms(1_714_566_896_789),
            "2024-05-01T12:34:56.789Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(format_rfc3339_ms(-1), "1969-12-31T23:59:59.999Z");
        assert!(is_iso8601_datetime(&format_rfc3339_ms(1_714_566_896_789)));
    }

    #[test]
    fn accepts_iso_datetimes() {
        for ok in [
            "2024-05-01T12:34:56Z",
            "2024-05-01T12:34:56.123456",
            "2024-05-01T12:34:56.1+02:00",
            "2024-05-01 12:34:56-0530",
            "2024-02-29T00:00",
            "2024-05-01T12:34:60Z",
        ] {
            assert!(is_iso8601_datetime(ok), "{ok}");
        }
        for bad in [
            "",
            "yesterday",
            "2024-05-01",
            "2023-02-29T00:00:00",
            "2024-13-01T00:00:00",
            "2024-05-01T24:00:00",
            "2024-05-01T12:34:56.",
            "2024-05-01T12:34:56Zjunk",
            "2024-05-01T12:34:56+25:00",
            "2024-05-01T12:34:56 ",
        ] {
            assert!(!is_iso8601_datetime(bad), "{bad}");
        }
    }
}
