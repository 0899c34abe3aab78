//! How the operator commands show things: pretty JSON for `--json`, and sizes in binary
//! units for the tables of `ndmpd vtape`.

/// Prints `v` as pretty JSON (the `--json` of the operator commands).
pub fn print_json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    let text = serde_json::to_string_pretty(v).map_err(|e| format!("cannot format JSON: {e}"))?;
    println!("{text}");
    Ok(())
}

/// Bytes in binary units with one decimal ("1.5 KiB"), whole bytes below 1 KiB. Unlike
/// `client::query::human_bytes` it stops at TiB, as `vtape list` always has.
pub fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(10 << 30), "10.0 GiB");
        assert_eq!(human(2048 << 40), "2048.0 TiB");
    }
}
