//! The presence engine's record in the store (EN-1, SV-1..SV-3): each node's
//! engine state, the commands sent to it from any node or the shell, the
//! configuration snapshot it runs, and what it follows live.

use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, FromRow};

use crate::domain::params::ServiceParams;
use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineState {
    Running,
    Stopped,
    Starting,
    Failed,
}

impl EngineState {
    pub fn as_str(self) -> &'static str {
        match self {
            EngineState::Running => "running",
            EngineState::Stopped => "stopped",
            EngineState::Starting => "starting",
            EngineState::Failed => "failed",
        }
    }

    pub fn parse(raw: &str) -> EngineState {
        match raw {
            "running" => EngineState::Running,
            "starting" => EngineState::Starting,
            "failed" => EngineState::Failed,
            _ => EngineState::Stopped,
        }
    }

    /// As Control Center shows it.
    pub fn label(self) -> &'static str {
        match self {
            EngineState::Running => "Running",
            EngineState::Stopped => "Stopped",
            EngineState::Starting => "Starting",
            EngineState::Failed => "Failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Start,
    Stop,
    Restart,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Start => "start",
            Action::Stop => "stop",
            Action::Restart => "restart",
        }
    }

    pub fn parse(raw: &str) -> Option<Action> {
        match raw {
            "start" => Some(Action::Start),
            "stop" => Some(Action::Stop),
            "restart" => Some(Action::Restart),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Action::Start => "Start",
            Action::Stop => "Stop",
            Action::Restart => "Restart",
        }
    }
}

/// One node with its engine, as Control Center and `engine status` show it.
#[derive(Debug, Clone, FromRow)]
pub struct NodeEngine {
    pub name: String,
    pub address: String,
    #[sqlx(try_from = "super::Flag")]
    pub activated: bool,
    pub last_heartbeat: i64,
    pub engine_state: String,
    pub engine_reason: Option<String>,
    pub engine_since: i64,
    pub engine_generation: i64,
    pub engine_port: Option<i64>,
    #[sqlx(try_from = "super::Flag")]
    pub engine_wanted: bool,
    pub engine_live: Option<String>,
    #[sqlx(try_from = "super::Flag")]
    pub dns_configured: bool,
}

impl NodeEngine {
    pub fn state(&self) -> EngineState {
        EngineState::parse(&self.engine_state)
    }

    pub fn live(&self) -> Option<Live> {
        self.engine_live
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok())
    }
}

const NODE_COLUMNS: &str = "name, address, activated, last_heartbeat, engine_state, engine_reason,
    engine_since, engine_generation, engine_port, engine_wanted, engine_live, dns_configured";

pub async fn nodes(pool: &AnyPool) -> AppResult<Vec<NodeEngine>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY name");
    Ok(sqlx::query_as::<_, NodeEngine>(&sql)
        .fetch_all(pool)
        .await?)
}

pub async fn node(pool: &AnyPool, name: &str) -> AppResult<Option<NodeEngine>> {
    let sql = format!("SELECT {NODE_COLUMNS} FROM nodes WHERE name = $1");
    Ok(sqlx::query_as::<_, NodeEngine>(&sql)
        .bind(name)
        .fetch_optional(pool)
        .await?)
}

/// A gateway as the engine runs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct SnapshotGateway {
    pub id: i64,
    pub kind: String,
    pub description: String,
    pub server: String,
    pub port: i64,
    pub test_mailbox: Option<String>,
    /// Microsoft 365 only (GR-1); absent from snapshots taken before.
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub cloud: Option<String>,
    #[serde(default)]
    pub signin_url: Option<String>,
    #[serde(default)]
    pub graph_url: Option<String>,
}

/// Shared credentials as stored: still encrypted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct SnapshotCredentials {
    pub kind: String,
    pub account_name: String,
    pub password_nonce: Vec<u8>,
    pub password_ciphertext: Vec<u8>,
}

/// One consistent view of everything the engine picks up only on (re)start
/// (EN-1), read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub generation: i64,
    pub gateways: Vec<SnapshotGateway>,
    pub credentials: Vec<SnapshotCredentials>,
    /// Trusted certificates, DER, by SHA-256 fingerprint order.
    pub trust: Vec<Vec<u8>>,
    pub params: ServiceParams,
    pub locales: Vec<String>,
}

