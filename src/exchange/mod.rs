//! The Exchange protocols: request building, response parsing and
//! authentication headers. No sockets here: callers own the connection.

pub mod auth;
pub mod ews;
pub mod ntlm;
pub mod webdav;
