//! The one record codec: a schema-version byte, then bincode with frozen options.

use bincode::Options;
use serde::{de::DeserializeOwned, Serialize};

/// Version of the on-disk record encoding. Bump on any change to a persisted struct.
pub const SCHEMA_VERSION: u8 = 1;

/// Largest record decode will allocate for; a corrupt length prefix cannot exhaust memory.
const DECODE_LIMIT: u64 = 256 * 1024 * 1024;

/// Why a stored value could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("empty value")]
    Empty,
    #[error("record written by schema version {found}, this build reads version {SCHEMA_VERSION}: upgrade wfdb or remove the database")]
    UnknownVersion { found: u8 },
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

// bincode 1.3.3 is final; fixing the options in one function keeps the byte format stable if
// the crate is ever replaced (fixint `bincode::serialize` and varint `DefaultOptions` differ).
fn options() -> impl Options {
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .with_limit(DECODE_LIMIT)
        .reject_trailing_bytes()
}

/// Encodes a value with the schema-version prefix.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = vec![SCHEMA_VERSION];
    options()
        .serialize_into(&mut out, value)
        .map_err(|e| CodecError::Corrupt(e.to_string()))?;
    Ok(out)
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != SCHEMA_VERSION {
        return Err(CodecError::UnknownVersion { found: version });
    }
    options()
        .deserialize(body)
        .map_err(|e| CodecError::Corrupt(e.to_string()))
}

/// Decodes only the leading fields of a value written by [`encode`]: `T` must be a prefix of
/// the stored struct's fields, in order.
pub fn decode_prefix<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != SCHEMA_VERSION {
        return Err(CodecError::UnknownVersion { found: version });
    }
    bincode::DefaultOptions::new()
        .with_varint_encoding()
        .with_little_endian()
        .with_limit(DECODE_LIMIT)
        .allow_trailing_bytes()
        .deserialize(body)
        .map_err(|e| CodecError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_checks() {
        let v = (42u64, "x".to_string(), vec![1u8, 2]);
        let bytes = encode(&v).unwrap();
        assert_eq!(bytes[0], SCHEMA_VERSION);
        let back: (u64, String, Vec<u8>) = decode(&bytes).unwrap();
        assert_eq!(back, v);
        let mut future = bytes.clone();
        future[0] = 99;
        assert!(matches!(
            decode::<(u64, String, Vec<u8>)>(&future),
            Err(CodecError::UnknownVersion { found: 99 })
        ));
        assert!(matches!(decode::<u64>(&[]), Err(CodecError::Empty)));
        assert!(matches!(
            decode::<(u64, String)>(&[SCHEMA_VERSION, 1, 250, 255, 255]),
            Err(CodecError::Corrupt(_))
        ));
    }

    #[test]
    fn prefix_decodes_leading_fields() {
        let bytes = encode(&(7u64, "rest".to_string(), vec![1u8, 2, 3])).unwrap();
        let head: (u64,) = decode_prefix(&bytes).unwrap();
        assert_eq!(head, (7,));
    }

    #[test]
    fn huge_length_prefix_is_refused_not_allocated() {
        let bytes = [
            SCHEMA_VERSION,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0xff,
            0x7f,
        ];
        assert!(decode::<Vec<u8>>(&bytes).is_err());
    }
}
