//! Validated room names and producer ids.

use std::fmt;

/// Longest accepted room name.
pub const MAX_ROOM_LEN: usize = 64;
/// Longest accepted producer id.
pub const MAX_PRODUCER_LEN: usize = 128;

/// A room name: `[a-z0-9-]{1,64}`. The name becomes a NATS subject token, so
/// dots, wildcards and whitespace must never get through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

/// Why a room name or producer id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("room name must be 1-{MAX_ROOM_LEN} characters of [a-z0-9-], got {0:?}")]
    BadRoom(String),
    #[error("producer id must be 1-{MAX_PRODUCER_LEN} characters of [A-Za-z0-9._:-], got {0:?}")]
    BadProducer(String),
}

impl RoomName {
    /// Validates `raw` as a room name.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let ok = !raw.is_empty()
            && raw.len() <= MAX_ROOM_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(NameError::BadRoom(truncate(raw)))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Validates a producer id (it goes into the `Nats-Msg-Id` header).
pub fn validate_producer(raw: &str) -> Result<(), NameError> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_PRODUCER_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(NameError::BadProducer(truncate(raw)))
    }
}

// Error messages echo the input; keep them short when the input is huge.
fn truncate(raw: &str) -> String {
    raw.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names() {
        assert!(RoomName::parse("general").is_ok());
        assert!(RoomName::parse("room-42").is_ok());
        assert!(RoomName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "Room", "a.b", "a*", ">", "a b", "ä", &"a".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn producer_ids() {
        assert!(validate_producer("run1-p3").is_ok());
        assert!(validate_producer("").is_err());
        assert!(validate_producer("a b").is_err());
        assert!(validate_producer(&"p".repeat(129)).is_err());
    }
}
