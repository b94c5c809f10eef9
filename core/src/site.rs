//! Site ids: 16 random bytes naming one replica (one database file), shown as 32 hex digits.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The id of one replica.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteId(pub [u8; 16]);

impl SiteId {
    /// A fresh random site id.
    pub fn random() -> SiteId {
        SiteId(uuid::Uuid::new_v4().into_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Parse from exactly 16 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<SiteId> {
        let arr: [u8; 16] =
            bytes.try_into().map_err(|_| Error::invalid_argument(format!("a site id has 16 bytes, got {}", bytes.len())))?;
        Ok(SiteId(arr))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl FromStr for SiteId {
    type Err = Error;
    fn from_str(s: &str) -> Result<SiteId> {
        let bytes = hex::decode(s.trim()).map_err(|_| Error::invalid_argument(format!("site id {s:?} is not 32 hexadecimal digits")))?;
        SiteId::from_slice(&bytes)
    }
}

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SiteId({})", self.to_hex())
    }
}

/// A fresh UUIDv7 (time-ordered) string, the recommended primary key for synced tables.
pub fn uuid7() -> String {
    uuid::Uuid::now_v7().to_string()
}
