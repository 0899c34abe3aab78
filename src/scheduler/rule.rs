//! Recurrence rules (RFC 5545 RRULE) for schedules: checked and evaluated with the `rrule`
//! crate, and built from the npm.backup seed's recurrence_rule object.

use rrule::{RRule, RRuleSet, Unvalidated};

/// A checked recurrence rule: its RRULE and, when given, its DTSTART.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The `DTSTART…` line as given ("DTSTART:20260101T010000Z"), if any.
    pub dtstart: Option<String>,
    /// The rule parts, "FREQ=DAILY;BYHOUR=1".
    pub rrule: String,
}

/// The frequencies RFC 5545 knows, in its order.
const FREQS: &[&str] = &[
    "SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY",
];

/// Splits rule text into its DTSTART line and RRULE parts. Accepted: "FREQ=…", "RRULE:FREQ=…",
/// and either with a "DTSTART…" line before it (newline or space separated).
fn split(text: &str) -> Result<(Option<String>, String), String> {
    let mut dtstart = None;
    let mut rrule = None;
    for part in text
        .split(['\n', '\r', ' '])
        .filter(|p| !p.trim().is_empty())
    {
        let p = part.trim();
        let upper = p.to_ascii_uppercase();
        if upper.starts_with("DTSTART") {
            dtstart = Some(p.to_string());
        } else if let Some(r) = upper.strip_prefix("RRULE:") {
            rrule = Some(p[p.len() - r.len()..].to_string());
        } else if upper.starts_with("FREQ=") || upper.contains("FREQ=") {
            rrule = Some(p.to_string());
        } else {
            return Err(format!(
                "{p:?} is neither a DTSTART nor an RRULE (\"FREQ=DAILY;BYHOUR=1\")"
            ));
        }
    }
    match rrule {
        Some(r) => Ok((dtstart, r)),
        None if text.trim().is_empty() => Err("the rule is empty: give FREQ=…".into()),
        None => Err("the rule has no FREQ=…".into()),
    }
}

/// Checks RFC 5545 rule text ("FREQ=DAILY;BYHOUR=1;BYMINUTE=0", optionally after a DTSTART
/// line); errors say what is wrong in words.
pub fn rrule_from_text(text: &str) -> Result<Rule, String> {
    let (dtstart, rrule) = split(text)?;
    let freq = rrule
        .split(';')
        .find_map(|p| {
            p.split_once('=')
                .filter(|(k, _)| k.eq_ignore_ascii_case("FREQ"))
        })
        .map(|(_, v)| v.to_ascii_uppercase());
    match freq {
        Some(f) if FREQS.contains(&f.as_str()) => {}
        Some(f) => {
            return Err(format!(
                "freq must be one of {}, not {f:?}",
                FREQS.join(", ")
            ))
        }
        None => return Err("the rule has no FREQ=…".into()),
    }
    let set = build(&dtstart, &rrule, 0)?;
    drop(set);
    Ok(Rule { dtstart, rrule })
}

/// The set of `rule` anchored at its DTSTART, else at 00:00 UTC of the day of `at`.
fn build(dtstart: &Option<String>, rrule: &str, at: u64) -> Result<RRuleSet, String> {
    let start = match dtstart {
        Some(d) => d.clone(),
        None => {
            let day = at - at % 86_400;
            let t = chrono::DateTime::from_timestamp(day as i64, 0)
                .ok_or_else(|| format!("time {at} is out of range"))?;
            format!("DTSTART:{}", t.format("%Y%m%dT%H%M%SZ"))
        }
    };
    let text = format!("{start}\nRRULE:{rrule}");
    text.parse::<RRuleSet>()
        .map_err(|e| words(&e.to_string()))?;
    // parse the rule alone too: its errors name the part
    let r: RRule<Unvalidated> = rrule
        .parse()
        .map_err(|e: rrule::RRuleError| words(&e.to_string()))?;
    drop(r);
    text.parse::<RRuleSet>().map_err(|e| words(&e.to_string()))
}

fn words(e: &str) -> String {
    format!("invalid recurrence rule: {e}")
}

/// The first time of `rrule_text` strictly after `after` (seconds since the epoch); none when
/// the rule has ended (COUNT, UNTIL) or is invalid. Without DTSTART the rule is anchored at
/// 00:00 UTC of `after`'s day.
pub fn next_after(rrule_text: &str, after: u64) -> Option<u64> {
    let rule = rrule_from_text(rrule_text).ok()?;
    let set = build(&rule.dtstart, &rule.rrule, after).ok()?;
    // bounded: a SECONDLY rule from 00:00 meets at most a day of times
    for (i, t) in set.into_iter().enumerate() {
        let ts = t.timestamp();
        if ts > after as i64 {
            return u64::try_from(ts).ok();
        }
        if i > 400_000 {
            break;
        }
    }
    None
}

