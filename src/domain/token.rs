//! API tokens (EN-5): the administrator's label for one, parsed from the
//! form.

/// A token's *Name*: trimmed, 1 to 64 characters, printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.is_empty() {
            return Err("Enter a name that says who uses the token.".to_owned());
        }
        if value.chars().count() > Self::MAX_LEN {
            return Err(format!(
                "A name is at most {} characters long.",
                Self::MAX_LEN
            ));
        }
        if value.chars().any(char::is_control) {
            return Err("A name cannot contain control characters.".to_owned());
        }
        Ok(TokenName(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for TokenName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(
            TokenName::parse("  Presence server ").unwrap().as_str(),
            "Presence server"
        );
        assert!(TokenName::parse("   ").is_err());
        assert!(TokenName::parse(&"é".repeat(64)).is_ok());
        assert!(TokenName::parse(&"é".repeat(65)).is_err());
        assert!(TokenName::parse("tab\there").is_err());
    }
}
