//! Service parameters per node (SPEC section 3). A missing row is the
//! catalogue's default.

use std::collections::HashMap;

use serde_json::json;
use sqlx::{AnyConnection, AnyPool};

use crate::domain::params::{AfterChange, Kind, Param, ServiceParams};
use crate::error::{AppError, AppResult};

use super::changes::{self, Restart};
use super::{audit, begin_write};

/// The stored values of one node, by parameter key.
pub async fn stored_values(
    conn: &mut AnyConnection,
    node: &str,
) -> AppResult<HashMap<String, String>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, value FROM service_parameters WHERE node = $1")
            .bind(node)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The typed parameters of one node; its name is the default Notification Host.
pub async fn load(conn: &mut AnyConnection, node: &str) -> AppResult<ServiceParams> {
    let values = stored_values(conn, node).await?;
    Ok(ServiceParams::from_values(&values, node))
}

/// The users assigned to `node`, for the suggested Calendar Spread.
pub async fn users_assigned(pool: &AnyPool, node: &str) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE node = $1")
            .bind(node)
            .fetch_one(pool)
            .await?,
    )
}

/// The notification port `node`'s running engine holds (None while it does
/// not run, or when there is no such node): that port is the engine's own,
/// not another program's.
pub async fn engine_port(pool: &AnyPool, node: &str) -> AppResult<Option<i64>> {
    Ok(
        sqlx::query_scalar::<_, Option<i64>>("SELECT engine_port FROM nodes WHERE name = $1")
            .bind(node)
            .fetch_optional(pool)
            .await?
            .flatten(),
    )
}

/// The value a parameter has on `node`: the stored one, else the default.
pub fn effective(stored: &HashMap<String, String>, param: &Param, node: &str) -> String {
    stored
        .get(param.key)
        .cloned()
        .unwrap_or_else(|| param.default_value(node))
}

/// One parameter whose value changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub param: &'static Param,
    pub before: String,
    pub after: String,
}

impl Change {
    /// "Service parameter Exchange Timeout on node-a: 3 → 5 seconds".
    pub fn summary(&self, node: &str) -> String {
        let shown = |value: &str| match self.param.kind {
            Kind::Choice(choices) => choices
                .iter()
                .find(|(v, _)| *v == value)
                .map_or(value, |(_, label)| *label)
                .to_owned(),
            Kind::HttpsUrl if value.is_empty() => "(empty)".to_owned(),
            _ => value.to_owned(),
        };
        let unit = match self.param.kind {
            // "50020 port" says nothing the label does not.
            Kind::Integer { .. } if self.param.unit != "port" => format!(" {}", self.param.unit),
            _ => String::new(),
        };
        format!(
            "Service parameter {} on {node}: {} → {}{unit}",
            self.param.label,
            shown(&self.before),
            shown(&self.after)
        )
    }

    /// What the change needs before the engine runs with it (SV-3).
    pub fn restart(&self) -> Option<Restart> {
        match self.param.after {
            AfterChange::Live => None,
            AfterChange::RestartRecommended => Some(Restart::Recommended),
            AfterChange::RestartRequired => Some(Restart::Required),
        }
    }
}

/// The parameters of `wanted` whose value differs from what `node` has.
pub fn diff(
    stored: &HashMap<String, String>,
    node: &str,
    wanted: &[(&'static Param, String)],
) -> Vec<Change> {
    wanted
        .iter()
        .filter_map(|(param, after)| {
            let before = effective(stored, param, node);
            (before != *after).then(|| Change {
                param,
                before,
                after: after.clone(),
            })
        })
        .collect()
}

/// Saves the parameters of `node` that differ from what it has, in one
/// transaction: a value equal to the default is stored as no row (a missing
/// row is the default), and each change gets its audit entry and, unless it
/// applies live, its restart record. Values are already parsed. Returns the
/// changes; none when nothing differs.
pub async fn save(
    pool: &AnyPool,
    node: &str,
    wanted: &[(&'static Param, String)],
    actor: &str,
    now: i64,
) -> AppResult<Vec<Change>> {
    let mut tx = begin_write(pool).await?;
    let known: Option<i64> = sqlx::query_scalar("SELECT 1 FROM nodes WHERE name = $1")
        .bind(node)
        .fetch_optional(&mut *tx)
        .await?;
    if known.is_none() {
        return Err(AppError::NotFound);
    }
    // Compared inside the transaction, so a concurrent save is not undone
    // unseen nor recorded twice.
    let stored = stored_values(&mut tx, node).await?;
    let changes = diff(&stored, node, wanted);
    for change in &changes {
        if change.after == change.param.default_value(node) {
            sqlx::query("DELETE FROM service_parameters WHERE node = $1 AND name = $2")
                .bind(node)
                .bind(change.param.key)
                .execute(&mut *tx)
                .await?;
        } else {
            sqlx::query(
                "INSERT INTO service_parameters (node, name, value, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (node, name) DO UPDATE SET value = excluded.value,
                     updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            )
            .bind(node)
            .bind(change.param.key)
            .bind(&change.after)
            .bind(now)
            .bind(actor)
            .execute(&mut *tx)
            .await?;
        }
        let target = format!("{node}: {}", change.param.label);
        audit::record(
            &mut tx,
            audit::Entry {
                actor,
                action: "service parameter updated",
                target: &target,
                before: Some(json!({ change.param.key: change.before })),
                after: Some(json!({ change.param.key: change.after })),
            },
            now,
        )
        .await?;
        if let Some(restart) = change.restart() {
            changes::record(&mut tx, &change.summary(node), actor, restart, now).await?;
        }
    }
    tx.commit().await?;
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::params::{EXCHANGE_AUTH, EXCHANGE_TIMEOUT, NOTIFICATION_PORT};

    fn param(key: &str) -> &'static Param {
        Param::by_key(key).unwrap()
    }

    #[test]
    fn diff_compares_with_stored_or_default() {
        let stored = HashMap::from([(EXCHANGE_TIMEOUT.to_owned(), "5".to_owned())]);
        let wanted = vec![
            (param(EXCHANGE_TIMEOUT), "5".to_owned()),
            (param(NOTIFICATION_PORT), "50020".to_owned()),
            (param(EXCHANGE_AUTH), "basic".to_owned()),
        ];
        let changes = diff(&stored, "node-a", &wanted);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].before, "auto");
        assert_eq!(changes[0].after, "basic");
    }

    #[test]
    fn summaries_name_the_parameter_node_values_and_unit() {
        let change = Change {
            param: param(EXCHANGE_TIMEOUT),
            before: "3".to_owned(),
            after: "5".to_owned(),
        };
        assert_eq!(
            change.summary("node-a"),
            "Service parameter Exchange Timeout on node-a: 3 → 5 seconds"
        );
        assert_eq!(change.restart(), Some(Restart::Required));
        let change = Change {
            param: param(EXCHANGE_AUTH),
            before: "auto".to_owned(),
            after: "basic".to_owned(),
        };
        assert_eq!(
            change.summary("node-a"),
            "Service parameter Exchange Server Authentication on node-a: \
             Auto (NTLMv2, then Basic) → Basic Only"
        );
        let change = Change {
            param: param(NOTIFICATION_PORT),
            before: "50020".to_owned(),
            after: "50021".to_owned(),
        };
        assert_eq!(
            change.summary("n"),
            "Service parameter Microsoft Exchange Notification Port on n: 50020 → 50021"
        );
        assert_eq!(change.restart(), Some(Restart::Recommended));
    }
}
