//! Authenticated encryption of stored secrets (GW-8, SY-4): AES-256-GCM under
//! the data directory's key, a fresh random nonce per value.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;

use crate::error::{AppError, AppResult};

/// Binds ciphertexts to their purpose, so one cannot be swapped for another.
const AAD_PASSWORD: &[u8] = b"presence-gateway/exchange-password/v1";
const AAD_CHECK: &[u8] = b"presence-gateway/key-check/v1";
const CHECK_PLAINTEXT: &[u8] = b"presence-gateway secrets key";
const NONCE_LEN: usize = 12;

#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(..)")
    }
}

pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl Cipher {
    pub fn new(key: &[u8]) -> AppResult<Self> {
        let aead = Aes256Gcm::new_from_slice(key)
            .map_err(|_| AppError::Config("the secrets key must be 32 bytes".to_owned()))?;
        Ok(Cipher { aead })
    }

    fn seal(&self, plaintext: &[u8], aad: &[u8]) -> AppResult<Sealed> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| AppError::Internal(anyhow::anyhow!("encryption failed")))?;
        Ok(Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        })
    }

    fn open(&self, nonce: &[u8], ciphertext: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if nonce.len() != NONCE_LEN {
            return None;
        }
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .ok()
    }

    pub fn seal_password(&self, password: &str) -> AppResult<Sealed> {
        self.seal(password.as_bytes(), AAD_PASSWORD)
    }

    pub fn open_password(&self, nonce: &[u8], ciphertext: &[u8]) -> AppResult<String> {
        let plain = self.open(nonce, ciphertext, AAD_PASSWORD).ok_or_else(|| {
            AppError::Config("a stored Exchange password does not decrypt with this key".to_owned())
        })?;
        String::from_utf8(plain)
            .map_err(|_| AppError::Config("a stored Exchange password is not UTF-8".to_owned()))
    }

    /// The key-check value stored with the database: nonce followed by ciphertext.
    pub fn key_check(&self) -> AppResult<Vec<u8>> {
        let sealed = self.seal(CHECK_PLAINTEXT, AAD_CHECK)?;
        Ok([sealed.nonce, sealed.ciphertext].concat())
    }

    pub fn matches_check(&self, check: &[u8]) -> bool {
        check.len() > NONCE_LEN
            && self
                .open(&check[..NONCE_LEN], &check[NONCE_LEN..], AAD_CHECK)
                .is_some_and(|p| p == CHECK_PLAINTEXT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper_detection() {
        let cipher = Cipher::new(&[7u8; 32]).unwrap();
        let sealed = cipher.seal_password("Pa55word!").unwrap();
        assert!(!sealed.ciphertext.windows(9).any(|w| w == b"Pa55word!"));
        assert_eq!(
            cipher
                .open_password(&sealed.nonce, &sealed.ciphertext)
                .unwrap(),
            "Pa55word!"
        );
        let mut tampered = sealed.ciphertext.clone();
        tampered[0] ^= 1;
        assert!(cipher.open_password(&sealed.nonce, &tampered).is_err());
        let other = Cipher::new(&[8u8; 32]).unwrap();
        assert!(
            other
                .open_password(&sealed.nonce, &sealed.ciphertext)
                .is_err()
        );
        // Same password, different nonce, different ciphertext.
        assert_ne!(
            cipher.seal_password("Pa55word!").unwrap().ciphertext,
            sealed.ciphertext
        );
    }

    #[test]
    fn key_check() {
        let cipher = Cipher::new(&[1u8; 32]).unwrap();
        let check = cipher.key_check().unwrap();
        assert!(cipher.matches_check(&check));
        assert!(!Cipher::new(&[2u8; 32]).unwrap().matches_check(&check));
        assert!(!cipher.matches_check(b"short"));
    }
}
