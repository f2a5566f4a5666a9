//! Published calendar presence (EN-5): the current state per user and the
//! ordered log of every change. A batch of transitions is written in one
//! transaction: current rows and log entries together.

use sqlx::AnyPool;

use crate::domain::presence::CalendarPresence;
use crate::error::{AppError, AppResult};

/// One user's presence to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub user_id: String,
    pub presence: CalendarPresence,
    pub since: i64,
    pub until: Option<i64>,
    /// The gateway's description.
    pub gateway: Option<String>,
    /// Why the state is unknown, when it is.
    pub reason: Option<String>,
}

/// A published state, current or from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The log's sequence number (0 for a current row read alone).
    pub seq: i64,
    pub user_id: String,
    pub presence: CalendarPresence,
    pub since: i64,
    pub until: Option<i64>,
    pub gateway: Option<String>,
    pub reason: Option<String>,
}

type Row = (
    i64,
    String,
    String,
    i64,
    Option<i64>,
    Option<String>,
    Option<String>,
);

fn published(row: Row) -> AppResult<Published> {
    let (seq, user_id, presence, since, until, gateway, reason) = row;
    let presence = CalendarPresence::parse(&presence).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("stored presence unreadable: {presence:?}"))
    })?;
    Ok(Published {
        seq,
        user_id,
        presence,
        since,
        until,
        gateway,
        reason,
    })
}

/// Writes the batch in one transaction: each known user's current row, and
/// one log entry per publication. Users that no longer exist are skipped.
/// Returns the log's sequence numbers of what was written.
pub async fn publish(pool: &AnyPool, batch: &[Publication], now: i64) -> AppResult<Vec<i64>> {
    write(pool, None, batch, now).await
}

/// As `publish`, for the engine of `node`, fenced (CL-4): only the users
/// of the nodes it serves by lease right now, checked inside the
/// transaction; the rest of the batch is dropped (another engine serves
/// them, or this node's lease expired).
pub async fn publish_as(
    pool: &AnyPool,
    node: &str,
    batch: &[Publication],
    now: i64,
) -> AppResult<Vec<i64>> {
    write(pool, Some(node), batch, now).await
}

async fn write(
    pool: &AnyPool,
    fence: Option<&str>,
    batch: &[Publication],
    now: i64,
) -> AppResult<Vec<i64>> {
    let mut tx = super::begin_write(pool).await?;
    // Users with no node (published `unknown` on leaving one) pass the
    // fence: no engine serves them any more.
    let (fence_sql, allowed) = match fence {
        None => (String::new(), Vec::new()),
        Some(node) => {
            let allowed = super::redundancy::may_publish_for(&mut tx, node, now).await?;
            if allowed.is_empty() {
                if !batch.is_empty() {
                    tracing::warn!(
                        node,
                        dropped = batch.len(),
                        "not publishing: by its redundancy lease this node serves no calendar users now (the lease ran out, or its peer serves them)"
                    );
                }
                tx.rollback().await?;
                return Ok(Vec::new());
            }
            let list: Vec<String> = (0..allowed.len()).map(|i| format!("${}", i + 8)).collect();
            (
                format!(" AND (node IS NULL OR node IN ({}))", list.join(", ")),
                allowed,
            )
        }
    };
    let upsert = format!(
        "INSERT INTO calendar_presence
             (user_id, presence, since, until, gateway, reason, updated_at)
         SELECT id, $2, $3, $4, $5, $6, $7 FROM users WHERE user_id = $1{fence_sql}
         ON CONFLICT (user_id) DO UPDATE SET
             presence = excluded.presence, since = excluded.since,
             until = excluded.until, gateway = excluded.gateway,
             reason = excluded.reason, updated_at = excluded.updated_at"
    );
    let mut seqs = Vec::with_capacity(batch.len());
    for p in batch {
        let mut query = sqlx::query(&upsert)
            .bind(&p.user_id)
            .bind(p.presence.as_str())
            .bind(p.since)
            .bind(p.until)
            .bind(&p.gateway)
            .bind(&p.reason)
            .bind(now);
        for node in &allowed {
            query = query.bind(node);
        }
        let written = query.execute(&mut *tx).await?.rows_affected();
        if written == 0 {
            continue;
        }
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO presence_events (user_id, presence, since, until, gateway, at)
             SELECT user_id, $2, $3, $4, $5, $6 FROM users WHERE user_id = $1
             RETURNING seq",
        )
        .bind(&p.user_id)
        .bind(p.presence.as_str())
        .bind(p.since)
        .bind(p.until)
        .bind(&p.gateway)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        seqs.push(seq);
    }
    if let Some(newest) = seqs.iter().max() {
        super::notify::send(&mut tx, super::notify::PRESENCE_EVENTS, &newest.to_string()).await?;
    }
    tx.commit().await?;
    Ok(seqs)
}

