//! The presence engine's supervisor (EN-1, SV-1..SV-3): one per node, in the
//! service process. It starts, stops and restarts the engine when asked
//! through the store (Control Center on any node, or the `engine` command),
//! loads one consistent configuration snapshot at each start, records the
//! generation it runs, and follows live configuration without a restart.
//!
//! While running, the engine owns its notification-port listeners (TCP for
//! EWS, UDP for WebDAV's HTTPU). Until calendar synchronization is built
//! they only acknowledge what arrives.

mod listener;
pub mod netport;
pub mod schedule;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::error::AppResult;
use crate::store::engine::{self as store, Action, EngineState, Live, Snapshot};

/// How often the supervisor looks for commands and live changes: a command
/// from another node or the shell is noticed within this.
pub const POLL: Duration = Duration::from_millis(250);
/// How often the live view (calendar users, incremental parameters) is read
/// again: counting a node's calendar users reads their rows, which at tens of
/// thousands of users is worth doing every few seconds, not every poll.
pub const LIVE_EVERY: Duration = Duration::from_secs(2);

/// Wakes the local supervisor at once, for commands given on this node.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    pub fn now(&self) {
        self.0.notify_one();
    }
}

struct Running {
    snapshot: Snapshot,
    listener: listener::Listener,
    live: Option<Live>,
    /// When the live view was last read (None: read it at the next chance).
    live_read: Option<std::time::Instant>,
}

/// What the engine works with: its node's name, the database, the clock,
/// and the wake-up the console rings for commands given on this node. Not
/// the console's state: the engine knows nothing of the web.
#[derive(Clone)]
pub struct Context {
    pub pool: SqlitePool,
    pub clock: SharedClock,
    pub node: String,
    pub wake: Wake,
}

impl Context {
    fn now(&self) -> i64 {
        self.clock.unix()
    }
}

struct Supervisor {
    ctx: Context,
    running: Option<Running>,
    /// Activation as last seen, to start the engine when a node is activated.
    activated: bool,
}

/// Starts the supervisor for this node. At a process start the engine
/// resumes as it was: if it should run, it starts on the snapshot it last
/// started with successfully, so changes committed since still wait for an
/// engine restart (the restart banner survives a process restart).
pub fn spawn(ctx: Context) -> JoinHandle<()> {
    tokio::spawn(async move {
        let wake = ctx.wake.clone();
        let mut supervisor = Supervisor {
            ctx,
            running: None,
            activated: false,
        };
        if let Err(e) = supervisor.boot().await {
            tracing::warn!(error = %e, "engine boot failed");
        }
        loop {
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = wake.0.notified() => {}
            }
            if let Err(e) = supervisor.tick().await {
                tracing::warn!(error = %e, "engine supervisor");
            }
        }
    })
}

impl Supervisor {
    fn node(&self) -> &str {
        &self.ctx.node
    }

    fn now(&self) -> i64 {
        self.ctx.now()
    }

    async fn boot(&mut self) -> AppResult<()> {
        let Some(row) = store::node(&self.ctx.pool, self.node()).await? else {
            return Ok(());
        };
        self.activated = row.activated;
        if !row.activated || !row.engine_wanted {
            store::set_state(
                &self.ctx.pool,
                self.node(),
                EngineState::Stopped,
                None,
                self.now(),
            )
            .await?;
            return Ok(());
        }
        let resume = store::stored_snapshot(&self.ctx.pool, self.node()).await?;
        self.start(resume).await;
        Ok(())
    }

    async fn tick(&mut self) -> AppResult<()> {
        let Some(row) = store::node(&self.ctx.pool, self.node()).await? else {
            return Ok(());
        };
        if row.activated != self.activated {
            self.activated = row.activated;
            if !row.activated && self.running.is_some() {
                self.stop("deactivated in Service Activation").await?;
            } else if row.activated && row.engine_wanted && self.running.is_none() {
                self.start(None).await;
            }
        }
        // A bounded number of commands per tick, so a flood cannot starve the
        // live checks below.
        for _ in 0..16 {
            let Some(command) = store::next_open(&self.ctx.pool, self.node()).await? else {
                break;
            };
            let outcome = match command.action() {
                Some(action) => self.act(action).await?,
                None => format!("Unknown action {:?}", command.action),
            };
            store::finish(&self.ctx.pool, command.id, &outcome, self.now()).await?;
        }
        self.follow_live().await
    }

