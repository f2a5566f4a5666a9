//! Presence Redundancy Groups (CL-4): pairs of nodes, their leases, and
//! who serves each node's calendar users.
//!
//! Each node of a group with *Enable High Availability* renews its lease
//! (`node_leases`) every few seconds from its running engine (`renew`). In
//! the same transaction it decides ownership, so the database alone says
//! who serves whom:
//! - the peer's lease expired while the peer served its own users: this
//!   node takes them over (failover);
//! - this node serves the peer's users and the peer renews again: it hands
//!   them back (fallback) — the peer takes them at its next renewal;
//! - this node's users are served by the peer and the peer's lease
//!   expired too: it takes its own back.
//!
//! Every publication checks the same rows inside its transaction
//! (`store::presence::publish_as`): a node whose lease expired, or whose
//! users are served by another, writes nothing. Writes go through
//! `begin_write`, one at a time, so a takeover and a publication by the
//! node it fenced out never interleave. Lease times are each node's own
//! clock (as heartbeats are): the nodes' clocks must agree to well within
//! *Failover After* (NTP).

use serde_json::json;
use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::domain::redundancy::GroupForm;
use crate::domain::refusal::RedundancyRefusal;
use crate::error::{AppError, AppResult};

use super::{Flag, audit, begin_write};

#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct Group {
    pub id: i64,
    pub name: String,
    pub node_a: String,
    pub node_b: String,
    #[sqlx(try_from = "super::Flag")]
    pub high_availability: bool,
    pub failover_after: i64,
    pub updated_at: i64,
    pub updated_by: String,
}

impl Group {
    /// The other member, if `node` is one.
    pub fn peer_of(&self, node: &str) -> Option<&str> {
        if self.node_a == node {
            Some(&self.node_b)
        } else if self.node_b == node {
            Some(&self.node_a)
        } else {
            None
        }
    }
}

/// A node's lease and who serves its users now.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct Lease {
    pub node: String,
    pub expires_at: i64,
    pub renewed_at: i64,
    pub served_by: String,
    pub served_since: i64,
}

impl Lease {
    /// Its node's users are served by its peer (a failover holds).
    pub fn failed_over(&self) -> bool {
        self.served_by != self.node
    }
}

const GROUP_COLUMNS: &str =
    "id, name, node_a, node_b, high_availability, failover_after, updated_at, updated_by";
const LEASE_COLUMNS: &str = "node, expires_at, renewed_at, served_by, served_since";

pub async fn groups(pool: &AnyPool) -> AppResult<Vec<Group>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GROUP_COLUMNS} FROM redundancy_groups ORDER BY name"
    ))
    .fetch_all(pool)
    .await?)
}

pub async fn group(pool: &AnyPool, id: i64) -> AppResult<Option<Group>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GROUP_COLUMNS} FROM redundancy_groups WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn leases(pool: &AnyPool) -> AppResult<Vec<Lease>> {
    Ok(sqlx::query_as(&format!(
        "SELECT {LEASE_COLUMNS} FROM node_leases ORDER BY node"
    ))
    .fetch_all(pool)
    .await?)
}

async fn leases_in(conn: &mut AnyConnection) -> AppResult<Vec<Lease>> {
    Ok(
        sqlx::query_as(&format!("SELECT {LEASE_COLUMNS} FROM node_leases"))
            .fetch_all(conn)
            .await?,
    )
}

fn group_json(form: &GroupForm) -> serde_json::Value {
    json!({
        "name": form.name,
        "node_a": form.node_a,
        "node_b": form.node_b,
        "high_availability": form.high_availability,
        "failover_after": form.failover_after,
    })
}

fn stored_json(group: &Group) -> serde_json::Value {
    json!({
        "name": group.name,
        "node_a": group.node_a,
        "node_b": group.node_b,
        "high_availability": group.high_availability,
        "failover_after": group.failover_after,
    })
}

