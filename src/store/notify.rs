//! Changes that reach every node within a second (CL-3). On PostgreSQL a
//! write that others must see sends a `NOTIFY` in its own transaction, so it
//! is delivered when the write commits; one listener task per process
//! (`listen`) turns them into wake-ups on a `Hub`. A notification is only a
//! hint: every consumer re-reads its table from where it left off, so a
//! lost one costs latency (until the consumer's own poll), never data. On
//! SQLite nothing is sent, and consumers poll as before.

use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use tokio::sync::{Notify, watch};

use super::Backend;

/// The channel of engine commands; the payload is the node's name.
pub const ENGINE_COMMANDS: &str = "presence_gateway_engine_commands";
/// The channel of the presence event log; the payload is the newest `seq`.
pub const PRESENCE_EVENTS: &str = "presence_gateway_presence_events";

/// What this process's consumers wait on.
#[derive(Clone)]
pub struct Hub {
    /// Rung for a command addressed to this process's node.
    pub engine_commands: Arc<Notify>,
    /// The newest presence event sequence number heard of (0: none yet);
    /// streams wait for it to change.
    pub presence: watch::Sender<i64>,
    node: Arc<str>,
}

impl Hub {
    pub fn new(node: &str) -> Hub {
        Hub {
            engine_commands: Arc::new(Notify::new()),
            presence: watch::channel(0).0,
            node: Arc::from(node),
        }
    }

    /// A new stream's view of the presence log's wake-ups.
    pub fn presence_events(&self) -> watch::Receiver<i64> {
        self.presence.subscribe()
    }

    fn heard(&self, channel: &str, payload: &str) {
        match channel {
            ENGINE_COMMANDS if payload == &*self.node => self.engine_commands.notify_one(),
            PRESENCE_EVENTS => {
                let seq = payload.parse().unwrap_or(i64::MAX);
                self.presence.send_if_modified(|newest| {
                    let newer = seq > *newest;
                    *newest = (*newest).max(seq);
                    newer
                });
            }
            _ => {}
        }
    }

    /// After a reconnection: notifications may have been missed, so every
    /// consumer looks again.
    fn missed_some(&self) {
        self.engine_commands.notify_one();
        self.presence.send_modify(|_| {});
    }
}

/// Sends `payload` on `channel` when the transaction `conn` is in commits
/// (at once outside one). Nothing on SQLite.
pub async fn send(conn: &mut AnyConnection, channel: &str, payload: &str) -> sqlx::Result<()> {
    if Backend::of_conn(conn) == Backend::Postgres {
        sqlx::query("SELECT pg_notify($1, $2)::text")
            .bind(channel)
            .bind(payload)
            .fetch_one(conn)
            .await?;
    }
    Ok(())
}

/// Listens on PostgreSQL for the life of the process, waking `hub`'s
/// consumers; reconnects by itself (every 1 s at most) when the server goes
/// away. Does nothing for SQLite.
pub async fn listen(url: String, hub: Hub) {
    let mut logged = false;
    loop {
        match listen_once(&url, &hub).await {
            Ok(()) => {}
            Err(e) if !logged => {
                tracing::warn!(error = %e, "database notifications interrupted; reconnecting");
                logged = true;
            }
            Err(_) => {}
        }
        hub.missed_some();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn listen_once(url: &str, hub: &Hub) -> sqlx::Result<()> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener
        .listen_all([ENGINE_COMMANDS, PRESENCE_EVENTS])
        .await?;
    tracing::debug!("listening for database notifications");
    // Anything sent while we were not listening is looked for now.
    hub.missed_some();
    loop {
        // `try_recv` answers None when the connection was lost (it
        // reconnects on the next call): consumers then look again.
        match listener.try_recv().await? {
            Some(notification) => hub.heard(notification.channel(), notification.payload()),
            None => hub.missed_some(),
        }
    }
}
