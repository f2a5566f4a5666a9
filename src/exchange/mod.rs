//! The Exchange protocols: request building, response parsing and
//! authentication, and the one HTTP client that speaks them over a
//! connection its caller has verified (`client`); `graph` is Microsoft
//! Graph's protocol (token, getSchedule, subscriptions), also without I/O.

pub mod auth;
pub mod availability;
pub mod client;
pub mod ews;
pub mod graph;
pub mod ntlm;
pub mod push;
pub mod webdav;
