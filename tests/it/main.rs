//! One integration-test binary (link time matters on two cores), one module
//! per area.

mod support;

mod api;
mod app_users;
mod auth;
mod browser;
mod bulk;
mod certs;
mod check;
mod check_cli;
mod cluster;
mod end_users;
mod engine;
mod gateways;
mod graph_gateways;
mod limbo;
mod locales;
mod metrics;
mod params;
mod presence;
mod presence_engine;
mod process;
mod redundancy;
mod shell;
mod sim;
mod slow_clients;
mod troubleshooter;
mod user_options;
