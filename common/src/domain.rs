//! Newtypes for the values that cross service boundaries. Each parses (and so validates) once, at
//! the edge; code holding one may rely on it being well-formed.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What every validated string newtype `$name(String)` offers: `as_str`, `Display`, its `String`
/// back (for serde's `into = "String"`) and, given `$valid` (`fn(&str) -> Result<(), &str>`, the
/// refusal saying what a valid value looks like), its `TryFrom<String>` — the one way in.
#[macro_export]
macro_rules! string_newtype {
    ($name:ident, $valid:expr) => {
        $crate::string_newtype!($name);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                let valid: fn(&str) -> Result<(), &'static str> = $valid;
                valid(&value).map(|()| Self(value)).map_err(String::from)
            }
        }
    };
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> Self {
                value.0
            }
        }
    };
}

/// 3 to 32 characters from `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Username(String);
string_newtype!(Username, |value| {
    let ok_len = (3..=32).contains(&value.len());
    let ok_chars = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok_len && ok_chars {
        Ok(())
    } else {
        Err("must be 3 to 32 characters of letters, digits, '_', '.' or '-'")
    }
});

/// Money in integer minor units (cents). On the wire it is a JSON number in currency units with at
/// most two decimals (`12.5` is 1250); in the database it is always the integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Number", into = "f64")]
pub struct Money(i64);

impl Money {
    /// The largest amount a single request may carry: 1,000,000.00.
    pub const MAX_MINOR: i64 = 100_000_000;

    pub const fn from_minor(minor: i64) -> Self {
        Self(minor)
    }

    pub const fn minor(self) -> i64 {
        self.0
    }

    pub fn units(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// Parses a decimal such as `"100"`, `"0.5"` or `"12.34"` into a positive amount.
    pub fn parse_positive(text: &str) -> Result<Self, String> {
        const RULE: &str = "must be a number greater than 0 with at most 2 decimals";
        let (int, frac) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if int.is_empty() || !digits(int) || !digits(frac) || int.len() > 12 {
            return Err(RULE.into());
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 2 {
            return Err(RULE.into());
        }
        let int: i64 = int.parse().map_err(|_| RULE.to_string())?;
        let frac: i64 = format!("{frac:0<2}")
            .parse()
            .map_err(|_| RULE.to_string())?;
        let minor = int * 100 + frac;
        if minor <= 0 {
            return Err(RULE.into());
        }
        if minor > Self::MAX_MINOR {
            return Err("must not exceed 1000000".into());
        }
        Ok(Self(minor))
    }
}

impl TryFrom<serde_json::Number> for Money {
    type Error = String;
    fn try_from(n: serde_json::Number) -> Result<Self, Self::Error> {
        // serde_json prints an f64 in its shortest round-trip form, so "10.005" stays "10.005".
        Self::parse_positive(&n.to_string())
    }
}

/// Database values are minor units.
impl From<i64> for Money {
    fn from(minor: i64) -> Self {
        Self(minor)
    }
}

impl From<Money> for f64 {
    fn from(m: Money) -> Self {
        m.units()
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// A delivery slot, "HH:MM" on a 24-hour clock.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SlotTime(String);
string_newtype!(SlotTime, |value| {
    let b = value.as_bytes();
    let two = |i: usize| (b[i] - b'0') * 10 + (b[i + 1] - b'0');
    let well_formed =
        b.len() == 5 && b[2] == b':' && [0, 1, 3, 4].iter().all(|&i| b[i].is_ascii_digit());
    if well_formed && two(0) < 24 && two(3) < 60 {
        Ok(())
    } else {
        Err("must be a time \"HH:MM\" on a 24-hour clock")
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    fn money(json: &str) -> Result<Money, String> {
        serde_json::from_str::<Money>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn money_accepts_up_to_two_decimals() {
        assert_eq!(money("100").unwrap().minor(), 10_000);
        assert_eq!(money("100.0").unwrap().minor(), 10_000);
        assert_eq!(money("0.5").unwrap().minor(), 50);
        assert_eq!(money("12.34").unwrap().minor(), 1234);
        assert_eq!(money("0.01").unwrap().minor(), 1);
    }

    #[test]
    fn money_rejects_bad_amounts() {
        for bad in ["0", "-1", "10.005", "1e30", "0.001", "\"5\"", "100000000"] {
            assert!(money(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn money_serializes_as_units() {
        assert_eq!(
            serde_json::to_string(&Money::from_minor(10_000)).unwrap(),
            "100.0"
        );
        assert_eq!(Money::from_minor(1234).to_string(), "12.34");
    }

    #[test]
    fn slot_times() {
        for ok in ["00:00", "09:00", "23:59"] {
            assert!(SlotTime::try_from(ok.to_string()).is_ok(), "{ok}");
        }
        for bad in ["24:00", "9:00", "09:60", "0900", "ab:cd", ""] {
            assert!(SlotTime::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn usernames() {
        assert!(Username::try_from("alice_1.b-c".to_string()).is_ok());
        for bad in ["al", "a b c", "ünï", &"x".repeat(33)] {
            assert!(Username::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }
}