    async fn act(&mut self, action: Action) -> AppResult<String> {
        let pool = self.ctx.pool.clone();
        if !self.activated && action != Action::Stop {
            return Ok(format!(
                "Refused: the Presence Engine is deactivated on {} (Service Activation).",
                self.node()
            ));
        }
        Ok(match action {
            Action::Stop => {
                store::set_wanted(&pool, self.node(), false).await?;
                if self.running.is_some() {
                    self.stop("stopped").await?;
                    "Stopped.".to_owned()
                } else {
                    store::set_state(&pool, self.node(), EngineState::Stopped, None, self.now())
                        .await?;
                    "Already stopped.".to_owned()
                }
            }
            Action::Start if self.running.is_some() => "Already running.".to_owned(),
            Action::Start | Action::Restart => {
                store::set_wanted(&pool, self.node(), true).await?;
                if self.running.is_some() {
                    self.stop("restarting").await?;
                }
                self.start(None).await
            }
        })
    }

    /// Starts the engine on `resume`, or on a fresh snapshot. Returns the
    /// outcome as Control Center and the `engine` command show it. A failed
    /// start leaves the generation the node last ran (SV-3).
    async fn start(&mut self, resume: Option<Snapshot>) -> String {
        let pool = self.ctx.pool.clone();
        let node = self.node().to_owned();
        if let Err(e) =
            store::set_state(&pool, &node, EngineState::Starting, None, self.now()).await
        {
            return format!("Failed: {e}");
        }
        let snapshot = match resume {
            Some(snapshot) => snapshot,
            None => match store::load_snapshot(&pool, &node).await {
                Ok(snapshot) => snapshot,
                Err(e) => {
                    return self
                        .failed(&format!("cannot read the configuration: {e}"))
                        .await;
                }
            },
        };
        let port = snapshot.params.notification_port;
        let listener = match listener::Listener::bind(port).await {
            Ok(listener) => listener,
            Err(reason) => return self.failed(&reason).await,
        };
        if let Err(e) = store::mark_started(&pool, &node, &snapshot, port, self.now()).await {
            listener.stop().await;
            return self.failed(&format!("cannot record the start: {e}")).await;
        }
        let generation = snapshot.generation;
        tracing::info!(node, generation, port, "presence engine running");
        self.running = Some(Running {
            snapshot,
            listener,
            live: None,
            live_read: None,
        });
        if let Err(e) = self.follow_live().await {
            tracing::warn!(error = %e, "engine live view");
        }
        format!("Running on configuration generation {generation}.")
    }

    async fn failed(&mut self, reason: &str) -> String {
        tracing::warn!(
            node = self.node(),
            reason,
            "presence engine failed to start"
        );
        if let Err(e) = store::set_state(
            &self.ctx.pool,
            self.node(),
            EngineState::Failed,
            Some(reason),
            self.now(),
        )
        .await
        {
            tracing::warn!(error = %e, "cannot record the engine's failure");
        }
        format!("Failed: {reason}")
    }

    async fn stop(&mut self, why: &str) -> AppResult<()> {
        if let Some(running) = self.running.take() {
            running.listener.stop().await;
            tracing::info!(
                node = self.node(),
                generation = running.snapshot.generation,
                why,
                "presence engine stopped"
            );
        }
        store::set_state(
            &self.ctx.pool,
            self.node(),
            EngineState::Stopped,
            None,
            self.now(),
        )
        .await
    }

    /// EN-1: users, their calendar switches and the parameters that apply
    /// incrementally are followed as they change, without a restart.
    async fn follow_live(&mut self) -> AppResult<()> {
        let node = self.ctx.node.clone();
        let Some(running) = self.running.as_mut() else {
            return Ok(());
        };
        if running
            .live_read
            .is_some_and(|at| at.elapsed() < LIVE_EVERY)
        {
            return Ok(());
        }
        running.live_read = Some(std::time::Instant::now());
        let live = store::read_live(&self.ctx.pool, &node).await?;
        if running.live.as_ref() != Some(&live) {
            store::set_live(&self.ctx.pool, &node, &live).await?;
            running.live = Some(live);
        }
        Ok(())
    }
}
