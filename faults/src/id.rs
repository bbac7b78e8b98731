//! Injection ids: the one name shared by a journal file and the nftables chains.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Longest accepted id; keeps `<id>-out` well inside nftables' chain-name limit.
pub const MAX_ID_LEN: usize = 40;

/// A validated injection id: `[a-z0-9-]{1,40}`, starting with a letter or digit.
///
/// The id is used verbatim as a file name and inside chain names, so validation is the
/// only thing standing between input and the file system / ruleset; it is enforced on
/// construction and on deserialisation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InjectionId(String);

impl InjectionId {
    /// Validates `id`.
    pub fn new(id: impl Into<String>) -> Result<Self> {
        let id = id.into();
        let reason = if id.is_empty() {
            Some("must not be empty")
        } else if id.len() > MAX_ID_LEN {
            Some("longer than 40 characters")
        } else if !id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            Some("only a-z, 0-9 and '-' are allowed")
        } else if id.starts_with('-') {
            Some("must start with a letter or digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(Error::InvalidId { id, reason }),
            None => Ok(Self(id)),
        }
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InjectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for InjectionId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        Self::new(s)
    }
}

impl From<InjectionId> for String {
    fn from(id: InjectionId) -> String {
        id.0
    }
}

impl std::str::FromStr for InjectionId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_valid_ids() {
        for ok in ["a", "0", "exp-1-partition", &"a".repeat(40)] {
            assert_eq!(InjectionId::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_invalid_ids() {
        for bad in [
            "",
            "-a",
            "A",
            "a_b",
            "a.b",
            "a/b",
            "../x",
            "a b",
            "é",
            &"a".repeat(41),
        ] {
            let err = InjectionId::new(bad).unwrap_err();
            assert_eq!(err.category(), "invalid_id", "{bad:?}");
        }
    }

    #[test]
    fn deserialisation_validates() {
        assert!(serde_json::from_str::<InjectionId>("\"ok-1\"").is_ok());
        assert!(serde_json::from_str::<InjectionId>("\"../../etc\"").is_err());
    }
}
