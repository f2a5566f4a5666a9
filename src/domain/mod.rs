//! Pure rules with no I/O: parsing of what users type into domain types.

pub mod bulk;
pub mod database;
pub mod gateway;
pub mod locale;
pub mod names;
pub mod params;
pub mod presence;
pub mod proxy;
pub mod redundancy;
pub mod refusal;
pub mod token;
pub mod user;

/// "1 gateway", "2 gateways": a count with its noun, for messages.
pub fn count(n: impl Into<i64>, noun: &str) -> String {
    let n = n.into();
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
