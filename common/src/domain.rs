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

/// Money in integer minor units (cents) that a request carries: above 0 and at most
/// [`Money::MAX_MINOR`]. On the wire it is a JSON number in currency units with at most two
/// decimals (`12.5` is 1250); in the database it is always the integer. A wallet, which may be 0,
/// is a [`Balance`].
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
        units(self.0)
    }

    /// Parses a decimal such as `"100"`, `"0.5"` or `"12.34"` into a positive amount.
    pub fn parse_positive(text: &str) -> Result<Self, String> {
        const RULE: &str = "must be a number greater than 0 with at most 2 decimals";
        let minor = parse_minor(text).ok_or(RULE)?;
        if minor <= 0 {
            return Err(RULE.into());
        }
        if minor > Self::MAX_MINOR {
            return Err("must not exceed 1000000".into());
        }
        Ok(Self(minor))
    }
}

/// A non-negative decimal with at most two decimals and at most 12 integer digits (`"12.34"`), in
/// minor units; `None` for anything else (a sign, an exponent, a third decimal).
fn parse_minor(text: &str) -> Option<i64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !digits(int) || !digits(frac) || int.len() > 12 {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    if frac.len() > 2 {
        return None;
    }
    let int: i64 = int.parse().ok()?;
    let frac: i64 = format!("{frac:0<2}").parse().ok()?;
    Some(int * 100 + frac)
}

/// Minor units as currency units, the wire form of [`Money`] and [`Balance`].
fn units(minor: i64) -> f64 {
    minor as f64 / 100.0
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

/// What a wallet holds, in integer minor units: 0 or more, with no upper bound but the 12 integer
/// digits the wire form allows (a balance grows past what one request may carry). Its JSON is
/// [`Money`]'s, a number in currency units; only a request's amount must be above 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "serde_json::Number", into = "f64")]
pub struct Balance(i64);

impl Balance {
    pub const fn minor(self) -> i64 {
        self.0
    }
}

impl TryFrom<serde_json::Number> for Balance {
    type Error = &'static str;
    fn try_from(n: serde_json::Number) -> Result<Self, Self::Error> {
        parse_minor(&n.to_string())
            .map(Self)
            .ok_or("must be a number of at least 0 with at most 2 decimals")
    }
}

/// The database's `CHECK (wallet >= 0)` makes a negative one a corrupt row, not a balance.
impl TryFrom<i64> for Balance {
    type Error = &'static str;
    fn try_from(minor: i64) -> Result<Self, Self::Error> {
        if minor >= 0 {
            Ok(Self(minor))
        } else {
            Err("a balance must not be negative")
        }
    }
}

impl From<Balance> for f64 {
    fn from(b: Balance) -> Self {
        units(b.0)
    }
}

/// A catalog item's id: a positive integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct ItemId(i64);

impl ItemId {
    pub const fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for ItemId {
    type Error = &'static str;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        if value > 0 {
            Ok(Self(value))
        } else {
            Err("must be a positive integer")
        }
    }
}

impl From<ItemId> for i64 {
    fn from(id: ItemId) -> Self {
        id.0
    }
}

impl fmt::Display for ItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
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
    fn balances_may_be_zero_but_not_negative() {
        let balance = |json: &str| serde_json::from_str::<Balance>(json).map(Balance::minor);
        assert_eq!(balance("0").unwrap(), 0);
        assert_eq!(balance("150.25").unwrap(), 15_025);
        assert_eq!(
            balance("2000000").unwrap(),
            200_000_000,
            "above a request's maximum"
        );
        for bad in ["-1", "0.001", "\"5\""] {
            assert!(balance(bad).is_err(), "{bad} should be rejected");
        }
        assert!(Balance::try_from(-1).is_err());
        let zero = Balance::try_from(0).unwrap();
        assert_eq!(serde_json::to_string(&zero).unwrap(), "0.0");
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
