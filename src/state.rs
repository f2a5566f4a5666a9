//! What every handler can reach.

use std::sync::{Arc, Mutex};

use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::crypto::Cipher;
use crate::store::changes::Pending;
use crate::store::gateways::GatewayRow;
use crate::store::users::ConfigState;

/// The restart banner's contents, kept while the configuration state they
/// were read under holds (the state is read on every page view anyway).
pub type BannerCache = Arc<Mutex<Option<(ConfigState, Pending)>>>;

/// Every gateway, kept while the configuration generation and the verdict
/// sequence it was read under hold: each gateway change bumps the generation
/// (GW-7) and each stored verdict the sequence, in any node.
pub type GatewayCache = Arc<Mutex<Option<((i64, i64), Arc<Vec<GatewayRow>>)>>>;

/// Find and List's table rows as HTML, for the unfiltered list, under the
/// same key as `GatewayCache`: the page then renders only its frame.
pub type GatewayRowsHtml = Arc<Mutex<Option<((i64, i64), Arc<String>)>>>;

#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    /// Seals and opens the Exchange passwords (GW-8, SY-4).
    pub cipher: Cipher,
    pub banner: BannerCache,
    pub gateways: GatewayCache,
    pub gateway_rows_html: GatewayRowsHtml,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.unix()
    }
}
