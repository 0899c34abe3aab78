//! UTC calendar times for people and for JSON, without a time crate: seconds since the epoch
//! as "YYYY-MM-DD HH:MM" (listings) or ISO 8601 "YYYY-MM-DDTHH:MM:SSZ" (the REST view).

/// (year, month, day, hour, minute, second) of `secs` since the epoch, UTC.
fn civil(secs: u64) -> (i64, u64, u64, u64, u64, u64) {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // civil-from-days, proleptic Gregorian
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u64;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u64;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// "YYYY-MM-DD HH:MM".
pub fn minutes(secs: u64) -> String {
    let (y, m, d, h, mi, _) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}")
}

/// "YYYY-MM-DDTHH:MM:SSZ".
pub fn iso8601(secs: u64) -> String {
    let (y, m, d, h, mi, s) = civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(minutes(0), "1970-01-01 00:00");
        assert_eq!(minutes(951_782_400), "2000-02-29 00:00");
        assert_eq!(minutes(1_795_453_551), "2026-11-23 17:05");
        assert_eq!(iso8601(1_795_453_551), "2026-11-23T17:05:51Z");
    }
}
