//! Exact money: integer micro-dollars, so totals equal the sum of their lines to the cent.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Mul};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MICROS_PER_DOLLAR: i64 = 1_000_000;

/// An amount of US dollars, held as whole micro-dollars.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Usd(i64);

impl Usd {
    pub const ZERO: Usd = Usd(0);

    pub const fn from_micros(micros: i64) -> Usd {
        Usd(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Half of the amount, rounded to the micro-dollar (Batch is half the standard rate).
    pub const fn half(self) -> Usd {
        Usd(self.0 / 2)
    }

    /// The amount as a JSON-friendly number of dollars. Only for output: never compute with it.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_DOLLAR as f64
    }

    pub fn saturating_sub(self, other: Usd) -> Usd {
        Usd(self.0.saturating_sub(other.0))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an amount of dollars (expected e.g. 12.50, at most 6 decimals)")]
pub struct ParseUsdError(String);

impl FromStr for Usd {
    type Err = ParseUsdError;

    fn from_str(text: &str) -> Result<Usd, ParseUsdError> {
        let err = || ParseUsdError(text.to_string());
        let trimmed = text.trim().trim_start_matches('$');
        let (negative, digits) = match trimmed.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && frac.is_empty()) || !all_digits(whole) || !all_digits(frac) {
            return Err(err());
        }
        if frac.len() > 6 {
            return Err(err());
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let frac_micros: i64 = format!("{frac:0<6}").parse().map_err(|_| err())?;
        let micros = whole
            .checked_mul(MICROS_PER_DOLLAR)
            .and_then(|m| m.checked_add(frac_micros))
            .ok_or_else(err)?;
        Ok(Usd(if negative { -micros } else { micros }))
    }
}

impl fmt::Display for Usd {
    /// Dollars with cents; sub-cent amounts keep their extra digits so nothing is hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let abs = self.0.unsigned_abs();
        let whole = abs / MICROS_PER_DOLLAR as u64;
        // Micro-dollars as six digits, less the trailing zeros past the cents (no allocation:
        // a plan's table formats a few hundred thousand amounts).
        let (mut frac, mut digits) = (abs % MICROS_PER_DOLLAR as u64, 6);
        while digits > 2 && frac % 10 == 0 {
            frac /= 10;
            digits -= 1;
        }
        write!(f, "{sign}${whole}.{frac:0digits$}")
    }
}

// Arithmetic saturates: prices and durations come from user catalogs, and a total that wrapped
// around to a small or negative number would slip under `--budget`. A saturated total is
// absurdly large and refused, which is the right answer.
impl Add for Usd {
    type Output = Usd;
    fn add(self, rhs: Usd) -> Usd {
        Usd(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign for Usd {
    fn add_assign(&mut self, rhs: Usd) {
        *self = *self + rhs;
    }
}

impl Mul<u32> for Usd {
    type Output = Usd;
    fn mul(self, rhs: u32) -> Usd {
        Usd(self.0.saturating_mul(i64::from(rhs)))
    }
}

impl Sum for Usd {
    fn sum<I: Iterator<Item = Usd>>(iter: I) -> Usd {
        iter.fold(Usd::ZERO, Add::add)
    }
}

/// Serialized as a decimal string ("0.05") so catalogs and JSON never round-trip through floats.
impl Serialize for Usd {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.to_string().trim_start_matches('$'))
    }
}

impl<'de> Deserialize<'de> for Usd {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Usd, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_decimal_dollars_exactly() {
        let cases = [
            ("0.05", 50_000),
            ("0.1", 100_000),
            ("12", 12_000_000),
            ("$3.50", 3_500_000),
            (".35", 350_000),
            ("0.000001", 1),
            ("-2.5", -2_500_000),
        ];
        for (text, micros) in cases {
            assert_eq!(text.parse::<Usd>().unwrap().micros(), micros, "{text}");
        }
    }

    #[test]
    fn rejects_what_is_not_money() {
        for text in ["", ".", "abc", "1.2.3", "1.0000001", "1e3", "--1"] {
            assert!(text.parse::<Usd>().is_err(), "{text}");
        }
    }

    #[test]
    fn displays_cents_and_keeps_sub_cent_digits() {
        assert_eq!(Usd::from_micros(50_000).to_string(), "$0.05");
        assert_eq!(Usd::from_micros(12_000_000).to_string(), "$12.00");
        assert_eq!(Usd::from_micros(1_234_500).to_string(), "$1.2345");
        assert_eq!(Usd::from_micros(-500_000).to_string(), "-$0.50");
        for (micros, text) in [
            (0, "$0.00"),
            (1, "$0.000001"),
            (10, "$0.00001"),
            (100_000, "$0.10"),
            (1_000_001, "$1.000001"),
            (-1, "-$0.000001"),
        ] {
            assert_eq!(Usd::from_micros(micros).to_string(), text);
        }
    }

    #[test]
    fn huge_amounts_saturate_instead_of_wrapping_under_a_budget() {
        let huge = Usd::from_micros(i64::MAX / 2) * 4;
        assert_eq!(huge, Usd::from_micros(i64::MAX));
        assert!(huge + huge > "1000000".parse().unwrap());
    }

    #[test]
    fn sums_without_drift() {
        let line = "0.05".parse::<Usd>().unwrap() * 4;
        let total: Usd = std::iter::repeat_n(line, 1_000_000).sum();
        assert_eq!(total.to_string(), "$200000.00");
    }
}
