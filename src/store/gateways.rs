//! Presence gateways and their shared credentials. The rules of GW-3 to GW-7
//! are checked again inside each write transaction, so two administrators
//! racing cannot break them; every change records its restart entry (SV-3)
//! and its audit entry in the same transaction.

use serde_json::json;
use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::domain::gateway::{
    AccountName, Description, GatewayKind, GraphSettings, Mailbox, Port, ServerLocation, may_add,
};
use crate::domain::refusal::GatewayRefusal;
use crate::error::{AppError, AppResult};
use crate::secrets::cipher::Sealed;

use super::changes::{self, Restart};
use super::{Backend, audit, begin_write};

#[derive(Debug, Clone, FromRow, serde::Deserialize)]
pub struct GatewayRow {
    pub id: i64,
    pub kind: String,
    pub description: String,
    pub server: String,
    pub port: i64,
    pub test_mailbox: Option<String>,
    pub last_verdict: Option<String>,
    pub last_checked_at: Option<i64>,
    /// Microsoft 365 only (GR-1): the tenant, the cloud's stored value, and
    /// the sign-in and Graph base URLs (the cloud's, or typed for Custom).
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub cloud: Option<String>,
    #[serde(default)]
    pub signin_url: Option<String>,
    #[serde(default)]
    pub graph_url: Option<String>,
}

impl GatewayRow {
    pub fn kind(&self) -> GatewayKind {
        // The CHECK constraint admits only the three kinds.
        GatewayKind::parse(&self.kind).unwrap_or(GatewayKind::Ews)
    }

    fn audit_view(&self, account: Option<&str>) -> serde_json::Value {
        if self.kind() == GatewayKind::Graph {
            return json!({
                "type": self.kind().label(),
                "description": self.description,
                "tenant": self.tenant,
                "application_client_id": account,
                "cloud": self.cloud,
                "signin_url": self.signin_url,
                "graph_url": self.graph_url,
                "test_mailbox": self.test_mailbox,
            });
        }
        json!({
            "type": self.kind().label(),
            "description": self.description,
            "presence_gateway": self.server,
            "port": self.port,
            "test_mailbox": self.test_mailbox,
            "account_name": account,
        })
    }
}

#[derive(Debug, Clone, FromRow)]
pub struct CredentialRow {
    pub kind: String,
    pub account_name: String,
    pub password_nonce: Vec<u8>,
    pub password_ciphertext: Vec<u8>,
}

/// A gateway as validated from the form. `password: None` keeps the stored
/// one. For Microsoft 365 (`graph: Some`), `account` is the Application
/// (client) ID, `password` the client secret, and `server`/`port` the Graph
/// URL's host and port, so the list's columns stay meaningful.
pub struct GatewayInput {
    pub kind: GatewayKind,
    pub description: Description,
    pub server: ServerLocation,
    pub port: Port,
    pub test_mailbox: Option<Mailbox>,
    pub account: AccountName,
    pub password: Option<Sealed>,
    pub graph: Option<GraphSettings>,
}

/// The Microsoft 365 columns to write: all four, or none for the others.
fn graph_columns(
    graph: Option<&GraphSettings>,
) -> (Option<&str>, Option<&str>, Option<&str>, Option<&str>) {
    match graph {
        Some(g) => (
            Some(g.tenant.as_str()),
            Some(g.cloud.as_str()),
            Some(g.signin_url.as_str()),
            Some(g.graph_url.as_str()),
        ),
        None => (None, None, None, None),
    }
}

fn graph_audit_view(graph: &GraphSettings) -> serde_json::Value {
    json!({
        "tenant": graph.tenant.as_str(),
        "application_client_id": graph.client_id.as_str(),
        "cloud": graph.cloud.label(),
        "signin_url": graph.signin_url.as_str(),
        "graph_url": graph.graph_url.as_str(),
    })
}