/// Adds a group (`id` None) or changes one; its id. Refused when a node is
/// unknown or in another group, or the name is taken. A group without High
/// Availability, and a node that left a group, have no lease: each node
/// serves its own users again.
pub async fn save(
    pool: &AnyPool,
    id: Option<i64>,
    form: &GroupForm,
    actor: &str,
    now: i64,
) -> AppResult<i64> {
    let mut tx = begin_write(pool).await?;
    let before: Option<Group> = match id {
        Some(id) => Some(
            sqlx::query_as(&format!(
                "SELECT {GROUP_COLUMNS} FROM redundancy_groups WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(AppError::NotFound)?,
        ),
        None => None,
    };
    let this = id.unwrap_or(0);
    let taken: Option<i64> =
        sqlx::query_scalar("SELECT id FROM redundancy_groups WHERE name = $1 AND id <> $2")
            .bind(&form.name)
            .bind(this)
            .fetch_optional(&mut *tx)
            .await?;
    if taken.is_some() {
        return Err(AppError::refused(RedundancyRefusal::NameTaken));
    }
    for (field, node) in [("node_a", &form.node_a), ("node_b", &form.node_b)] {
        let known: Option<String> = sqlx::query_scalar("SELECT name FROM nodes WHERE name = $1")
            .bind(node)
            .fetch_optional(&mut *tx)
            .await?;
        if known.is_none() {
            return Err(AppError::refused(RedundancyRefusal::UnknownNode {
                field,
                node: node.clone(),
            }));
        }
        let other: Option<String> = sqlx::query_scalar(
            "SELECT name FROM redundancy_groups
             WHERE id <> $1 AND (node_a = $2 OR node_b = $2)",
        )
        .bind(this)
        .bind(node)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(group) = other {
            return Err(AppError::refused(RedundancyRefusal::NodeInGroup {
                field,
                node: node.clone(),
                group,
            }));
        }
    }
    let id = match id {
        Some(id) => {
            sqlx::query(
                "UPDATE redundancy_groups SET name = $2, node_a = $3, node_b = $4,
                     high_availability = $5, failover_after = $6, updated_at = $7,
                     updated_by = $8
                 WHERE id = $1",
            )
            .bind(id)
            .bind(&form.name)
            .bind(&form.node_a)
            .bind(&form.node_b)
            .bind(Flag(form.high_availability))
            .bind(i64::from(form.failover_after))
            .bind(now)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
            id
        }
        None => {
            sqlx::query_scalar(
                "INSERT INTO redundancy_groups
                     (name, node_a, node_b, high_availability, failover_after, updated_at,
                      updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(&form.name)
            .bind(&form.node_a)
            .bind(&form.node_b)
            .bind(Flag(form.high_availability))
            .bind(i64::from(form.failover_after))
            .bind(now)
            .bind(actor)
            .fetch_one(&mut *tx)
            .await?
        }
    };
    // Leases of nodes that left the group, or of a group that no longer
    // fails over, go: those nodes serve their own users again.
    let mut ended: Vec<&str> = Vec::new();
    if let Some(before) = &before {
        for node in [&before.node_a, &before.node_b] {
            if !form.high_availability || (node != &form.node_a && node != &form.node_b) {
                ended.push(node);
            }
        }
    }
    if !form.high_availability {
        ended.extend([form.node_a.as_str(), form.node_b.as_str()]);
    }
    for node in ended {
        sqlx::query("DELETE FROM node_leases WHERE node = $1")
            .bind(node)
            .execute(&mut *tx)
            .await?;
    }
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: if before.is_some() {
                "redundancy_group.update"
            } else {
                "redundancy_group.add"
            },
            target: &form.name,
            before: before.as_ref().map(stored_json),
            after: Some(group_json(form)),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(id)
}

/// Deletes a group; its nodes serve their own users again.
pub async fn delete(pool: &AnyPool, id: i64, actor: &str, now: i64) -> AppResult<Group> {
    let mut tx = begin_write(pool).await?;
    let group: Group = sqlx::query_as(&format!(
        "SELECT {GROUP_COLUMNS} FROM redundancy_groups WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(AppError::NotFound)?;
    sqlx::query("DELETE FROM node_leases WHERE node = $1 OR node = $2")
        .bind(&group.node_a)
        .bind(&group.node_b)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM redundancy_groups WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "redundancy_group.delete",
            target: &group.name,
            before: Some(stored_json(&group)),
            after: None,
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(group)
}

/// The audit log's actor for what the cluster decides by itself.
pub const CLUSTER_ACTOR: &str = "cluster";

/// Renews `me`'s lease and settles who serves whom (see the module's
/// comment), in one transaction; the nodes whose calendar users `me`
/// serves from now on (its own first, when it serves them).
pub async fn renew(pool: &AnyPool, me: &str, now: i64) -> AppResult<Vec<String>> {
    let mut tx = begin_write(pool).await?;
    let group: Option<Group> = sqlx::query_as(&format!(
        "SELECT {GROUP_COLUMNS} FROM redundancy_groups WHERE node_a = $1 OR node_b = $1"
    ))
    .bind(me)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(group) = group.filter(|g| g.high_availability) else {
        tx.commit().await?;
        return Ok(vec![me.to_owned()]);
    };
    let peer = group.peer_of(me).unwrap_or(me).to_owned();
    let leases = leases_in(&mut tx).await?;
    let find = |node: &str| leases.iter().find(|l| l.node == node).cloned();
    let expires = now + group.failover_after;
    // A peer is taken over only by a node that held its own lease until
    // now: after an outage of the database (or of this node) both leases
    // have run out, and each node should first renew its own rather than
    // take the other's users for one round.
    let steady = find(me).is_some_and(|mine| mine.expires_at > now);
    let mine = match find(me) {
        Some(mine) => {
            sqlx::query("UPDATE node_leases SET expires_at = $2, renewed_at = $3 WHERE node = $1")
                .bind(me)
                .bind(expires)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            mine
        }
        None => insert_lease(&mut tx, me, expires, now).await?,
    };
    // A peer not seen yet has a whole Failover After to show up.
    let theirs = match find(&peer) {
        Some(theirs) => theirs,
        None => insert_lease(&mut tx, &peer, expires, now).await?,
    };
    let peer_alive = theirs.expires_at > now;
    let mut serving = Vec::with_capacity(2);
    // My own users.
    if mine.served_by == me {
        serving.push(me.to_owned());
    } else if !peer_alive || mine.served_by != peer {
        // Whoever served them is gone: take them back.
        serve(
            &mut tx,
            me,
            me,
            now,
            "redundancy_group.fallback",
            &mine.served_by,
        )
        .await?;
        serving.push(me.to_owned());
    }
    // The peer's users.
    if theirs.served_by == peer && !peer_alive && steady {
        serve(&mut tx, &peer, me, now, "redundancy_group.failover", &peer).await?;
        serving.push(peer);
    } else if theirs.served_by == me && peer_alive {
        // Back and renewing: handed back now; it takes them at its next
        // renewal, and from this commit on nothing of theirs is published
        // here.
        serve(&mut tx, &peer, &peer, now, "redundancy_group.fallback", me).await?;
    } else if theirs.served_by == me {
        serving.push(peer);
    }
    tx.commit().await?;
    Ok(serving)
}

async fn insert_lease(
    conn: &mut AnyConnection,
    node: &str,
    expires: i64,
    now: i64,
) -> AppResult<Lease> {
    sqlx::query(
        "INSERT INTO node_leases (node, expires_at, renewed_at, served_by, served_since)
         VALUES ($1, $2, $3, $1, $3)",
    )
    .bind(node)
    .bind(expires)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Lease {
        node: node.to_owned(),
        expires_at: expires,
        renewed_at: now,
        served_by: node.to_owned(),
        served_since: now,
    })
}

/// From now on `by` serves `node`'s users; the audit log says so.
async fn serve(
    conn: &mut AnyConnection,
    node: &str,
    by: &str,
    now: i64,
    action: &str,
    from: &str,
) -> AppResult<()> {
    sqlx::query("UPDATE node_leases SET served_by = $2, served_since = $3 WHERE node = $1")
        .bind(node)
        .bind(by)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    audit::record(
        conn,
        audit::Entry {
            actor: CLUSTER_ACTOR,
            action,
            target: node,
            before: Some(json!({ "served_by": from })),
            after: Some(json!({ "served_by": by })),
        },
        now,
    )
    .await?;
    tracing::warn!(node, served_by = by, action, "presence redundancy");
    Ok(())
}

/// Ends `me`'s lease at once when its peer renews its own (`me`'s engine
/// stops on purpose): the peer takes every user `me` served over at its
/// next renewal, and they keep their presence meanwhile. False, and
/// nothing changed, when `me` is in no group with High Availability or the
/// peer is silent too: then nobody keeps those users' presence true.
pub async fn hand_over(pool: &AnyPool, me: &str, now: i64) -> AppResult<bool> {
    let mut tx = begin_write(pool).await?;
    let peer_alive: Option<i64> = sqlx::query_scalar(
        "SELECT l.expires_at FROM redundancy_groups g
         JOIN node_leases l ON l.node = CASE WHEN g.node_a = $1 THEN g.node_b ELSE g.node_a END
         WHERE (g.node_a = $1 OR g.node_b = $1) AND g.high_availability = 1
             AND l.expires_at > $2",
    )
    .bind(me)
    .bind(now)
    .fetch_optional(&mut *tx)
    .await?;
    if peer_alive.is_none() {
        tx.commit().await?;
        return Ok(false);
    }
    let ended =
        sqlx::query("UPDATE node_leases SET expires_at = $2 WHERE node = $1 AND expires_at > $2")
            .bind(me)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    tx.commit().await?;
    Ok(ended > 0)
}

/// Ends `me`'s lease at once (its engine stopped on purpose): the peer
/// takes its users over at its next renewal instead of after Failover
/// After.
pub async fn give_up(pool: &AnyPool, me: &str, now: i64) -> AppResult<()> {
    sqlx::query("UPDATE node_leases SET expires_at = $2 WHERE node = $1 AND expires_at > $2")
        .bind(me)
        .bind(now)
        .execute(pool)
        .await?;
    Ok(())
}

/// The nodes whose users `me` may publish for now, read inside the
/// publishing transaction (fencing): none once its own lease expired;
/// otherwise each node it serves by lease, and itself where it has no
/// lease (no group, or one without High Availability).
pub async fn may_publish_for(
    conn: &mut AnyConnection,
    me: &str,
    now: i64,
) -> AppResult<Vec<String>> {
    let leases = leases_in(conn).await?;
    if leases.iter().any(|l| l.node == me && l.expires_at <= now) {
        return Ok(Vec::new());
    }
    let mut nodes: Vec<String> = leases
        .iter()
        .filter(|l| l.served_by == me)
        .map(|l| l.node.clone())
        .collect();
    if !leases.iter().any(|l| l.node == me) {
        nodes.push(me.to_owned());
    }
    Ok(nodes)
}
