//! Human durations for CLI flags: `500ms`, `10s`, `2m`, `1h`, `1m30s`, or bare seconds.
//!
//! The grammar is firedrill's own ([`firedrill_core::api::Duration`], the one manifests use),
//! with two allowances kept from talk's earlier parser: a bare number is seconds (`3`,
//! `1.5`), and whitespace is ignored (` 10 s `).

use std::time::Duration;

/// Parses `500ms`, `1.5s`, `2m`, `1h`, `1m30s` or a bare number of seconds. Resolution is
/// a millisecond.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let compact: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
    let bare_seconds =
        !compact.is_empty() && compact.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if bare_seconds {
        return format!("{compact}s")
            .parse::<firedrill_core::api::Duration>()
            .map(|d| d.as_std())
            .map_err(|_| format!("{:?} is not a number of seconds", raw.trim()));
    }
    compact
        .parse::<firedrill_core::api::Duration>()
        .map(|d| d.as_std())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn keeps_what_talk_accepted_before() {
        let cases = [
            ("1h", 3_600_000),
            ("0", 0),
            ("0s", 0),
            ("1.5", 1_500),
            (".5s", 500),
            ("2.", 2_000),
            (" 10s ", 10_000),
            ("10 s", 10_000),
            ("250 ms", 250),
            ("0.5m", 30_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text:?}"
            );
        }
    }

    #[test]
    fn reads_compound_durations_like_manifests() {
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::from_millis(3_723_004))
        );
    }

    #[test]
    fn errors_name_the_input_and_say_why() {
        for (text, why) in [
            ("soon", "expected a number"),
            ("-1s", "negative"),
            ("", "empty"),
            ("5d", "units are h, m, s and ms"),
            ("99999999999999999999h", "\"99999999999999999999h\""),
            ("1.2.3", "not a number of seconds"),
        ] {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(&format!("{:?}", text.trim())), "{err}");
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
