//! The presence engine's supervisor (EN-1, SV-1..SV-3): one per node, in the
//! service process. It starts, stops and restarts the engine when asked
//! through the store (Control Center on any node, or the `engine` command),
//! loads one consistent configuration snapshot at each start, records the
//! generation it runs, and follows live configuration without a restart.
//!
//! While running, the engine owns its notification-port listeners (TCP for
//! EWS, UDP for WebDAV's HTTPU) and its calendar work (`calendars`): the
//! node's calendar users read through the EWS gateways and their presence
//! published (EN-2 to EN-5).

pub mod calendars;
pub mod ews;
pub mod graph;
mod listener;
pub mod netport;
pub mod push;
pub mod schedule;
pub mod tokens;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use sqlx::AnyPool;

use crate::clock::SharedClock;
use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::error::AppResult;
use crate::exchange::client::Credentials;
use crate::secrets::cipher::Cipher;
use crate::store::engine::{self as store, Action, EngineState, Live, Snapshot};

/// How often the supervisor looks for commands and live changes: a command
/// from another node or the shell is noticed within this.
pub const POLL: Duration = Duration::from_millis(250);
/// How often the live view (calendar users, incremental parameters) is read
/// again: counting a node's calendar users reads their rows, which at tens of
/// thousands of users is worth doing every few seconds, not every poll.
pub const LIVE_EVERY: Duration = Duration::from_secs(2);

/// Where Exchange posts this node's notifications: `http://<Notification
/// Host>:<port>` (an IPv6 address in brackets); none without a host.
pub fn callback_base(host: &str, port: u16) -> Option<String> {
    let host = host.trim();
    if host.is_empty() {
        return None;
    }
    Some(match host.parse::<std::net::Ipv6Addr>() {
        Ok(ip) => format!("http://[{ip}]:{port}"),
        Err(_) => format!("http://{host}:{port}"),
    })
}

/// Why the engine stopped, as `unknown` presence explains it.
const STOPPED: &str = "stopped";
const DEACTIVATED: &str = "deactivated in Service Activation";
const RESTARTING: &str = "restarting";

/// Wakes the local supervisor at once, for commands given on this node.
#[derive(Clone, Default)]
pub struct Wake(Arc<Notify>);

impl Wake {
    /// The wake-up rung by `notify` too (the database's notifications of
    /// commands from other nodes, CL-3).
    pub fn with(notify: Arc<Notify>) -> Wake {
        Wake(notify)
    }

    pub fn now(&self) {
        self.0.notify_one();
    }
}

struct Running {
    snapshot: Snapshot,
    listener: listener::Listener,
    calendars: calendars::Calendars,
    live: Option<Live>,
    /// When the live view was last read (None: read it at the next chance).
    live_read: Option<std::time::Instant>,
    /// The nodes whose calendar users this engine serves: its own, and a
    /// peer's after a failover (CL-4), as the last lease renewal said.
    serving: Vec<String>,
}

/// What the engine works with: its node's name, the database, the clock,
/// and the wake-up the console rings for commands given on this node. Not
/// the console's state: the engine knows nothing of the web.
#[derive(Clone)]
pub struct Context {
    pub pool: AnyPool,
    pub clock: SharedClock,
    pub node: String,
    pub wake: Wake,
    /// Opens the Exchange service accounts' passwords.
    pub cipher: Cipher,
    /// The notification listener's connection bounds.
    pub listener_limits: crate::net::Limits,
    /// `HTTPS_PROXY` / `NO_PROXY` as the service started with them: the
    /// Outbound Proxy's default for Microsoft 365 (GR-3).
    pub proxy_env: crate::domain::proxy::ProxyEnv,
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
    /// Rung when a calendar read finishes, so its answer is taken at once.
    ready: Arc<Notify>,
}

