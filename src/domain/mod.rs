//! Pure rules with no I/O: parsing of what users type into domain types.

pub mod gateway;
pub mod names;
pub mod user;
