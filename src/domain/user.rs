//! User identities, roles and password rules.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};

/// A user ID as stored: trimmed, 1 to 64 characters of letters, digits and
/// `. _ - @`. Comparison in the store is case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserId(String);

impl UserId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.is_empty() {
            return Err("Enter a User ID.".to_owned());
        }
        if value.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "A User ID is at most {} characters long.",
                Self::MAX_LEN
            ));
        }
        if let Some(bad) = value
            .chars()
            .find(|c| !(c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | '@')))
        {
            return Err(format!(
                "A User ID may contain letters, digits and . _ - @ only, not {bad:?}."
            ));
        }
        Ok(UserId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The key sign-in throttling counts failures under: the user ID as typed,
/// trimmed and lower-cased, whether or not such a user exists (SY-3).
pub fn throttle_key(typed: &str) -> String {
    typed.trim().to_lowercase()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Admin,
    EndUser,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::EndUser => "end_user",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        match stored {
            "admin" => Some(Role::Admin),
            "end_user" => Some(Role::EndUser),
            _ => None,
        }
    }

    /// Where a user lands after signing in (SY-3).
    pub fn landing_path(self) -> &'static str {
        match self {
            Role::Admin => "/",
            Role::EndUser => "/user-options",
        }
    }
}

/// A new password that passes the policy: 8 to 256 characters, not only
/// spaces. Held as a secret so it is never logged.
#[derive(Debug, Clone)]
pub struct NewPassword(SecretString);

impl NewPassword {
    pub const MIN_LEN: usize = 8;
    pub const MAX_LEN: usize = 256;

    pub fn parse(password: &str, confirmation: &str) -> Result<Self, String> {
        let length = password.chars().count();
        if length < Self::MIN_LEN {
            return Err(format!(
                "The password must be at least {} characters long.",
                Self::MIN_LEN
            ));
        }
        if length > Self::MAX_LEN {
            return Err(format!(
                "The password must be at most {} characters long.",
                Self::MAX_LEN
            ));
        }
        if password.trim().is_empty() {
            return Err("The password cannot be only spaces.".to_owned());
        }
        if password != confirmation {
            return Err("The password and its confirmation do not match.".to_owned());
        }
        Ok(NewPassword(SecretString::from(password.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Where to go after signing in, if the `next` value is a path on this site.
/// Anything that could leave the origin (`//host`, `/\host`, a scheme) is
/// dropped, so a crafted link cannot turn sign-in into an open redirect.
pub fn safe_next(next: &str) -> Option<&str> {
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && !next.chars().any(|c| c.is_control() || c.is_whitespace())
        && next.len() <= 2048;
    ok.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids() {
        assert_eq!(UserId::parse("  admin ").unwrap().as_str(), "admin");
        assert!(UserId::parse("j.doe@example.com").is_ok());
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("   ").is_err());
        assert!(UserId::parse("a b").is_err());
        assert!(UserId::parse("a<b").is_err());
        assert!(UserId::parse(&"x".repeat(65)).is_err());
        assert!(UserId::parse(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn throttle_key_ignores_case_and_spaces() {
        assert_eq!(throttle_key(" Admin "), "admin");
    }

    #[test]
    fn passwords() {
        assert!(NewPassword::parse("short", "short").is_err());
        assert!(NewPassword::parse("        ", "        ").is_err());
        assert!(NewPassword::parse("long enough", "long enougH").is_err());
        assert!(NewPassword::parse("long enough", "long enough").is_ok());
        let long = "x".repeat(257);
        assert!(NewPassword::parse(&long, &long).is_err());
    }

    #[test]
    fn next_must_stay_on_site() {
        assert_eq!(safe_next("/system/nodes?x=1"), Some("/system/nodes?x=1"));
        assert_eq!(safe_next("//evil.example/"), None);
        assert_eq!(safe_next("/\\evil.example"), None);
        assert_eq!(safe_next("https://evil.example/"), None);
        assert_eq!(safe_next("javascript:alert(1)"), None);
        assert_eq!(safe_next("/a b"), None);
        assert_eq!(safe_next(""), None);
    }

    #[test]
    fn roles_land_where_they_belong() {
        assert_eq!(Role::parse("admin"), Some(Role::Admin));
        assert_eq!(
            Role::parse("end_user").map(Role::landing_path),
            Some("/user-options")
        );
        assert_eq!(Role::parse("root"), None);
    }
}