/// Reads the snapshot for `node` inside one read transaction: in WAL mode
/// every read after the first sees the same database state, so a change
/// committed meanwhile is either wholly in it (with its generation) or not.
pub async fn load_snapshot(pool: &AnyPool, node: &str) -> AppResult<Snapshot> {
    let mut tx = pool.begin().await?;
    let generation: i64 =
        sqlx::query_scalar("SELECT COALESCE(MAX(generation), 0) FROM config_changes")
            .fetch_one(&mut *tx)
            .await?;
    let gateways = sqlx::query_as::<_, SnapshotGateway>(
        "SELECT id, kind, description, server, port, test_mailbox, tenant, cloud, signin_url,
                graph_url
         FROM gateways ORDER BY id",
    )
    .fetch_all(&mut *tx)
    .await?;
    let credentials = sqlx::query_as::<_, SnapshotCredentials>(
        "SELECT kind, account_name, password_nonce, password_ciphertext
         FROM exchange_credentials ORDER BY kind",
    )
    .fetch_all(&mut *tx)
    .await?;
    let trust: Vec<Vec<u8>> =
        sqlx::query_scalar("SELECT der FROM trusted_certificates ORDER BY sha256")
            .fetch_all(&mut *tx)
            .await?;
    let params = super::params::load(&mut tx, node).await?;
    let locales = super::locales::installed_on(&mut tx, node).await?;
    tx.commit().await?;
    Ok(Snapshot {
        generation,
        gateways,
        credentials,
        trust,
        params,
        locales,
    })
}

/// The snapshot the node's engine last started with successfully, if any
/// (and if this build still reads it).
pub async fn stored_snapshot(pool: &AnyPool, node: &str) -> AppResult<Option<Snapshot>> {
    let json: Option<String> =
        sqlx::query_scalar("SELECT snapshot FROM engine_snapshots WHERE node = $1")
            .bind(node)
            .fetch_optional(pool)
            .await?;
    Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
}

/// Records a state change of the node's engine. `engine_generation` is left
/// alone: only a successful start moves it (SV-3).
pub async fn set_state(
    pool: &AnyPool,
    node: &str,
    state: EngineState,
    reason: Option<&str>,
    now: i64,
) -> AppResult<()> {
    sqlx::query(
        "UPDATE nodes SET engine_state = $2, engine_reason = $3, engine_since = $4,
             engine_port = CASE WHEN $2 = 'running' THEN engine_port ELSE NULL END,
             engine_live = CASE WHEN $2 = 'running' THEN engine_live ELSE NULL END
         WHERE name = $1",
    )
    .bind(node)
    .bind(state.as_str())
    .bind(reason)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// A successful start: the node runs `snapshot`'s generation, which clears
/// its share of the restart banner, and the snapshot is kept for resuming.
pub async fn mark_started(
    pool: &AnyPool,
    node: &str,
    snapshot: &Snapshot,
    port: u16,
    now: i64,
) -> AppResult<()> {
    let json = serde_json::to_string(snapshot)
        .map_err(|e| AppError::Config(format!("cannot serialise the engine snapshot: {e}")))?;
    let mut tx = super::begin_write(pool).await?;
    sqlx::query(
        "UPDATE nodes SET engine_state = 'running', engine_reason = NULL, engine_since = $2,
             engine_generation = $3, engine_port = $4
         WHERE name = $1",
    )
    .bind(node)
    .bind(now)
    .bind(snapshot.generation)
    .bind(i64::from(port))
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO engine_snapshots (node, generation, snapshot, taken_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (node) DO UPDATE SET generation = excluded.generation,
             snapshot = excluded.snapshot, taken_at = excluded.taken_at",
    )
    .bind(node)
    .bind(snapshot.generation)
    .bind(json)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// What the running engine follows without a restart (EN-1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Live {
    /// Users assigned to the node with calendar presence switched on.
    pub calendar_users: i64,
    pub calendar_spread_seconds: u32,
    pub ews_status_frequency_minutes: u32,
    pub display_out_of_office: bool,
    /// Microsoft 365 Poll Interval (GR-5): applies incrementally.
    #[serde(default = "default_poll_minutes")]
    pub m365_poll_interval_minutes: u32,
}

fn default_poll_minutes() -> u32 {
    5
}

/// Reads the live view for `node` from the current configuration.
pub async fn read_live(pool: &AnyPool, node: &str) -> AppResult<Live> {
    let mut conn = pool.acquire().await?;
    let calendar_users: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM users WHERE node = $1 AND calendar_enabled = 1 AND role = 'end_user'",
    )
    .bind(node)
    .fetch_one(&mut *conn)
    .await?;
    let params = super::params::load(&mut conn, node).await?;
    Ok(Live {
        calendar_users,
        calendar_spread_seconds: params.calendar_spread_seconds,
        ews_status_frequency_minutes: params.ews_status_frequency_minutes,
        display_out_of_office: params.display_out_of_office,
        m365_poll_interval_minutes: params.m365_poll_interval_minutes,
    })
}

