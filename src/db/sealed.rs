//! Block document data sealed at rest. Block documents hold credentials,
//! so their values go into the event log (and the read model rebuilt from
//! it) encrypted with AES-256-GCM, as Prefect encrypts them in its
//! database. The 256-bit key is made at first start and kept in the
//! `server_secret` table beside the log (never in an event), so a copy of
//! the log alone does not reveal secrets; back the two up together.
//!
//! A sealed value is the JSON string `sealed:v1:<base64(nonce ‖ ciphertext
//! ‖ tag)>`, with a fresh random 96-bit nonce per seal.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;

const PREFIX: &str = "sealed:v1:";

/// The key name in `server_secret`.
pub const KEY_NAME: &str = "block-data-key";

/// Why a value could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the block data key is not a 256-bit base64 key")]
    BadKey,
    #[error("sealed block data is malformed or was not sealed with this server's key")]
    Unopenable,
    #[error("no random bytes available")]
    Random,
}

/// The key block data is sealed with.
pub struct DataKey {
    key: LessSafeKey,
    random: SystemRandom,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new random key, as the base64 text stored in `server_secret`.
    pub fn generate() -> Result<String, SealError> {
        let mut bytes = [0u8; 32];
        SystemRandom::new().fill(&mut bytes).map_err(|_| SealError::Random)?;
        Ok(STANDARD.encode(bytes))
    }

    /// The key from its stored base64 text.
    pub fn from_stored(text: &str) -> Result<DataKey, SealError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SealError::BadKey)?;
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| SealError::BadKey)?;
        Ok(DataKey { key: LessSafeKey::new(unbound), random: SystemRandom::new() })
    }

    /// `value` as a sealed JSON string.
    pub fn seal(&self, value: &Value) -> Result<Value, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| SealError::Random)?;
        let mut buf = serde_json::to_vec(value).map_err(|_| SealError::Unopenable)?;
        self.key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf).map_err(|_| SealError::Unopenable)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&buf);
        Ok(Value::String(format!("{PREFIX}{}", STANDARD.encode(out))))
    }

    /// The value [`DataKey::seal`] sealed. A value that is not sealed (data
    /// written before sealing existed) is returned as it is.
    pub fn open(&self, stored: &Value) -> Result<Value, SealError> {
        let Some(text) = stored.as_str().and_then(|s| s.strip_prefix(PREFIX)) else {
            return Ok(stored.clone());
        };
        let mut bytes = STANDARD.decode(text).map_err(|_| SealError::Unopenable)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Unopenable);
        }
        let mut sealed = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Unopenable)?;
        let plain = self.key.open_in_place(nonce, Aad::empty(), &mut sealed).map_err(|_| SealError::Unopenable)?;
        serde_json::from_slice(plain).map_err(|_| SealError::Unopenable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key() -> DataKey {
        DataKey::from_stored(&DataKey::generate().unwrap()).unwrap()
    }

    #[test]
    fn sealed_data_opens_to_the_same_value_and_hides_it() {
        let key = key();
        let data = json!({"password": "hunter2", "n": [1, 2.5, null]});
        let sealed = key.seal(&data).unwrap();
        let text = sealed.as_str().unwrap();
        assert!(text.starts_with(PREFIX) && !text.contains("hunter2"));
        assert_eq!(key.open(&sealed).unwrap(), data);
        assert_ne!(key.seal(&data).unwrap(), sealed, "each seal has its own nonce");
    }

    #[test]
    fn another_key_or_a_changed_byte_cannot_open_it() {
        let sealed = key().seal(&json!({"a": 1})).unwrap();
        assert!(matches!(key().open(&sealed), Err(SealError::Unopenable)));
        let text = sealed.as_str().unwrap();
        let flipped = format!("{}{}", &text[..text.len() - 2], if text.ends_with("A=") { "B=" } else { "A=" });
        assert!(key().open(&Value::String(flipped)).is_err());
    }

    #[test]
    fn unsealed_values_pass_through_and_bad_keys_are_refused() {
        assert_eq!(key().open(&json!({"plain": true})).unwrap(), json!({"plain": true}));
        assert!(matches!(DataKey::from_stored("c2hvcnQ="), Err(SealError::BadKey)));
    }
}
