//! A stand-in for the scheduler's RRULE parsers (`scheduler::rrule_from_text`/`_object`,
//! branch `sched`) until they are merged: the same signatures, the checks in words; deleted then.

use serde_json::Value;

const FREQS: [&str; 7] = [
    "SECONDLY", "MINUTELY", "HOURLY", "DAILY", "WEEKLY", "MONTHLY", "YEARLY",
];

fn range(part: &str, v: i64) -> Option<(i64, i64)> {
    let r = match part {
        "BYSECOND" => (0, 59),
        "BYMINUTE" => (0, 59),
        "BYHOUR" => (0, 23),
        "BYMONTH" => (1, 12),
        "BYMONTHDAY" => (-31, 31),
        "BYSETPOS" => (-366, 366),
        "INTERVAL" | "COUNT" => (1, i64::MAX),
        _ => return None,
    };
    (!(r.0..=r.1).contains(&v) || (v == 0 && r.0 < 0)).then_some(r)
}

/// Checks RFC 5545 RRULE text (`FREQ=DAILY;BYHOUR=1`).
pub fn rrule_from_text(text: &str) -> Result<String, String> {
    let mut freq = None;
    for part in text.trim().trim_start_matches("RRULE:").split(';') {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("\"{part}\" is not NAME=VALUE"))?;
        let k = k.to_ascii_uppercase();
        match k.as_str() {
            "FREQ" => {
                if !FREQS.contains(&v) {
                    return Err(format!("freq must be one of {}", FREQS.join(", ")));
                }
                freq = Some(v);
            }
            "BYDAY" | "UNTIL" | "WKST" => {}
            _ => {
                for n in v.split(',') {
                    let n: i64 = n
                        .parse()
                        .map_err(|_| format!("{} \"{n}\" is not a number", k.to_lowercase()))?;
                    if let Some((lo, hi)) = range(&k, n) {
                        return Err(format!(
                            "{} {n} is out of range {lo}-{hi}",
                            k.to_lowercase()
                        ));
                    }
                }
            }
        }
    }
    freq.map(|_| text.trim().to_string())
        .ok_or_else(|| "freq is required".to_string())
}

/// The seed's recurrence_rule object as RFC 5545 text.
pub fn rrule_from_object(o: &Value) -> Result<String, String> {
    let o = o.as_object().ok_or("the rule must be an object")?;
    let mut parts = Vec::new();
    let freq = o
        .get("freq")
        .and_then(Value::as_str)
        .ok_or("freq is required")?;
    parts.push(format!("FREQ={freq}"));
    for (k, v) in o {
        let name = k.to_ascii_uppercase();
        match v {
            Value::Array(a) => {
                let items: Vec<String> = a
                    .iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect();
                parts.push(format!("{name}={}", items.join(",")));
            }
            Value::Number(n) if k != "dtstart" => parts.push(format!("{name}={n}")),
            _ => {}
        }
    }
    let text = parts.join(";");
    rrule_from_text(&text)
}