impl GatewayInput {
    fn audit_view(&self) -> serde_json::Value {
        if let Some(graph) = &self.graph {
            let mut view = graph_audit_view(graph);
            if let Some(map) = view.as_object_mut() {
                map.insert("type".into(), json!(self.kind.label()));
                map.insert("description".into(), json!(self.description.as_str()));
                map.insert(
                    "test_mailbox".into(),
                    json!(self.test_mailbox.as_ref().map(Mailbox::as_str)),
                );
                // Redacted like passwords (GW-7): whether it changed, never
                // what it is.
                map.insert(
                    "client_secret".into(),
                    json!(if self.password.is_some() {
                        "(changed)"
                    } else {
                        "(unchanged)"
                    }),
                );
            }
            return view;
        }
        json!({
            "type": self.kind.label(),
            "description": self.description.as_str(),
            "presence_gateway": self.server.to_string(),
            "port": self.port.get(),
            "test_mailbox": self.test_mailbox.as_ref().map(Mailbox::as_str),
            "account_name": self.account.as_str(),
            "account_password": if self.password.is_some() { "(changed)" } else { "(unchanged)" },
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Saved {
    pub id: i64,
    /// Whether the account name or password changed.
    pub credentials_changed: bool,
    /// Gateways that use these credentials (all EWS gateways, GW-4).
    pub sharing: i64,
}

const COLUMNS: &str = "id, kind, description, server, port, test_mailbox, last_verdict, \
                       last_checked_at, tenant, cloud, signin_url, graph_url";

/// Find and List (GW-1): all gateways, or those whose description or server
/// contains `search`, by description. The rows come back as one JSON array
/// in one row: sqlx hands SQLite rows over one at a time, which made a list
/// of a hundred gateways cost several times a console page.
pub async fn list(pool: &AnyPool, search: Option<&str>) -> AppResult<Vec<GatewayRow>> {
    let (array, object, as_text) = match Backend::of(pool) {
        Backend::Sqlite => ("json_group_array", "json_object", ""),
        Backend::Postgres => ("json_agg", "json_build_object", "::text"),
    };
    let json: String = sqlx::query_scalar(&format!(
        "SELECT COALESCE({array}({object}(
                    'id', id, 'kind', kind, 'description', description, 'server', server,
                    'port', port, 'test_mailbox', test_mailbox, 'last_verdict', last_verdict,
                    'last_checked_at', last_checked_at, 'tenant', tenant, 'cloud', cloud,
                    'signin_url', signin_url, 'graph_url', graph_url)){as_text}, '[]')
         FROM gateways
         WHERE $1 IS NULL OR instr(lower(description), lower($1)) > 0
                          OR instr(lower(server), lower($1)) > 0"
    ))
    .bind(search.filter(|s| !s.is_empty()))
    .fetch_one(pool)
    .await?;
    let mut rows: Vec<GatewayRow> = serde_json::from_str(&json)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("gateway list JSON: {e}")))?;
    rows.sort_by_cached_key(|g| g.description.to_lowercase());
    Ok(rows)
}

