//! Durations as people write them in manifests: Go's `time.ParseDuration` format restricted
//! to `h`, `m`, `s` and `ms`, so that Kubernetes CEL's `duration()` reads the same value the
//! engine does.

use std::{fmt, str::FromStr, time};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A non-negative duration such as `90s`, `5m`, `1h30m` or `250ms`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(time::Duration);

/// Why a duration string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a duration: {1} (write e.g. 30s, 5m, 1h30m or 250ms)")]
pub struct ParseDurationError(String, &'static str);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Self(time::Duration::from_secs(secs))
    }

    pub const fn from_millis(ms: u64) -> Self {
        Self(time::Duration::from_millis(ms))
    }

    pub const fn as_std(self) -> time::Duration {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    /// The same span as a chrono duration, saturating at chrono's limit.
    pub fn to_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::from_std(self.0).unwrap_or(chrono::TimeDelta::MAX)
    }
}

impl From<time::Duration> for Duration {
    fn from(d: time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |why| ParseDurationError(input.to_owned(), why);
        if input.is_empty() {
            return Err(fail("it is empty"));
        }
        if input.starts_with('-') {
            return Err(fail("it is negative"));
        }
        let mut total_ms: u128 = 0;
        let mut rest = input;
        while !rest.is_empty() {
            let number_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| fail("the last number has no unit"))?;
            if number_len == 0 {
                return Err(fail("expected a number"));
            }
            let (number, after) = rest.split_at(number_len);
            let unit_len = after
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(after.len());
            let (unit, after) = after.split_at(unit_len);
            let unit_ms: u128 = match unit {
                "h" => 3_600_000,
                "m" => 60_000,
                "s" => 1_000,
                "ms" => 1,
                _ => return Err(fail("units are h, m, s and ms")),
            };
            total_ms = total_ms
                .checked_add(parse_scaled(number, unit_ms).ok_or_else(|| fail("bad number"))?)
                .ok_or_else(|| fail("it is too large"))?;
            rest = after;
        }
        let ms = u64::try_from(total_ms).map_err(|_| fail("it is too large"))?;
        Ok(Self(time::Duration::from_millis(ms)))
    }
}

/// `number` (decimal, maybe fractional) times `unit_ms`, in whole milliseconds.
fn parse_scaled(number: &str, unit_ms: u128) -> Option<u128> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() || frac.contains('.') || whole.len() > 18 {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut ms = whole.checked_mul(unit_ms)?;
    // Fractions finer than a millisecond are dropped, as nothing here is that precise.
    let mut scale = unit_ms;
    for digit in frac.chars().take(9) {
        scale /= 10;
        ms = ms.checked_add(u128::from(digit.to_digit(10)?) * scale)?;
    }
    Some(ms)
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
        let (m, rest) = (rest / 60_000, rest % 60_000);
        let (s, ms) = (rest / 1_000, rest % 1_000);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        match (s, ms) {
            (0, 0) => Ok(()),
            (s, 0) => write!(f, "{s}s"),
            (0, ms) => write!(f, "{ms}ms"),
            (s, ms) => write!(f, "{s}.{ms:03}s"),
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^([0-9]+(\\.[0-9]+)?(h|m|s|ms))+$",
            "maxLength": 32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_go_style_durations() {
        let cases = [
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("250ms", 250),
            ("1.5s", 1_500),
            ("0s", 0),
        ];
        for (text, ms) in cases {
            assert_eq!(
                text.parse::<Duration>(),
                Ok(Duration::from_millis(ms)),
                "{text}"
            );
        }
    }

    #[test]
    fn refuses_what_go_or_cel_would_read_differently() {
        for bad in [
            "",
            "-5s",
            "10",
            "5d",
            "s",
            "1..5s",
            "5 s",
            "1e3s",
            "99999999999999999999h",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn display_round_trips() {
        for ms in [0, 1, 999, 1_000, 61_001, 3_600_000, 5_400_250] {
            let d = Duration::from_millis(ms);
            assert_eq!(d.to_string().parse::<Duration>(), Ok(d));
        }
    }
}
