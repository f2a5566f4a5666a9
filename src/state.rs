//! What every handler can reach.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use sqlx::AnyPool;

use crate::clock::SharedClock;
use crate::config::Settings;
use crate::secrets::cipher::Cipher;
use crate::store::changes::Pending;
use crate::store::gateways::GatewayRow;
use crate::store::users::ConfigState;

/// One value kept while the key it was read under holds. The keys are read
/// from the database on every page view anyway, so a stale value is never
/// served: a new key replaces it.
pub struct KeyedCache<K, V>(Arc<Mutex<Option<(K, V)>>>);

impl<K, V> Clone for KeyedCache<K, V> {
    fn clone(&self) -> Self {
        KeyedCache(self.0.clone())
    }
}

impl<K, V> Default for KeyedCache<K, V> {
    fn default() -> Self {
        KeyedCache(Arc::new(Mutex::new(None)))
    }
}

impl<K: PartialEq + Clone, V: Clone> KeyedCache<K, V> {
    /// The value kept under `key`, or `load`'s, which is then kept.
    pub async fn get_or_load<F, Fut, E>(&self, key: &K, load: F) -> Result<V, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<V, E>>,
    {
        if let Some((at, value)) = self.slot().as_ref()
            && at == key
        {
            return Ok(value.clone());
        }
        let value = load().await?;
        *self.slot() = Some((key.clone(), value.clone()));
        Ok(value)
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<(K, V)>> {
        // A panic elsewhere cannot leave a half-written entry: take it as is.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The server-sent event streams this process may hold open at once
/// (EN-5), and from one client address: a stream costs memory (it follows
/// the process's feed, `store::feed`), so the bound is what one process
/// should hold, and no one client may take them all.
#[derive(Clone)]
pub struct StreamPermits(pub Arc<tokio::sync::Semaphore>, PerAddress);

/// Open streams per client address.
type PerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamRefusal {
    /// This process holds `StreamPermits::MAX`.
    Process,
    /// The caller's address holds `StreamPermits::PER_ADDRESS`.
    Address,
}

/// One open stream's place; given back when dropped.
pub struct StreamPermit {
    _process: tokio::sync::OwnedSemaphorePermit,
    address: Option<(IpAddr, PerAddress)>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some((ip, counts)) = self.address.take() {
            let mut counts = counts.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&ip) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    counts.remove(&ip);
                }
            }
        }
    }
}

impl StreamPermits {
    pub const MAX: usize = 10_000;
    pub const PER_ADDRESS: usize = 2_000;

    /// A place for a stream from `from` (unknown when the request did not
    /// come through the listener, as in-process callers).
    pub fn try_acquire(&self, from: Option<IpAddr>) -> Result<StreamPermit, StreamRefusal> {
        let process = self
            .0
            .clone()
            .try_acquire_owned()
            .map_err(|_| StreamRefusal::Process)?;
        let address = match from {
            Some(ip) => {
                let mut counts = self.1.lock().unwrap_or_else(|p| p.into_inner());
                let n = counts.entry(ip).or_insert(0);
                if *n >= Self::PER_ADDRESS {
                    return Err(StreamRefusal::Address);
                }
                *n += 1;
                Some((ip, self.1.clone()))
            }
            None => None,
        };
        Ok(StreamPermit {
            _process: process,
            address,
        })
    }

    /// Streams open from `ip`.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let counts = self.1.lock().unwrap_or_else(|p| p.into_inner());
        counts.get(&ip).copied().unwrap_or(0)
    }
}

impl Default for StreamPermits {
    fn default() -> Self {
        StreamPermits(
            Arc::new(tokio::sync::Semaphore::new(Self::MAX)),
            Arc::default(),
        )
    }
}

#[derive(Clone)]
pub struct AppState {
    pub pool: AnyPool,
    pub settings: Arc<Settings>,
    pub clock: SharedClock,
    /// Seals and opens the Exchange passwords (GW-8, SY-4).
    pub cipher: Cipher,
    /// The restart banner, per configuration state.
    pub banner: KeyedCache<ConfigState, Pending>,
    /// Every gateway, per (configuration generation, verdict sequence): each
    /// gateway change bumps the generation (GW-7), each stored verdict the
    /// sequence, in any node.
    pub gateways: KeyedCache<(i64, i64), Arc<Vec<GatewayRow>>>,
    /// Find and List's unfiltered table rows as HTML, under the same key.
    pub gateway_rows_html: KeyedCache<(i64, i64), Arc<String>>,
    /// Wakes this node's engine supervisor for a command given here.
    pub engine_wake: crate::engine::Wake,
    /// Wake-ups for changes made on other nodes (CL-3).
    pub changes: crate::store::notify::Hub,
    /// Open presence streams on this process.
    pub streams: StreamPermits,
    /// The presence log's one tail in this process, which every stream
    /// follows.
    pub feed: crate::store::feed::Feed,
    /// The engine's notification listener's connection bounds (the tests
    /// narrow them).
    pub listener_limits: crate::net::Limits,
    /// One bulk import or check at a time on this node.
    pub imports: crate::store::bulk::ImportGate,
}

impl AppState {
    pub fn now(&self) -> i64 {
        self.clock.unix()
    }

    /// The engine's own context on this node.
    pub fn engine_context(&self) -> crate::engine::Context {
        crate::engine::Context {
            pool: self.pool.clone(),
            clock: self.clock.clone(),
            node: self.settings.node_name.clone(),
            wake: self.engine_wake.clone(),
            cipher: self.cipher.clone(),
            listener_limits: self.listener_limits,
            proxy_env: self.settings.proxy_env.clone(),
        }
    }
}
