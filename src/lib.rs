//! presence-gateway: Exchange calendars in presence, and the console that
//! configures it. `app` builds the real router so tests serve exactly what
//! production serves.

pub mod check;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod config;
pub mod crypto;
pub mod domain;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod i18n;
pub mod netport;
pub mod password;
pub mod secrets;
pub mod server;
pub mod startup;
pub mod state;
pub mod store;
pub mod tls;
pub mod troubleshoot;
pub mod web;

pub use web::app;