pub async fn find(pool: &AnyPool, id: i64) -> AppResult<Option<GatewayRow>> {
    let sql = format!("SELECT {COLUMNS} FROM gateways WHERE id = $1");
    Ok(sqlx::query_as::<_, GatewayRow>(&sql)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

async fn find_in(conn: &mut AnyConnection, id: i64) -> AppResult<Option<GatewayRow>> {
    let sql = format!("SELECT {COLUMNS} FROM gateways WHERE id = $1");
    Ok(sqlx::query_as::<_, GatewayRow>(&sql)
        .bind(id)
        .fetch_optional(conn)
        .await?)
}

pub async fn kinds(pool: &AnyPool) -> AppResult<Vec<GatewayKind>> {
    let mut conn = pool.acquire().await?;
    kinds_in(&mut conn).await
}

async fn kinds_in(conn: &mut AnyConnection) -> AppResult<Vec<GatewayKind>> {
    let kinds: Vec<String> = sqlx::query_scalar("SELECT kind FROM gateways")
        .fetch_all(conn)
        .await?;
    Ok(kinds.iter().filter_map(|k| GatewayKind::parse(k)).collect())
}

pub async fn credentials(pool: &AnyPool, kind: GatewayKind) -> AppResult<Option<CredentialRow>> {
    let mut conn = pool.acquire().await?;
    credentials_in(&mut conn, kind).await
}

async fn credentials_in(
    conn: &mut AnyConnection,
    kind: GatewayKind,
) -> AppResult<Option<CredentialRow>> {
    Ok(sqlx::query_as::<_, CredentialRow>(
        "SELECT kind, account_name, password_nonce, password_ciphertext
         FROM exchange_credentials WHERE kind = $1",
    )
    .bind(kind.as_str())
    .fetch_optional(conn)
    .await?)
}

/// Writes the credential set of `kind`; returns whether anything changed.
async fn save_credentials(
    conn: &mut AnyConnection,
    kind: GatewayKind,
    account: &AccountName,
    password: Option<&Sealed>,
    now: i64,
) -> AppResult<bool> {
    let stored = credentials_in(conn, kind).await?;
    match (&stored, password) {
        (None, None) => Err(AppError::refused(if kind == GatewayKind::Graph {
            GatewayRefusal::ClientSecretMissing
        } else {
            GatewayRefusal::PasswordMissing
        })),
        (None, Some(sealed)) => {
            sqlx::query(
                "INSERT INTO exchange_credentials
                     (kind, account_name, password_nonce, password_ciphertext, updated_at)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind.as_str())
            .bind(account.as_str())
            .bind(&sealed.nonce)
            .bind(&sealed.ciphertext)
            .bind(now)
            .execute(conn)
            .await?;
            Ok(true)
        }
        (Some(stored), password) => {
            let account_changed = stored.account_name != account.as_str();
            if !account_changed && password.is_none() {
                return Ok(false);
            }
            let (nonce, ciphertext) = match password {
                Some(sealed) => (sealed.nonce.clone(), sealed.ciphertext.clone()),
                None => (
                    stored.password_nonce.clone(),
                    stored.password_ciphertext.clone(),
                ),
            };
            sqlx::query(
                "UPDATE exchange_credentials SET account_name = $2, password_nonce = $3,
                     password_ciphertext = $4, updated_at = $5
                 WHERE kind = $1",
            )
            .bind(kind.as_str())
            .bind(account.as_str())
            .bind(nonce)
            .bind(ciphertext)
            .bind(now)
            .execute(conn)
            .await?;
            Ok(true)
        }
    }
}

async fn count_kind_in(conn: &mut AnyConnection, kind: GatewayKind) -> AppResult<i64> {
    Ok(
        sqlx::query_scalar("SELECT COUNT(*) FROM gateways WHERE kind = $1")
            .bind(kind.as_str())
            .fetch_one(conn)
            .await?,
    )
}

/// Stores the troubleshooter's headline verdict for a gateway (GW-1). Not a
/// configuration change: no restart, no generation; `verdict_seq` moves so
/// cached lists on every node notice.
pub async fn set_verdict(pool: &AnyPool, id: i64, verdict: &str, now: i64) -> AppResult<()> {
    sqlx::query(
        "UPDATE gateways SET last_verdict = $2, last_checked_at = $3,
             verdict_seq = (SELECT COALESCE(MAX(verdict_seq), 0) + 1 FROM gateways)
         WHERE id = $1",
    )
    .bind(id)
    .bind(verdict)
    .bind(now)
    .execute(pool)
    .await?;
    Ok(())
}

/// How many gateways of `kind` there are (those sharing its credentials).
pub async fn count_kind(pool: &AnyPool, kind: GatewayKind) -> AppResult<i64> {
    let mut conn = pool.acquire().await?;
    count_kind_in(&mut conn, kind).await
}

pub async fn count(pool: &AnyPool) -> AppResult<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM gateways")
        .fetch_one(pool)
        .await?)
}

fn duplicate_description(e: AppError) -> AppError {
    e.on_constraint("gateways.description", GatewayRefusal::DescriptionTaken)
}

