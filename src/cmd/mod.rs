//! The binary's commands, one file each: `serve` (the default), `check`
//! (the troubleshooter from the shell), `admin`, `users`, `engine` and `db`.

pub mod admin;
pub mod check;
pub mod db;
pub mod engine;
pub mod serve;
pub mod users;
