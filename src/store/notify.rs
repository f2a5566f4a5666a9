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
    notified: bool,
}

impl Hub {
    /// The hub of the store at `location`: PostgreSQL's is fed by `listen`;
    /// SQLite's never rings, and its consumers poll.
    pub fn new(node: &str, location: &super::Location) -> Hub {
        Hub {
            engine_commands: Arc::new(Notify::new()),
            presence: watch::channel(0).0,
            node: Arc::from(node),
            notified: matches!(location, super::Location::Postgres(_)),
        }
    }

    /// Whether the database tells of changes (consumers may poll slowly).
    pub fn notified(&self) -> bool {
        self.notified
    }

    /// A new stream's view of the presence log's wake-ups.
    pub fn presence_events(&self) -> watch::Receiver<i64> {
        self.presence.subscribe()
    }

    fn heard(&self, channel: &str, payload: &str) {
        match channel {
            ENGINE_COMMANDS if payload == &*self.node => self.engine_commands.notify_one(),
            PRESENCE_EVENTS => match payload.parse::<i64>() {
                Ok(seq) => {
                    self.presence.send_if_modified(|newest| {
                        let newer = seq > *newest;
                        *newest = (*newest).max(seq);
                        newer
                    });
                }
                // Not ours to read: every stream looks, none is misled.
                Err(_) => self.presence.send_modify(|_| {}),
            },
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
/// away. PostgreSQL only: `serve` starts it where the store is there.
pub async fn listen(url: String, hub: Hub) {
    // Warned once per outage: set when a connection was made.
    let mut connected = true;
    loop {
        let Err(e) = listen_on(&url, &hub, &mut connected).await;
        if std::mem::take(&mut connected) {
            tracing::warn!(error = %e, "database notifications interrupted; reconnecting");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Listens until the connection fails.
async fn listen_on(
    url: &str,
    hub: &Hub,
    connected: &mut bool,
) -> sqlx::Result<std::convert::Infallible> {
    let mut listener = sqlx::postgres::PgListener::connect(url).await?;
    listener
        .listen_all([ENGINE_COMMANDS, PRESENCE_EVENTS])
        .await?;
    *connected = true;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Hub {
        Hub::new(
            "node-a",
            &super::super::Location::Postgres("postgres://h/db".into()),
        )
    }

    #[test]
    fn streams_wake_for_newer_events_and_for_what_they_cannot_read() {
        let hub = hub();
        let mut stream = hub.presence_events();
        hub.heard(PRESENCE_EVENTS, "7");
        assert!(stream.has_changed().unwrap());
        assert_eq!(*stream.borrow_and_update(), 7);
        hub.heard(PRESENCE_EVENTS, "5");
        assert!(
            !stream.has_changed().unwrap(),
            "an older event wakes nobody"
        );
        hub.heard(PRESENCE_EVENTS, "not a number");
        assert!(stream.has_changed().unwrap());
        assert_eq!(*stream.borrow_and_update(), 7, "nothing is misread");
        hub.heard(PRESENCE_EVENTS, "8");
        assert!(stream.has_changed().unwrap(), "later events still wake");
    }

    #[tokio::test]
    async fn only_this_nodes_commands_ring_its_engine() {
        let hub = hub();
        hub.heard(ENGINE_COMMANDS, "node-b");
        let rung = tokio::time::timeout(Duration::from_millis(50), hub.engine_commands.notified());
        assert!(rung.await.is_err(), "another node's command");
        hub.heard(ENGINE_COMMANDS, "node-a");
        tokio::time::timeout(Duration::from_secs(1), hub.engine_commands.notified())
            .await
            .expect("this node's command rings");
        assert!(!Hub::new("n", &super::super::Location::Sqlite("x.db".into())).notified());
    }
}