pub async fn set_live(pool: &AnyPool, node: &str, live: &Live) -> AppResult<()> {
    let json = serde_json::to_string(live)
        .map_err(|e| AppError::Config(format!("cannot serialise the live view: {e}")))?;
    sqlx::query("UPDATE nodes SET engine_live = $2 WHERE name = $1 AND engine_state = 'running'")
        .bind(node)
        .bind(json)
        .execute(pool)
        .await?;
    Ok(())
}

/// Whether the engine should run: Start/Restart set it, Stop clears it, so
/// a stopped engine stays stopped across process restarts.
pub async fn set_wanted(pool: &AnyPool, node: &str, wanted: bool) -> AppResult<()> {
    sqlx::query("UPDATE nodes SET engine_wanted = $2 WHERE name = $1")
        .bind(node)
        .bind(super::Flag(wanted))
        .execute(pool)
        .await?;
    Ok(())
}

#[derive(Debug, Clone, FromRow)]
pub struct Command {
    pub id: i64,
    pub node: String,
    pub action: String,
    pub actor: String,
    pub requested_at: i64,
    pub done_at: Option<i64>,
    pub outcome: Option<String>,
}

impl Command {
    pub fn action(&self) -> Option<Action> {
        Action::parse(&self.action)
    }
}

/// Asks `node`'s engine to start, stop or restart; the node picks it up
/// within its poll interval. Refused for an unknown node.
pub async fn request(
    pool: &AnyPool,
    node: &str,
    action: Action,
    actor: &str,
    now: i64,
) -> AppResult<i64> {
    let mut tx = super::begin_write(pool).await?;
    let known: Option<String> = sqlx::query_scalar("SELECT name FROM nodes WHERE name = $1")
        .bind(node)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Err(AppError::NotFound);
    }
    let id = sqlx::query_scalar(
        "INSERT INTO engine_commands (node, action, actor, requested_at) VALUES ($1, $2, $3, $4)
         RETURNING id",
    )
    .bind(node)
    .bind(action.as_str())
    .bind(actor)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    super::notify::send(&mut tx, super::notify::ENGINE_COMMANDS, node).await?;
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action: &format!("engine {}", action.as_str()),
            target: &format!("Presence Engine on {node}"),
            before: None,
            after: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// The node's oldest open command.
pub async fn next_open(pool: &AnyPool, node: &str) -> AppResult<Option<Command>> {
    Ok(sqlx::query_as::<_, Command>(
        "SELECT id, node, action, actor, requested_at, done_at, outcome FROM engine_commands
         WHERE node = $1 AND done_at IS NULL ORDER BY id LIMIT 1",
    )
    .bind(node)
    .fetch_optional(pool)
    .await?)
}

