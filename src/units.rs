//! Byte sizes as people write them (`10M`, `1.5G`, `1TiB`, `512k`, `1000000`): one parser for
//! every size flag of the CLI and every size in the config file.

/// Parses a byte count with an optional unit. `K M G T P` and `KiB MiB GiB TiB PiB` are powers
/// of 1024 (as tape and dd users mean `10M`); `KB MB GB TB PB` are powers of 1000; `B` or no
/// unit is bytes. Case does not matter; a fraction is allowed with a unit (`1.5G`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].replace('_', ""), t[split..].trim());
    let bad = || {
        format!(
            "'{text}' is not a size: give bytes with an optional unit, such as 10M, 1.5G, 1TiB \
             (K/M/G/T = 1024-based, KB/MB/GB/TB = 1000-based)"
        )
    };
    if num.is_empty() {
        return Err(bad());
    }
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "p" | "pib" => 1 << 50,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        _ => return Err(bad()),
    };
    if let Ok(n) = num.parse::<u64>() {
        return n
            .checked_mul(mult)
            .ok_or_else(|| format!("'{text}' is too large"));
    }
    let f: f64 = num.parse().map_err(|_| bad())?;
    let v = f * mult as f64;
    if mult == 1 || !v.is_finite() || v >= u64::MAX as f64 {
        return Err(if mult == 1 {
            bad()
        } else {
            format!("'{text}' is too large")
        });
    }
    Ok(v.round() as u64)
}

/// A size that fits in 32 bits (record sizes), with the same units as [`parse_size`].
pub fn parse_size_u32(text: &str) -> Result<u32, String> {
    let v = parse_size(text)?;
    u32::try_from(v).map_err(|_| format!("'{text}' is too large: at most 4 GiB - 1"))
}

/// Serde helper for config fields: a size as a number of bytes or a string with a unit, for
/// any unsigned field type (`u64`, `usize`, `u32`); a size the type cannot hold is an error.
pub mod serde_size {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Accepts `67108864` or `"64G"`.
    pub fn deserialize<'de, D, T>(d: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: TryFrom<u64>,
    {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Num(u64),
            Text(String),
        }
        let (v, text) = match Either::deserialize(d)? {
            Either::Num(n) => (n, n.to_string()),
            Either::Text(t) => (super::parse_size(&t).map_err(serde::de::Error::custom)?, t),
        };
        T::try_from(v).map_err(|_| serde::de::Error::custom(format!("'{text}' is too large")))
    }

    /// Writes the number of bytes.
    pub fn serialize<S, T>(v: &T, s: S) -> Result<S::Ok, S::Error>
    where
        S: Serializer,
        T: Copy + TryInto<u64>,
    {
        let n: u64 = (*v)
            .try_into()
            .map_err(|_| serde::ser::Error::custom("size beyond 64 bits"))?;
        s.serialize_u64(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("10M"), Ok(10 << 20));
        assert_eq!(parse_size("10m"), Ok(10 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("1TiB"), Ok(1 << 40));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("10MB"), Ok(10_000_000));
        assert_eq!(parse_size("1.5G"), Ok(3 << 29));
        assert_eq!(parse_size(" 64 GiB "), Ok(64 << 30));
        assert_eq!(parse_size("256B"), Ok(256));
        assert!(parse_size("").is_err());
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("1.5").is_err());
        assert!(parse_size("99999999P").is_err());
        assert_eq!(parse_size_u32("256k"), Ok(262144));
        assert!(parse_size_u32("4G").is_err());
    }

    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct Sizes {
        #[serde(with = "serde_size")]
        big: u64,
        #[serde(with = "serde_size")]
        mid: usize,
        #[serde(with = "serde_size")]
        small: u32,
    }

    #[test]
    fn config_sizes_in_any_unsigned_type() {
        let s: Sizes = toml::from_str("big = \"64G\"\nmid = \"256M\"\nsmall = 4096\n").unwrap();
        assert_eq!(
            s,
            Sizes {
                big: 64 << 30,
                mid: 256 << 20,
                small: 4096
            }
        );
        // written back as plain numbers, which read back the same
        let text = toml::to_string(&s).unwrap();
        assert!(text.contains("small = 4096"), "{text}");
        assert_eq!(toml::from_str::<Sizes>(&text).unwrap(), s);
        let e = toml::from_str::<Sizes>("big = 1\nmid = 1\nsmall = \"4G\"\n").unwrap_err();
        assert!(e.to_string().contains("'4G' is too large"), "{e}");
        let e = toml::from_str::<Sizes>("big = \"lots\"\nmid = 1\nsmall = 1\n").unwrap_err();
        assert!(e.to_string().contains("is not a size"), "{e}");
    }
}
