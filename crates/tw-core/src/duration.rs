//! Durations as people write them: `"30s"`, `"5m"`, `"1h 30m"` (humantime), or a whole number of
//! seconds (`60` or `"60"`). One reading for the file, `TOKENWARDEN_*` variables (which figment
//! turns into integers when they look like one) and command-line flags.
//!
//! In a config struct: `#[serde(with = "tw_core::duration")]`; for a flag:
//! `#[arg(value_parser = tw_core::duration::parse)]`.

use serde::Deserializer;
use serde::de::{self, Visitor};
use std::fmt;
use std::time::Duration;

/// What a duration looks like, for error messages.
const EXPECTED: &str =
    "a duration such as \"30s\", \"5m\" or \"1h 30m\", or a whole number of seconds";

/// A text that is not a duration; its message says what one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DurationError(String);

/// Parses `"30s"`, `"5m"`, `"1h 30m"` or a bare number of seconds (`"60"`).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().map(Duration::from_secs).map_err(|_| {
            DurationError(format!("`{text}` is too many seconds; expected {EXPECTED}"))
        });
    }
    humantime::parse_duration(text)
        .map_err(|e| DurationError(format!("`{text}` is not {EXPECTED} ({e})")))
}

/// The serde side of [`parse`]: a string, or a non-negative integer of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTED)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom(format!("`{v}` is negative; expected {EXPECTED}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_humantime_and_bare_seconds() {
        assert_eq!(parse("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h 30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse("60"), Ok(Duration::from_secs(60)));
        assert_eq!(parse(" 60 "), Ok(Duration::from_secs(60)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in [
            "",
            " ",
            "-5",
            "+5",
            "1.5",
            "5x",
            "s",
            "60 seconds ago",
            "６０",
            "0x10",
            "1e3",
            "99999999999999999999999",
        ] {
            let err = parse(bad).expect_err(bad);
            assert!(
                err.to_string().contains("whole number of seconds"),
                "{bad}: {err}"
            );
        }
    }
}
