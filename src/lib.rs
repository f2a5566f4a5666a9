//! presence-gateway: Exchange calendars in presence, and the console that
//! configures it. `app` builds the real router so tests serve exactly what
//! production serves.

pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod domain;
pub mod engine;
pub mod error;
pub mod exchange;
pub mod net;
pub mod secrets;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod troubleshoot;
pub mod web;

pub use web::app;