pub async fn finish(pool: &AnyPool, id: i64, outcome: &str, now: i64) -> AppResult<()> {
    sqlx::query("UPDATE engine_commands SET done_at = $2, outcome = $3 WHERE id = $1")
        .bind(id)
        .bind(now)
        .bind(outcome)
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn command(pool: &AnyPool, id: i64) -> AppResult<Option<Command>> {
    Ok(sqlx::query_as::<_, Command>(
        "SELECT id, node, action, actor, requested_at, done_at, outcome FROM engine_commands
         WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

/// Open commands per node, for Control Center ("Restart requested ...").
pub async fn open_commands(pool: &AnyPool) -> AppResult<Vec<Command>> {
    Ok(sqlx::query_as::<_, Command>(
        "SELECT id, node, action, actor, requested_at, done_at, outcome FROM engine_commands
         WHERE done_at IS NULL ORDER BY id",
    )
    .fetch_all(pool)
    .await?)
}

/// A per-node switch the console sets for several nodes at once.
#[derive(Debug, Clone, Copy)]
pub enum NodeSwitch {
    /// SV-2: the Presence Engine is activated on the node.
    Activated,
    /// SY-2: DNS is configured on the node's server.
    DnsConfigured,
}

impl NodeSwitch {
    fn column(self) -> &'static str {
        match self {
            NodeSwitch::Activated => "activated",
            NodeSwitch::DnsConfigured => "dns_configured",
        }
    }
}

/// Sets `switch` on each named node, with an audit entry per node that
/// changed, in one transaction. Returns how many nodes changed; unknown
/// names are ignored.
pub async fn set_switch(
    pool: &AnyPool,
    switch: NodeSwitch,
    values: &[(String, bool)],
    actor: &str,
    now: i64,
) -> AppResult<usize> {
    let column = switch.column();
    let mut tx = super::begin_write(pool).await?;
    let mut changed = 0;
    for (node, on) in values {
        let before: Option<super::Flag> =
            sqlx::query_scalar(&format!("SELECT {column} FROM nodes WHERE name = $1"))
                .bind(node)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(super::Flag(before)) = before else {
            continue;
        };
        if before == *on {
            continue;
        }
        sqlx::query(&format!("UPDATE nodes SET {column} = $2 WHERE name = $1"))
            .bind(node)
            .bind(super::Flag(*on))
            .execute(&mut *tx)
            .await?;
        let action = match (switch, on) {
            (NodeSwitch::Activated, true) => "activate service",
            (NodeSwitch::Activated, false) => "deactivate service",
            (NodeSwitch::DnsConfigured, _) => "update system settings",
        };
        let target = match switch {
            NodeSwitch::Activated => format!("Presence Engine on {node}"),
            NodeSwitch::DnsConfigured => format!("node {node}"),
        };
        super::audit::record(
            &mut tx,
            super::audit::Entry {
                actor,
                action,
                target: &target,
                before: Some(serde_json::json!({ column: before })),
                after: Some(serde_json::json!({ column: on })),
            },
            now,
        )
        .await?;
        changed += 1;
    }
    tx.commit().await?;
    Ok(changed)
}

pub async fn dns_configured(pool: &AnyPool, node: &str) -> AppResult<bool> {
    let stored: Option<super::Flag> =
        sqlx::query_scalar("SELECT dns_configured FROM nodes WHERE name = $1")
            .bind(node)
            .fetch_optional(pool)
            .await?;
    Ok(stored.is_none_or(bool::from))
}

/// A calendar user the engine on a node reads (EN-2).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CalendarUser {
    pub user_id: String,
    pub mailbox: Option<String>,
}

/// The end users assigned to `node` with calendar presence switched on.
/// The calendar users of `nodes` (a node's own, and those of a peer it
/// serves after a failover, CL-4).
pub async fn calendar_users(pool: &AnyPool, nodes: &[String]) -> AppResult<Vec<CalendarUser>> {
    let mut users = Vec::new();
    for node in nodes {
        let some: Vec<CalendarUser> = sqlx::query_as(
            "SELECT user_id, mailbox FROM users
             WHERE node = $1 AND calendar_enabled = 1 AND role = 'end_user'",
        )
        .bind(node)
        .fetch_all(pool)
        .await?;
        users.extend(some);
    }
    Ok(users)
}

/// Why a user left a node's engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// Calendar presence was switched off.
    CalendarOff,
    /// The user is assigned to no node: no engine reads them.
    NoNode,
    /// Assigned to another node, whose engine publishes them now.
    OtherNode,
    /// Deleted (their published presence went with them).
    Deleted,
}

/// Why each of `users` is no longer among `node`'s calendar users.
pub async fn departures(
    pool: &AnyPool,
    node: &str,
    users: &[String],
) -> AppResult<Vec<(String, Departure)>> {
    let mut out = Vec::with_capacity(users.len());
    let mut conn = pool.acquire().await?;
    for user in users {
        let row: Option<(super::Flag, Option<String>, String)> =
            sqlx::query_as("SELECT calendar_enabled, node, role FROM users WHERE user_id = $1")
                .bind(user)
                .fetch_optional(&mut *conn)
                .await?;
        let why = match row {
            None => Departure::Deleted,
            Some((_, _, role)) if role != "end_user" => Departure::Deleted,
            Some((super::Flag(false), _, _)) => Departure::CalendarOff,
            Some((super::Flag(true), None, _)) => Departure::NoNode,
            Some((super::Flag(true), Some(other), _)) if other != node => Departure::OtherNode,
            // Back on this node already: the next roster read finds them.
            Some((super::Flag(true), Some(_), _)) => Departure::OtherNode,
        };
        out.push((user.clone(), why));
    }
    Ok(out)
}