/// Starts the supervisor for this node. At a process start the engine
/// resumes as it was: if it should run, it starts on the snapshot it last
/// started with successfully, so changes committed since still wait for an
/// engine restart (the restart banner survives a process restart).
pub fn spawn(ctx: Context) -> JoinHandle<()> {
    tokio::spawn(async move {
        let wake = ctx.wake.clone();
        let ready = Arc::new(Notify::new());
        let mut supervisor = Supervisor {
            ctx,
            running: None,
            activated: false,
            ready: ready.clone(),
        };
        if let Err(e) = supervisor.boot().await {
            tracing::warn!(error = %e, "engine boot failed");
        }
        loop {
            let outcome = tokio::select! {
                _ = tokio::time::sleep(POLL) => supervisor.tick().await,
                _ = wake.0.notified() => supervisor.tick().await,
                _ = ready.notified() => supervisor.work().await,
            };
            if let Err(e) = outcome {
                tracing::warn!(error = ?e, "engine supervisor");
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
                self.stop(DEACTIVATED).await?;
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
        self.follow_live().await?;
        self.work().await
    }

    /// The calendar work's round: answers taken, reads started, presence
    /// published.
    async fn work(&mut self) -> AppResult<()> {
        let now = self.now();
        match self.running.as_mut() {
            Some(running) => running.calendars.tick(&self.ctx.pool, now).await,
            None => Ok(()),
        }
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
                    self.stop(STOPPED).await?;
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
                    self.stop(RESTARTING).await?;
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
        // The lease first (CL-4): whose users this engine serves.
        let serving = match crate::store::redundancy::renew(&pool, &node, self.now()).await {
            Ok(serving) => serving,
            Err(e) => return self.failed(&format!("cannot renew the lease: {e}")).await,
        };
        let registry = Arc::new(push::Registry::default());
        let (heard_tx, heard_rx) = tokio::sync::mpsc::channel(push::QUEUE);
        let calendars = match self
            .calendars(&snapshot, &serving, registry.clone(), heard_rx)
            .await
        {
            Ok(calendars) => calendars,
            Err(reason) => return self.failed(&reason).await,
        };
        let port = snapshot.params.notification_port;
        let host = &snapshot.params.notification_host;
        let limits = self.ctx.listener_limits;
        let listener = match listener::Listener::bind(host, port, limits, registry, heard_tx).await
        {
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
            calendars,
            live: None,
            live_read: None,
            serving,
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

    /// The calendar work for `snapshot`: its EWS gateways with the shared
    /// credentials opened, the trust store, and the limits it runs with.
    async fn calendars(
        &self,
        snapshot: &Snapshot,
        serving: &[String],
        registry: Arc<push::Registry>,
        heard: tokio::sync::mpsc::Receiver<push::Heard>,
    ) -> Result<calendars::Calendars, String> {
        let params = &snapshot.params;
        let dns_configured = store::dns_configured(&self.ctx.pool, self.node())
            .await
            .map_err(|e| format!("cannot read the DNS setting: {e}"))?;
        let credentials = match snapshot
            .credentials
            .iter()
            .find(|c| c.kind == GatewayKind::Ews.as_str())
        {
            Some(stored) => Some(Credentials {
                account: stored.account_name.clone(),
                password: secrecy::SecretString::from(
                    self.ctx
                        .cipher
                        .open_password(&stored.password_nonce, &stored.password_ciphertext)
                        .map_err(|e| {
                            format!("cannot open the EWS service account's password: {e}")
                        })?,
                ),
            }),
            None => None,
        };
        let trust: Vec<rustls::pki_types::CertificateDer<'static>> = snapshot
            .trust
            .iter()
            .map(|der| rustls::pki_types::CertificateDer::from(der.clone()))
            .collect();
        let timeout = Duration::from_secs(u64::from(params.exchange_timeout_seconds));
        // Only Microsoft 365 traffic goes through the Outbound Proxy; read
        // at start, as the rest of the configuration is.
        let proxy = if snapshot
            .gateways
            .iter()
            .any(|g| g.kind == GatewayKind::Graph.as_str())
        {
            crate::store::proxy::effective(&self.ctx.pool, &self.ctx.cipher, &self.ctx.proxy_env)
                .await
                .map_err(|e| format!("cannot read the Outbound Proxy: {e}"))?
        } else {
            None
        };
        let mut endpoints = Vec::new();
        for gateway in &snapshot.gateways {
            if gateway.kind == GatewayKind::Graph.as_str() {
                endpoints.push(calendars::Source::Graph(Arc::new(self.graph_endpoint(
                    snapshot,
                    gateway,
                    trust.clone(),
                    timeout,
                    proxy.clone(),
                )?)));
                continue;
            }
            if gateway.kind != GatewayKind::Ews.as_str() {
                continue;
            }
            let Some(credentials) = credentials.clone() else {
                continue;
            };
            let host = ServerLocation::parse(&gateway.server).map_err(|e| {
                format!(
                    "gateway {} has an unreadable server location: {e}",
                    gateway.description
                )
            })?;
            endpoints.push(calendars::Source::Ews(Arc::new(ews::Endpoint::new(
                gateway.id,
                gateway.description.clone(),
                host,
                u16::try_from(gateway.port).unwrap_or(443),
                trust.clone(),
                credentials,
                dns_configured,
                params.exchange_auth,
                timeout,
            ))));
        }
        let published = crate::store::presence::published_on_nodes(&self.ctx.pool, serving)
            .await
            .map_err(|e| format!("cannot read the published presence: {e}"))?;
        let mut calendars = calendars::Calendars::new(
            self.node(),
            endpoints,
            calendars::Limits {
                threads: usize::try_from(params.exchange_threads).unwrap_or(1).max(1),
                queue: usize::try_from(params.exchange_queue).unwrap_or(1).max(1),
                spread: params.calendar_spread_seconds,
                display_oof: params.display_out_of_office,
                callback: callback_base(&params.notification_host, params.notification_port),
                status_minutes: params.ews_status_frequency_minutes,
                poll_minutes: params.m365_poll_interval_minutes,
                graph_callback: Some(params.m365_notification_url.clone())
                    .filter(|url| !url.is_empty()),
            },
            self.ready.clone(),
            registry,
            heard,
        );
        calendars.seed(published);
        Ok(calendars)
    }

    /// The Microsoft 365 gateway of the running configuration: its cloud,
    /// tenant, Application (client) ID and client secret (opened here).
    fn graph_endpoint(
        &self,
        snapshot: &Snapshot,
        gateway: &crate::store::engine::SnapshotGateway,
        trust: Vec<rustls::pki_types::CertificateDer<'static>>,
        timeout: Duration,
        proxy: Option<crate::domain::proxy::Proxy>,
    ) -> Result<graph::GraphEndpoint, String> {
        let unreadable =
            |what: &str| format!("Microsoft 365 gateway {}: {what}", gateway.description);
        let cloud = crate::troubleshoot::graph::cloud_named(
            gateway.cloud.as_deref(),
            gateway.signin_url.as_deref(),
            gateway.graph_url.as_deref(),
        )
        .map_err(|e| unreadable(&e))?;
        let stored = snapshot
            .credentials
            .iter()
            .find(|c| c.kind == GatewayKind::Graph.as_str())
            .ok_or_else(|| unreadable("no client secret is stored"))?;
        let secret = self
            .ctx
            .cipher
            .open_password(&stored.password_nonce, &stored.password_ciphertext)
            .map_err(|e| unreadable(&format!("cannot open the client secret: {e}")))?;
        Ok(graph::GraphEndpoint::new(
            gateway.id,
            gateway.description.clone(),
            cloud,
            gateway.tenant.clone().unwrap_or_default(),
            stored.account_name.clone(),
            secrecy::SecretString::from(secret),
            trust,
            proxy,
            timeout,
            self.ctx.clock.clone(),
        ))
    }

    async fn stop(&mut self, why: &str) -> AppResult<()> {
        if let Some(mut running) = self.running.take() {
            // Microsoft 365 subscriptions are deleted (GR-5); EWS push ones
            // end when the closed listener stops answering.
            running.calendars.end_graph_subscriptions(self.now()).await;
            running.listener.stop().await;
            let handed = why != RESTARTING
                && crate::store::redundancy::hand_over(&self.ctx.pool, self.node(), self.now())
                    .await?;
            if handed {
                tracing::info!(
                    node = self.node(),
                    "presence engine stops: its redundancy peer takes its users over"
                );
            } else if why != RESTARTING {
                // Nothing keeps these users' presence true any more.
                let reason = format!("the Presence Engine on {} is {why}", self.node());
                let unknown = running.calendars.all_unknown(&reason, self.now());
                crate::store::presence::publish_as(
                    &self.ctx.pool,
                    self.node(),
                    &unknown,
                    self.now(),
                )
                .await?;
                // Stopped on purpose: a redundancy peer takes the users over
                // at its next renewal rather than after Failover After.
                crate::store::redundancy::give_up(&self.ctx.pool, self.node(), self.now()).await?;
            }
            crate::store::health::clear(&self.ctx.pool, self.node()).await?;
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
        let now = self.ctx.clock.unix();
        if running.live.as_ref() != Some(&live) {
            store::set_live(&self.ctx.pool, &node, &live).await?;
            running.calendars.set_live(
                live.calendar_spread_seconds,
                live.display_out_of_office,
                live.ews_status_frequency_minutes,
                live.m365_poll_interval_minutes,
                now,
            );
            running.live = Some(live);
        }
        // The lease (CL-4): a failover or a fallback changes whose users
        // are read here. Users taken over start from what their previous
        // engine published, so nothing unchanged is published twice.
        let serving = crate::store::redundancy::renew(&self.ctx.pool, &node, now).await?;
        if serving != running.serving {
            let added: Vec<String> = serving
                .iter()
                .filter(|n| !running.serving.contains(n))
                .cloned()
                .collect();
            let published =
                crate::store::presence::published_on_nodes(&self.ctx.pool, &added).await?;
            running.calendars.seed(published);
            tracing::info!(node, serving = ?serving, "presence engine serves");
            running.serving = serving;
        }
        let roster = store::calendar_users(&self.ctx.pool, &running.serving).await?;
        let (left, joined) = running.calendars.set_roster(roster, now);
        if joined {
            // A user moved here from another node (or switched on) starts
            // from what is published for them, as at a start: their first
            // read here, published at once, repeats nothing unchanged.
            let published =
                crate::store::presence::published_on_nodes(&self.ctx.pool, &running.serving)
                    .await?;
            running.calendars.seed(published);
        }
        if !left.is_empty() {
            let why = store::departures(&self.ctx.pool, &node, &left).await?;
            running.calendars.departed(why, now);
        }
        Ok(())
    }
}