/// A user's current published presence, if any was published.
pub async fn current(pool: &AnyPool, user_id: &str) -> AppResult<Option<Published>> {
    let row: Option<Row> = sqlx::query_as(
        "SELECT 0, u.user_id, p.presence, p.since, p.until, p.gateway, p.reason
         FROM calendar_presence p JOIN users u ON u.id = p.user_id
         WHERE u.user_id = $1",
    )
    .bind(user_id.trim())
    .fetch_optional(pool)
    .await?;
    row.map(published).transpose()
}

/// Log entries after `seq`, oldest first, at most `limit`; only `user_id`'s
/// when given (an end user's stream).
pub async fn events_after(
    pool: &AnyPool,
    seq: i64,
    user_id: Option<&str>,
    limit: i64,
) -> AppResult<Vec<Published>> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT seq, user_id, presence, since, until, gateway, NULL FROM presence_events
         WHERE seq > $1 AND ($2 IS NULL OR user_id = $2 COLLATE NOCASE)
         ORDER BY seq LIMIT $3",
    )
    .bind(seq)
    .bind(user_id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(published).collect()
}

/// The newest sequence number (0 for an empty log): where a new stream
/// without `Last-Event-ID` starts.
pub async fn last_seq(pool: &AnyPool) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM presence_events")
            .fetch_one(pool)
            .await?,
    )
}

/// Why a calendar user assigned to no node is `unknown`.
pub const NO_NODE: &str = "assigned to no node, so no Presence Engine reads this calendar";

/// Why a user's presence is `unknown` once calendar presence is off.
pub const CALENDAR_OFF: &str = "calendar presence is off";

/// An end user's calendar presence as the API and pages show it (EN-5):
/// the published state while calendar presence is on, `unknown` while it is
/// off or nothing was read yet. `None` for no such end user.
pub async fn of_end_user(pool: &AnyPool, user_id: &str) -> AppResult<Option<Published>> {
    type Joined = (
        String,
        super::Flag,
        Option<String>,
        i64,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
    );
    let row: Option<Joined> = sqlx::query_as(
        "SELECT u.user_id, u.calendar_enabled, u.node, u.updated_at,
                p.presence, p.since, p.until, p.gateway, p.reason
         FROM users u LEFT JOIN calendar_presence p ON p.user_id = u.id
         WHERE u.user_id = $1 AND u.role = 'end_user'",
    )
    .bind(user_id.trim())
    .fetch_optional(pool)
    .await?;
    let Some((
        user_id,
        super::Flag(enabled),
        node,
        updated_at,
        presence,
        since,
        until,
        gateway,
        reason,
    )) = row
    else {
        return Ok(None);
    };
    match (enabled, presence, since) {
        (true, _, _) if node.is_none() => Ok(Some(Published {
            seq: 0,
            user_id,
            presence: CalendarPresence::Unknown,
            since: updated_at,
            until: None,
            gateway: None,
            reason: Some(NO_NODE.to_owned()),
        })),
        (true, Some(presence), Some(since)) => {
            published((0, user_id, presence, since, until, gateway, reason)).map(Some)
        }
        (enabled, _, _) => Ok(Some(Published {
            seq: 0,
            user_id,
            presence: CalendarPresence::Unknown,
            since: updated_at,
            until: None,
            gateway: None,
            reason: Some(
                if enabled {
                    "no calendar has been read yet"
                } else {
                    CALENDAR_OFF
                }
                .to_owned(),
            ),
        })),
    }
}

/// What is published for `node`'s calendar users (user ID, state, until),
/// so an engine starting there publishes only what changed.
pub async fn published_on_nodes(
    pool: &AnyPool,
    nodes: &[String],
) -> AppResult<Vec<(String, CalendarPresence, Option<i64>)>> {
    let mut all = Vec::new();
    for node in nodes {
        all.extend(published_on_node(pool, node).await?);
    }
    Ok(all)
}

async fn published_on_node(
    pool: &AnyPool,
    node: &str,
) -> AppResult<Vec<(String, CalendarPresence, Option<i64>)>> {
    let rows: Vec<(String, String, Option<i64>)> = sqlx::query_as(
        "SELECT u.user_id, p.presence, p.until
         FROM calendar_presence p JOIN users u ON u.id = p.user_id
         WHERE u.node = $1 AND u.calendar_enabled = 1 AND u.role = 'end_user'",
    )
    .bind(node)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(user, presence, until)| {
            CalendarPresence::parse(&presence).map(|p| (user, p, until))
        })
        .collect())
}
