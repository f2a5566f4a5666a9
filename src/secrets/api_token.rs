//! API tokens (EN-5): made from 32 random bytes, shown once, kept only as
//! their SHA-256. A lookup by hash needs no constant-time comparison: the
//! caller controls the token, not the hash the index is searched with.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Every token starts with this, so it is recognisable in a leaked file or
/// a secret scanner, and a malformed header is told apart from a wrong one.
pub const PREFIX: &str = "pgw_";
const RANDOM_BYTES: usize = 32;
/// `PREFIX` plus 32 bytes in unpadded base64url.
pub const LEN: usize = PREFIX.len() + 43;

/// A new token and the hash to store.
pub fn generate() -> (SecretString, String) {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&token);
    (SecretString::from(token), hash)
}

/// The stored form of a token: lowercase hex SHA-256 of the whole token.
pub fn hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether `token` has the shape of one of ours (prefix, length, alphabet),
/// so a malformed value is refused without a database read.
pub fn well_formed(token: &str) -> bool {
    token.len() == LEN
        && token.starts_with(PREFIX)
        && token[PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token in an `Authorization` header value (`Bearer <token>`, the
/// scheme case-insensitive as RFC 9110 says), if it is well formed.
pub fn from_authorization(value: &str) -> Option<SecretString> {
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && well_formed(token))
        .then(|| SecretString::from(token.to_owned()))
}

/// Exposes the token for hashing only.
pub fn hash_secret(token: &SecretString) -> String {
    hash(token.expose_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_well_formed_and_distinct() {
        let (a, hash_a) = generate();
        let (b, _) = generate();
        assert!(well_formed(a.expose_secret()), "{}", a.expose_secret());
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(hash_a, hash(a.expose_secret()));
        assert_eq!(hash_a.len(), 64);
    }

    #[test]
    fn hash_is_sha256_hex() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn authorization_headers() {
        let (token, _) = generate();
        let token = token.expose_secret();
        for good in [
            format!("Bearer {token}"),
            format!("bearer {token}"),
            format!("  Bearer   {token} "),
        ] {
            let parsed = from_authorization(&good).map(|t| t.expose_secret().to_owned());
            assert_eq!(parsed.as_deref(), Some(token), "{good}");
        }
        for bad in [
            String::new(),
            "Bearer".to_owned(),
            "Bearer ".to_owned(),
            format!("Basic {token}"),
            format!("Bearer {token}x"),
            format!("Bearer {}", &token[1..]),
            format!("Bearer pgw_{}", "!".repeat(43)),
            format!("Bearer {token} extra"),
        ] {
            assert!(from_authorization(&bad).is_none(), "{bad:?}");
        }
    }
}
