//! What every handler can reach.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::crypto::Cipher;

#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    /// Seals and opens the Exchange passwords (GW-8, SY-4).
    pub cipher: Cipher,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.unix()
    }
}
