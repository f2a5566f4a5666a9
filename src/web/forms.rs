//! Pieces the console's forms share.

use serde::Deserialize;

/// A password field: never printed by `Debug`, never rendered back.
#[derive(Default, Deserialize)]
#[serde(transparent)]
pub struct SecretField(pub String);

impl std::fmt::Debug for SecretField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The field name of the message at the top of a form, for what belongs
/// to no one field.
pub const FORM: &str = "form";

/// Messages beside a form's fields, by field name (the input's `id`); the
/// name `FORM` holds the message for the top of the form. One
/// map for every form, so templates ask `errors.get("field")`.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(Vec<(&'static str, String)>);

impl FieldErrors {
    /// Sets the message beside `field`; a later message replaces it.
    pub fn set(&mut self, field: &'static str, message: impl Into<String>) {
        let message = message.into();
        match self.0.iter_mut().find(|(f, _)| *f == field) {
            Some(slot) => slot.1 = message,
            None => self.0.push((field, message)),
        }
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, m)| m.as_str())
    }

    pub fn has(&self, field: &str) -> bool {
        self.get(field).is_some()
    }

    pub fn any(&self) -> bool {
        !self.0.is_empty()
    }

    /// The message for the top of the form, if any.
    pub fn form(&self) -> Option<&str> {
        self.get(FORM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_message_per_field() {
        let mut errors = FieldErrors::default();
        assert!(!errors.any());
        errors.set("port", "Enter a port.");
        errors.set("port", "Enter a port from 1 to 65535.");
        errors.set(FORM, "Refused.");
        assert_eq!(errors.get("port"), Some("Enter a port from 1 to 65535."));
        assert!(errors.has("port") && !errors.has("server"));
        assert_eq!(errors.form(), Some("Refused."));
    }
}