/// Builds RFC 5545 text from the seed's recurrence_rule object (freq, interval, byday,
/// byhour, byminute, bysecond, bymonth, bymonthday, bysetpos, count, until, dtstart (epoch),
/// timezone); errors in words ("byhour 25 is out of range 0-23").
pub fn rrule_from_object(v: &serde_json::Value) -> Result<String, String> {
    let obj = v.as_object().ok_or("recurrence_rule must be an object")?;
    for k in obj.keys() {
        if ![
            "freq",
            "interval",
            "byday",
            "byhour",
            "byminute",
            "bysecond",
            "bymonth",
            "bymonthday",
            "bysetpos",
            "count",
            "until",
            "dtstart",
            "timezone",
        ]
        .contains(&k.as_str())
        {
            return Err(format!("recurrence_rule has no field {k:?}"));
        }
    }
    let freq = obj
        .get("freq")
        .and_then(|f| f.as_str())
        .map(str::to_ascii_uppercase)
        .ok_or_else(|| format!("freq must be one of {}", FREQS.join(", ")))?;
    if !FREQS.contains(&freq.as_str()) {
        return Err(format!(
            "freq must be one of {}, not {freq:?}",
            FREQS.join(", ")
        ));
    }
    let mut parts = vec![format!("FREQ={freq}")];
    let ints = |key: &str, lo: i64, hi: i64, zero_ok: bool| -> Result<Vec<i64>, String> {
        let vals: Vec<&serde_json::Value> = match obj.get(key) {
            None | Some(serde_json::Value::Null) => return Ok(Vec::new()),
            Some(serde_json::Value::Array(a)) => a.iter().collect(),
            Some(one) => vec![one],
        };
        let mut out = Vec::new();
        for x in vals {
            let n = x
                .as_i64()
                .ok_or_else(|| format!("{key} must be a number or a list of numbers"))?;
            if n < lo || n > hi || (!zero_ok && n == 0) {
                let range = if zero_ok {
                    format!("{lo}-{hi}")
                } else {
                    format!("{lo}-{hi}, not 0")
                };
                return Err(format!("{key} {n} is out of range {range}"));
            }
            out.push(n);
        }
        Ok(out)
    };
    let join = |v: Vec<i64>| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some(i) = ints("interval", 1, 65_535, true)?.first() {
        parts.push(format!("INTERVAL={i}"));
    }
    if let Some(c) = ints("count", 1, u32::MAX as i64, true)?.first() {
        parts.push(format!("COUNT={c}"));
    }
    for (key, name, lo, hi, zero) in [
        ("bymonth", "BYMONTH", 1, 12, true),
        ("bymonthday", "BYMONTHDAY", -31, 31, false),
        ("byhour", "BYHOUR", 0, 23, true),
        ("byminute", "BYMINUTE", 0, 59, true),
        ("bysecond", "BYSECOND", 0, 59, true),
        ("bysetpos", "BYSETPOS", -366, 366, false),
    ] {
        let v = ints(key, lo, hi, zero)?;
        if !v.is_empty() {
            parts.push(format!("{name}={}", join(v)));
        }
    }
    match obj.get("byday") {
        None | Some(serde_json::Value::Null) => {}
        Some(d) => {
            let days: Vec<String> = match d {
                serde_json::Value::String(s) => s.split(',').map(str::to_string).collect(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<_>>()
                    .ok_or("byday must be a list of days (\"MO\", \"-1FR\")")?,
                _ => return Err("byday must be a list of days (\"MO\", \"-1FR\")".into()),
            };
            for day in &days {
                let d = day.trim().to_ascii_uppercase();
                let name =
                    d.trim_start_matches(|c: char| c == '+' || c == '-' || c.is_ascii_digit());
                if !["MO", "TU", "WE", "TH", "FR", "SA", "SU"].contains(&name) {
                    return Err(format!(
                        "byday {day:?} is not a day: MO, TU, WE, TH, FR, SA or SU, optionally after a number (\"-1FR\")"
                    ));
                }
            }
            if !days.is_empty() {
                parts.push(format!("BYDAY={}", days.join(",").to_ascii_uppercase()));
            }
        }
    }
    let epoch = |key: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, String> {
        match obj.get(key) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(x) => x
                .as_i64()
                .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
                .map(Some)
                .ok_or_else(|| format!("{key} must be seconds since the epoch")),
        }
    };
    if let Some(u) = epoch("until")? {
        parts.push(format!("UNTIL={}", u.format("%Y%m%dT%H%M%SZ")));
    }
    let tz = match obj.get("timezone") {
        None | Some(serde_json::Value::Null) => None,
        Some(t) => {
            let name = t
                .as_str()
                .ok_or("timezone must be a name like \"Europe/Paris\"")?;
            let tz: chrono_tz::Tz = name
                .parse()
                .map_err(|_| format!("timezone {name:?} is not a known time zone name"))?;
            Some(tz)
        }
    };
    let rule = parts.join(";");
    let text = match (epoch("dtstart")?, tz) {
        (None, None) => rule,
        (Some(d), None) => format!("DTSTART:{}\nRRULE:{rule}", d.format("%Y%m%dT%H%M%SZ")),
        (d, Some(tz)) => {
            let d = d.unwrap_or_else(|| {
                let now = crate::catalog::now();
                chrono::DateTime::from_timestamp((now - now % 86_400) as i64, 0).unwrap_or_default()
            });
            let local = d.with_timezone(&tz);
            format!(
                "DTSTART;TZID={}:{}\nRRULE:{rule}",
                tz.name(),
                local.format("%Y%m%dT%H%M%S")
            )
        }
    };
    rrule_from_text(&text)?;
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_rules_checked_in_words() {
        assert!(rrule_from_text("FREQ=DAILY;BYHOUR=1;BYMINUTE=0").is_ok());
        assert!(
            rrule_from_text("DTSTART:20260101T000000Z\nRRULE:FREQ=SECONDLY;INTERVAL=4").is_ok()
        );
        let e = rrule_from_text("FREQ=FORTNIGHTLY").unwrap_err();
        assert!(
            e.starts_with("freq must be one of SECONDLY, MINUTELY"),
            "{e}"
        );
        let e = rrule_from_text("FREQ=DAILY;BYHOUR=25").unwrap_err();
        assert!(e.contains("25"), "{e}");
        assert!(rrule_from_text("").unwrap_err().contains("empty"));
        assert!(rrule_from_text("hello").unwrap_err().contains("neither"));
    }

    #[test]
    fn next_times() {
        // 2026-12-07 01:13:41 UTC
        let t = 1_796_606_021;
        assert_eq!(next_after("FREQ=SECONDLY;INTERVAL=4", t), Some(t + 3));
        let next = next_after("FREQ=DAILY;BYHOUR=1;BYMINUTE=0;BYSECOND=0", t).unwrap();
        assert_eq!(next, t - t % 86_400 + 86_400 + 3600);
        assert_eq!(
            next_after("DTSTART:20200101T000000Z\nRRULE:FREQ=DAILY;COUNT=2", t),
            None
        );
    }

    #[test]
    fn objects_become_text_or_words() {
        let t = rrule_from_object(&json!({"freq": "daily", "byhour": [1], "byminute": 0})).unwrap();
        assert_eq!(t, "FREQ=DAILY;BYHOUR=1;BYMINUTE=0");
        let t =
            rrule_from_object(&json!({"freq": "WEEKLY", "byday": ["MO", "-1FR"], "dtstart": 0}))
                .unwrap();
        assert_eq!(
            t,
            "DTSTART:19700101T000000Z\nRRULE:FREQ=WEEKLY;BYDAY=MO,-1FR"
        );
        assert_eq!(
            rrule_from_object(&json!({"freq": "DAILY", "byhour": 25})).unwrap_err(),
            "byhour 25 is out of range 0-23"
        );
        assert!(rrule_from_object(&json!({"freq": "sometimes"}))
            .unwrap_err()
            .starts_with("freq must be one of SECONDLY"));
        assert!(
            rrule_from_object(&json!({"freq": "DAILY", "timezone": "Mars/Olympus"}))
                .unwrap_err()
                .contains("not a known time zone")
        );
        let t =
            rrule_from_object(&json!({"freq": "DAILY", "dtstart": 0, "timezone": "Europe/Paris"}))
                .unwrap();
        assert_eq!(
            t,
            "DTSTART;TZID=Europe/Paris:19700101T010000\nRRULE:FREQ=DAILY"
        );
    }
}
