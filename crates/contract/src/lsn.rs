//! PostgreSQL WAL positions (`pg_lsn`): `X/Y`, two hexadecimal 32-bit halves.

/// `0/3000060` → bytes; `None` when the text is not an LSN.
pub fn parse(text: &str) -> Option<u64> {
    let (hi, lo) = text.trim().split_once('/')?;
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// bytes → `0/3000060` (PostgreSQL's own form: upper-case, no leading zeros).
pub fn format(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// An LSN as `serde` text (`"0/5000A28"`), for documents that store positions as strings.
pub mod text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(lsn: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*lsn))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not an LSN (like 0/5000A28)"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(parse("1/5000A28"), Some((1 << 32) | 0x5000A28));
        assert_eq!(parse(" 0/0 "), Some(0));
        assert_eq!(format((1 << 32) | 0x5000A28), "1/5000A28");
        assert_eq!(format(0x5000A28), "0/5000A28");
        for bad in ["nope", "0/", "/1", "1/2/3", "g/1", "100000000/0"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
    }
}

/// An optional LSN as `serde` text; absent or null is `None`.
pub mod opt_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(lsn: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match lsn {
            Some(l) => s.serialize_str(&super::format(*l)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(text) => super::parse(&text).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!("{text:?} is not an LSN (like 0/5000A28)"))
            }),
        }
    }
}
