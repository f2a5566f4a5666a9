//! The binary's commands, one file each: `serve` (the default), `check`
//! (the troubleshooter from the shell), `admin`, `users` and `engine`.

pub mod admin;
pub mod check;
pub mod engine;
pub mod serve;
pub mod users;
