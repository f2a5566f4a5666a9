//! What every handler can reach.

use std::sync::Arc;

use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::Settings;

#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.unix()
    }
}
