//! Kubernetes resource quantities: `250m`, `0.5`, `64Mi`, `1G`, `1e3`.
//!
//! Parsed exactly (no floats): a quantity is held as thousandths of a unit, rounded up, so that
//! `cpu: 250m` is 250 and `memory: 64Mi` is 67108864000.

use std::fmt;

/// A parsed quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    millis: i128,
}

/// Why a string is not a quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid quantity {input:?}: {reason} (expected a number with an optional suffix, like 250m, 0.5, 64Mi or 1G)"
)]
pub struct QuantityError {
    pub input: String,
    pub reason: &'static str,
}

impl Quantity {
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        let err = |reason| QuantityError {
            input: input.to_string(),
            reason,
        };
        let s = input.trim();
        if s.is_empty() {
            return Err(err("empty"));
        }
        let (negative, s) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let num_end = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(num_end);
        if number.is_empty() || number == "." {
            return Err(err("no number"));
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if frac_part.contains('.') {
            return Err(err("more than one decimal point"));
        }
        let digits = format!("{int_part}{frac_part}");
        if digits.len() > 30 {
            return Err(err("too many digits"));
        }
        let mantissa: i128 = digits.parse().map_err(|_| err("not a number"))?;
        let frac = i32::try_from(frac_part.len()).map_err(|_| err("too many digits"))?;

        // value = mantissa * 10^-frac * 2^bin * 10^dec ; millis = value * 1000
        let (bin, dec): (u32, i32) = match suffix {
            "" => (0, 0),
            "Ki" => (10, 0),
            "Mi" => (20, 0),
            "Gi" => (30, 0),
            "Ti" => (40, 0),
            "Pi" => (50, 0),
            "Ei" => (60, 0),
            "n" => (0, -9),
            "u" => (0, -6),
            "m" => (0, -3),
            "k" => (0, 3),
            "M" => (0, 6),
            "G" => (0, 9),
            "T" => (0, 12),
            "P" => (0, 15),
            "E" => (0, 18),
            s if s.starts_with(['e', 'E']) => {
                let exp: i32 = s[1..].parse().map_err(|_| err("bad exponent"))?;
                if !(-30..=30).contains(&exp) {
                    return Err(err("exponent out of range"));
                }
                (0, exp)
            }
            _ => return Err(err("unknown suffix")),
        };
        let scaled = mantissa
            .checked_mul(1i128 << bin)
            .ok_or_else(|| err("too large"))?;
        let exp10 = dec + 3 - frac;
        let millis = if exp10 >= 0 {
            10i128
                .checked_pow(exp10.unsigned_abs())
                .and_then(|p| scaled.checked_mul(p))
                .ok_or_else(|| err("too large"))?
        } else {
            let div = 10i128
                .checked_pow(exp10.unsigned_abs())
                .ok_or_else(|| err("too small"))?;
            (scaled + div - 1) / div
        };
        if millis > i128::from(i64::MAX) {
            return Err(err("too large"));
        }
        Ok(Self {
            millis: if negative { -millis } else { millis },
        })
    }

    pub fn from_millis(millis: i64) -> Self {
        Self {
            millis: i128::from(millis),
        }
    }

    pub fn from_value(value: i64) -> Self {
        Self {
            millis: i128::from(value) * 1000,
        }
    }

    /// Thousandths of a unit (millicores for cpu).
    pub fn millis(&self) -> i64 {
        i64::try_from(self.millis).unwrap_or(i64::MAX)
    }

    /// Whole units, rounded up (bytes for memory).
    pub fn value(&self) -> i64 {
        i64::try_from((self.millis + 999).div_euclid(1000)).unwrap_or(i64::MAX)
    }

    pub fn is_negative(&self) -> bool {
        self.millis < 0
    }
}

impl fmt::Display for Quantity {
    /// A canonical form: `250m`, `2`, `64Mi`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.millis % 1000 != 0 {
            return write!(f, "{}m", self.millis);
        }
        let v = self.millis / 1000;
        for (shift, suffix) in [
            (60, "Ei"),
            (50, "Pi"),
            (40, "Ti"),
            (30, "Gi"),
            (20, "Mi"),
            (10, "Ki"),
        ] {
            let unit = 1i128 << shift;
            if v != 0 && v % unit == 0 {
                return write!(f, "{}{suffix}", v / unit);
            }
        }
        write!(f, "{v}")
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn cpu_forms() {
        assert_eq!(q("250m").millis(), 250);
        assert_eq!(q("0.5").millis(), 500);
        assert_eq!(q("2").millis(), 2000);
        assert_eq!(q("1.5").millis(), 1500);
        assert_eq!(q("100u").millis(), 1, "rounded up to a millicore");
        assert_eq!(q("1e3").value(), 1000);
        assert_eq!(q("1E-3").millis(), 1);
    }

    #[test]
    fn memory_forms() {
        assert_eq!(q("64Mi").value(), 64 << 20);
        assert_eq!(q("1Gi").value(), 1 << 30);
        assert_eq!(q("1G").value(), 1_000_000_000);
        assert_eq!(q("128974848").value(), 128_974_848);
        assert_eq!(q("1.5Gi").value(), 3 << 29);
        assert_eq!(q("129e6").value(), 129_000_000);
        assert_eq!(q("123Mi").to_string(), "123Mi");
        assert_eq!(q("250m").to_string(), "250m");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "abc",
            "12Mb",
            "1..2",
            ".",
            "64 Mi",
            "1e",
            "1e99",
            "99999999999999999999999999999999Ei",
            "--1",
        ] {
            assert!(Quantity::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
