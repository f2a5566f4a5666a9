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