/// Add New (GW-2..GW-4, GW-7).
pub async fn create(
    pool: &AnyPool,
    input: &GatewayInput,
    actor: &str,
    now: i64,
) -> AppResult<Saved> {
    let mut tx = begin_write(pool).await?;
    let existing = kinds_in(&mut tx).await?;
    may_add(input.kind, &existing).map_err(|mix| AppError::refused(GatewayRefusal::Mix(mix)))?;
    let credentials_changed = save_credentials(
        &mut tx,
        input.kind,
        &input.account,
        input.password.as_ref(),
        now,
    )
    .await?;
    let (tenant, cloud, signin_url, graph_url) = graph_columns(input.graph.as_ref());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO gateways (kind, description, server, port, test_mailbox, created_at,
                               updated_at, tenant, cloud, signin_url, graph_url)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9, $10) RETURNING id",
    )
    .bind(input.kind.as_str())
    .bind(input.description.as_str())
    .bind(input.server.to_string())
    .bind(i64::from(input.port.get()))
    .bind(input.test_mailbox.as_ref().map(Mailbox::as_str))
    .bind(now)
    .bind(tenant)
    .bind(cloud)
    .bind(signin_url)
    .bind(graph_url)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| duplicate_description(e.into()))?;
    let sharing = count_kind_in(&mut tx, input.kind).await?;
    let summary = format!(
        "Added {} gateway {} ({}:{})",
        input.kind.label(),
        input.description.as_str(),
        input.server,
        input.port.get()
    );
    changes::record(&mut tx, &summary, actor, Restart::Required, now).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "gateway added",
            target: input.description.as_str(),
            before: None,
            after: Some(input.audit_view()),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Saved {
        id,
        credentials_changed,
        sharing,
    })
}

