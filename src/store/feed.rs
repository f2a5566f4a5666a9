//! One tail of the presence event log per process (EN-5), fanned out to
//! every open event stream. The feed's task reads the log when the database
//! says it grew (PostgreSQL's notification, CL-3) or at its poll, once for
//! all streams; each stream holds a receiver of the batches it reads, so an
//! open stream costs memory, not queries. A stream that resumes from an
//! older event reads the log itself up to where the feed was when it
//! joined, then follows the feed.
//!
//! A reader too slow to keep up is not waited for: the feed's channel keeps
//! the newest `BACKLOG` events, and a stream whose position has been
//! overwritten is told so in a last event and closed; its client resumes
//! with `Last-Event-ID` and loses nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use sqlx::AnyPool;
use tokio::sync::{Mutex, broadcast, watch};
use tokio::time::MissedTickBehavior;

use crate::error::AppResult;
use crate::store;
use crate::store::presence::Published;

/// Events kept for streams that have not sent them yet (a few megabytes).
/// Even 22,500 meetings starting at one minute come spread over the
/// Calendar Spread, so only a reader that stopped reading (beyond what its
/// connection's buffers hold) falls this far behind.
pub const BACKLOG: usize = 20_000;
/// Events read per query.
pub const PAGE: i64 = 500;

/// One event, shared by every stream.
pub type Shared = Arc<Published>;

/// The process's feed; cheap to clone.
#[derive(Clone)]
pub struct Feed {
    inner: Arc<Inner>,
}

struct Inner {
    sender: broadcast::Sender<Shared>,
    /// The newest sequence number the feed has sent (or started after).
    head: AtomicI64,
    /// Whether the task runs; it ends when no stream is left, and the next
    /// stream starts it again.
    running: Mutex<bool>,
}

/// How often the feed reads the log without a notification: often on
/// SQLite (the log is the only channel between processes), rarely where
/// the database notifies (the poll only covers a lost notification).
fn poll_every(notified: bool) -> Duration {
    if notified {
        Duration::from_secs(2)
    } else {
        Duration::from_millis(250)
    }
}

/// A stream's place in the feed: the events from now on, and the sequence
/// number up to which the stream must read the log itself.
pub struct Joined {
    pub receiver: broadcast::Receiver<Shared>,
    pub head: i64,
}

impl Default for Feed {
    fn default() -> Self {
        Feed {
            inner: Arc::new(Inner {
                sender: broadcast::channel(BACKLOG).0,
                head: AtomicI64::new(0),
                running: Mutex::new(false),
            }),
        }
    }
}

impl Feed {
    /// Joins the feed, starting its task if none runs. Fails only when the
    /// task must start and the log's end cannot be read.
    pub async fn join(
        &self,
        pool: &AnyPool,
        wake: watch::Receiver<i64>,
        notified: bool,
    ) -> AppResult<Joined> {
        let mut running = self.inner.running.lock().await;
        if !*running {
            let head = store::presence::last_seq(pool).await?;
            self.inner.head.store(head, Ordering::SeqCst);
            *running = true;
            tokio::spawn(run(self.clone(), pool.clone(), wake, poll_every(notified)));
        }
        // Subscribed before the head is read: every event after `head`
        // reaches the receiver (or was sent before and is at or under it).
        let receiver = self.inner.sender.subscribe();
        let head = self.inner.head.load(Ordering::SeqCst);
        Ok(Joined { receiver, head })
    }

    /// Streams following the feed now.
    pub fn streams(&self) -> usize {
        self.inner.sender.receiver_count()
    }
}

/// The feed's task: reads what is new, page by page, and sends each event; ends
/// when no stream is left.
async fn run(feed: Feed, pool: AnyPool, mut wake: watch::Receiver<i64>, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut database_down = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            Ok(()) = wake.changed() => {}
        }
        {
            let mut running = feed.inner.running.lock().await;
            if feed.inner.sender.receiver_count() == 0 {
                *running = false;
                return;
            }
        }
        // Bounded: a burst is read in pages, and the rest waits for the
        // next round rather than holding the task.
        for _ in 0..100 {
            let after = feed.inner.head.load(Ordering::SeqCst);
            match store::presence::events_after(&pool, after, None, PAGE).await {
                Ok(page) => {
                    database_down = false;
                    let Some(last) = page.last().map(|p| p.seq) else {
                        break;
                    };
                    let full = page.len() as i64 == PAGE;
                    feed.inner.head.store(last, Ordering::SeqCst);
                    for event in page {
                        // No receiver left is not an error: the next round
                        // ends the task.
                        let _ = feed.inner.sender.send(Arc::new(event));
                    }
                    if !full {
                        break;
                    }
                }
                // The database is restarting (CL-5): streams stay open and
                // the feed reads on from where it was when it is back.
                Err(e) if e.database_away() => {
                    if !database_down {
                        tracing::warn!(error = %e, "presence feed: the database is unavailable; waiting");
                        database_down = true;
                    }
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "presence feed: reading the log failed; trying again");
                    break;
                }
            }
        }
    }
}