/// Edit (GW-4, GW-7): the kind stays; credentials apply to every gateway of
/// the kind.
pub async fn update(
    pool: &AnyPool,
    id: i64,
    input: &GatewayInput,
    actor: &str,
    now: i64,
) -> AppResult<Saved> {
    let mut tx = begin_write(pool).await?;
    let before = find_in(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    if before.kind() != input.kind {
        return Err(AppError::refused(GatewayRefusal::TypeChangedByEdit));
    }
    let before_account = credentials_in(&mut tx, input.kind)
        .await?
        .map(|c| c.account_name);
    let credentials_changed = save_credentials(
        &mut tx,
        input.kind,
        &input.account,
        input.password.as_ref(),
        now,
    )
    .await?;
    let (tenant, cloud, signin_url, graph_url) = graph_columns(input.graph.as_ref());
    sqlx::query(
        "UPDATE gateways SET description = $2, server = $3, port = $4, test_mailbox = $5,
             updated_at = $6, tenant = $7, cloud = $8, signin_url = $9, graph_url = $10
         WHERE id = $1",
    )
    .bind(id)
    .bind(input.description.as_str())
    .bind(input.server.to_string())
    .bind(i64::from(input.port.get()))
    .bind(input.test_mailbox.as_ref().map(Mailbox::as_str))
    .bind(now)
    .bind(tenant)
    .bind(cloud)
    .bind(signin_url)
    .bind(graph_url)
    .execute(&mut *tx)
    .await
    .map_err(|e| duplicate_description(e.into()))?;
    let sharing = count_kind_in(&mut tx, input.kind).await?;
    let mut summary = format!("Updated gateway {}", input.description.as_str());
    if credentials_changed && input.kind == GatewayKind::Ews && sharing > 1 {
        summary.push_str(&format!(" (credentials of all {sharing} EWS gateways)"));
    }
    changes::record(&mut tx, &summary, actor, Restart::Required, now).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "gateway updated",
            target: input.description.as_str(),
            before: Some(before.audit_view(before_account.as_deref())),
            after: Some(input.audit_view()),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(Saved {
        id,
        credentials_changed,
        sharing,
    })
}

/// What deleting a gateway would do (GW-6), for the confirmation page.
#[derive(Debug, Clone)]
pub struct DeleteImpact {
    pub gateway: GatewayRow,
    /// Deleting the WebDAV gateway or the last EWS gateway ends calendar presence.
    pub is_last: bool,
    pub users_affected: i64,
}

async fn impact_in(conn: &mut AnyConnection, id: i64) -> AppResult<DeleteImpact> {
    let gateway = find_in(conn, id).await?.ok_or(AppError::NotFound)?;
    let kind = gateway.kind();
    let is_last = kind == GatewayKind::WebDav || count_kind_in(conn, kind).await? <= 1;
    let users_affected = if is_last {
        sqlx::query_scalar("SELECT COUNT(*) FROM users WHERE calendar_enabled = 1")
            .fetch_one(conn)
            .await?
    } else {
        0
    };
    Ok(DeleteImpact {
        gateway,
        is_last,
        users_affected,
    })
}

pub async fn delete_impact(pool: &AnyPool, id: i64) -> AppResult<DeleteImpact> {
    let mut conn = pool.acquire().await?;
    impact_in(&mut conn, id).await
}

/// Delete (GW-6, GW-7). Returns how many users lost calendar presence.
pub async fn delete(pool: &AnyPool, id: i64, actor: &str, now: i64) -> AppResult<DeleteImpact> {
    let mut tx = begin_write(pool).await?;
    let mut impact = impact_in(&mut tx, id).await?;
    if impact.is_last {
        impact.users_affected = switch_calendar_off_for_everyone(&mut tx).await?;
        sqlx::query("DELETE FROM exchange_credentials WHERE kind = $1")
            .bind(&impact.gateway.kind)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query("DELETE FROM gateways WHERE id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let mut summary = format!("Deleted gateway {}", impact.gateway.description);
    if impact.is_last {
        summary.push_str(&format!(
            "; calendar presence switched off for {} users",
            impact.users_affected
        ));
    }
    changes::record(&mut tx, &summary, actor, Restart::Required, now).await?;
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "gateway deleted",
            target: &impact.gateway.description,
            before: Some(impact.gateway.audit_view(None)),
            after: impact
                .is_last
                .then(|| json!({ "calendar_presence_switched_off_for": impact.users_affected })),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(impact)
}

/// GW-6's bulk switch: the only way calendar presence goes off for everyone.
async fn switch_calendar_off_for_everyone(conn: &mut AnyConnection) -> AppResult<i64> {
    let done = sqlx::query("UPDATE users SET calendar_enabled = 0 WHERE calendar_enabled = 1")
        .execute(conn)
        .await?;
    Ok(done.rows_affected() as i64)
}

/// What Change Type did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeChanged {
    pub kind: GatewayKind,
    /// A Test Mailbox the new type cannot take (a WebDAV alias, for EWS,
    /// which impersonates by address), cleared.
    pub cleared_test_mailbox: Option<String>,
}

/// What Change Type asks for: the new type's credentials, and its own
/// fields where the old type had none (GR-2). `password: None` carries the
/// stored password over, which only WebDAV and EWS may do: a client secret
/// is not an account password.
pub struct TypeChange {
    pub to: GatewayKind,
    pub account: AccountName,
    pub password: Option<Sealed>,
    /// To EWS from Microsoft 365: the Exchange server (the Graph host is
    /// not one). Otherwise the server stays.
    pub server: Option<(ServerLocation, Port)>,
    /// To Microsoft 365: its settings.
    pub graph: Option<GraphSettings>,
}

/// Change type in place (GW-5, GR-2): only for the only gateway, only to a
/// type `change_targets` offers; users keep their calendar setting (nothing
/// here touches `users`); the credentials move to the new kind.
pub async fn change_type(
    pool: &AnyPool,
    id: i64,
    change: &TypeChange,
    actor: &str,
    now: i64,
) -> AppResult<TypeChanged> {
    let mut tx = begin_write(pool).await?;
    let gateway = find_in(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM gateways")
        .fetch_one(&mut *tx)
        .await?;
    if total != 1 {
        return Err(AppError::refused(GatewayRefusal::TypeChangeNotAlone {
            total,
        }));
    }
    let from = gateway.kind();
    let to = change.to;
    if !from.change_targets().contains(&to) {
        return Err(AppError::refused(GatewayRefusal::TypeChangeNotOffered {
            from,
            to,
        }));
    }
    let graph_involved = from == GatewayKind::Graph || to == GatewayKind::Graph;
    let stored = credentials_in(&mut tx, from).await?;
    sqlx::query("DELETE FROM exchange_credentials WHERE kind = $1")
        .bind(from.as_str())
        .execute(&mut *tx)
        .await?;
    let password = match (&change.password, stored) {
        (Some(sealed), _) => Sealed {
            nonce: sealed.nonce.clone(),
            ciphertext: sealed.ciphertext.clone(),
        },
        (None, Some(stored)) if !graph_involved => Sealed {
            nonce: stored.password_nonce,
            ciphertext: stored.password_ciphertext,
        },
        (None, _) => {
            return Err(AppError::refused(if to == GatewayKind::Graph {
                GatewayRefusal::ClientSecretMissing
            } else {
                GatewayRefusal::PasswordMissing
            }));
        }
    };
    save_credentials(&mut tx, to, &change.account, Some(&password), now).await?;
    // Where the new type connects: Graph's host for Microsoft 365, the
    // Exchange server typed for EWS from Microsoft 365, else unchanged.
    let missing = |what: &str| {
        AppError::Internal(anyhow::anyhow!(
            "change type from {} to {} without {what}",
            from.as_str(),
            to.as_str()
        ))
    };
    let (server, port) = match (to, &change.graph, &change.server) {
        (GatewayKind::Graph, Some(graph), _) => {
            (graph.graph_url.host(), i64::from(graph.graph_url.port()))
        }
        (GatewayKind::Graph, None, _) => return Err(missing("the Microsoft 365 settings")),
        (_, _, Some((server, port))) => (server.to_string(), i64::from(port.get())),
        _ if from == GatewayKind::Graph => return Err(missing("the Exchange server")),
        _ => (gateway.server.clone(), gateway.port),
    };
    let graph = change.graph.as_ref().filter(|_| to == GatewayKind::Graph);
    let (tenant, cloud, signin_url, graph_url) = graph_columns(graph);
    // The Test Mailbox must suit the new type: an alias is a WebDAV mailbox
    // only, and EWS would send it as an impersonation address.
    let cleared_test_mailbox = gateway
        .test_mailbox
        .clone()
        .filter(|m| Mailbox::parse_optional(to, m).is_err());
    sqlx::query(
        "UPDATE gateways SET kind = $2, updated_at = $3,
             test_mailbox = CASE WHEN $4 THEN NULL ELSE test_mailbox END,
             server = $5, port = $6, tenant = $7, cloud = $8, signin_url = $9, graph_url = $10
         WHERE id = $1",
    )
    .bind(id)
    .bind(to.as_str())
    .bind(now)
    .bind(cleared_test_mailbox.is_some())
    .bind(&server)
    .bind(port)
    .bind(tenant)
    .bind(cloud)
    .bind(signin_url)
    .bind(graph_url)
    .execute(&mut *tx)
    .await?;
    let summary = format!(
        "Changed gateway {} from {} to {}",
        gateway.description,
        from.label(),
        to.label()
    );
    changes::record(&mut tx, &summary, actor, Restart::Required, now).await?;
    let mut after = json!({
        "type": to.label(),
        "presence_gateway": server,
        "port": port,
        "test_mailbox": gateway.test_mailbox.as_ref().filter(|_| cleared_test_mailbox.is_none()),
    });
    if let Some(map) = after.as_object_mut() {
        match graph {
            Some(graph) => {
                if let Some(fields) = graph_audit_view(graph).as_object() {
                    map.extend(fields.clone());
                }
                map.insert("client_secret".into(), json!("(changed)"));
            }
            None => {
                map.insert("account_name".into(), json!(change.account.as_str()));
            }
        }
    }
    audit::record(
        &mut tx,
        audit::Entry {
            actor,
            action: "gateway type changed",
            target: &gateway.description,
            before: Some(json!({
                "type": from.label(),
                "presence_gateway": gateway.server,
                "port": gateway.port,
                "test_mailbox": gateway.test_mailbox,
            })),
            after: Some(after),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(TypeChanged {
        kind: to,
        cleared_test_mailbox,
    })
}
