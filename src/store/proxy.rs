//! The Outbound Proxy of System > Settings (GR-3): one row for the cluster,
//! its password sealed like the Exchange passwords, every change audited
//! with the password redacted.

use secrecy::SecretString;
use sqlx::{AnyConnection, AnyPool, FromRow};

use crate::domain::proxy::{self, NoProxy, Proxy, ProxyCredentials, ProxyEnv, ProxyServer};
use crate::domain::refusal::ProxyRefusal;
use crate::error::{AppError, AppResult};
use crate::secrets::cipher::{Cipher, Sealed};

#[derive(Debug, Clone, FromRow)]
pub struct ProxyRow {
    /// None: cleared, no proxy even when HTTPS_PROXY is set.
    pub url: Option<String>,
    pub user_name: Option<String>,
    pub password_nonce: Option<Vec<u8>>,
    pub password_ciphertext: Option<Vec<u8>>,
    pub no_proxy: String,
}

/// The fields as validated by the page: the URL and list parsed, the user
/// trimmed, the password typed (None keeps the stored one).
pub struct ProxyInput {
    pub server: ProxyServer,
    pub user: Option<String>,
    pub password: Option<SecretString>,
    pub no_proxy: String,
}

pub async fn load(pool: &AnyPool) -> AppResult<Option<ProxyRow>> {
    let mut conn = pool.acquire().await?;
    load_in(&mut conn).await
}

async fn load_in(conn: &mut AnyConnection) -> AppResult<Option<ProxyRow>> {
    Ok(sqlx::query_as(
        "SELECT url, user_name, password_nonce, password_ciphertext, no_proxy
         FROM outbound_proxy WHERE id = 1",
    )
    .fetch_optional(conn)
    .await?)
}

/// What the audit log shows of a row: everything but the password, whose
/// presence only is said.
fn audited(row: Option<&ProxyRow>) -> Option<serde_json::Value> {
    row.map(|r| {
        serde_json::json!({
            "url": r.url,
            "user": r.user_name,
            "password": r.password_nonce.as_ref().map(|_| "[redacted]"),
            "no_proxy": r.no_proxy,
        })
    })
}

/// Saves the proxy. A user without a typed password keeps the stored
/// password only when the user is unchanged: another user's password is
/// never sent for them. Returns whether anything changed.
pub async fn save(
    pool: &AnyPool,
    cipher: &Cipher,
    input: &ProxyInput,
    actor: &str,
    now: i64,
) -> AppResult<bool> {
    // Sealing needs no transaction: do it before taking the write lock.
    let sealed: Option<Sealed> = match &input.password {
        Some(p) => Some(cipher.seal_password(secrecy::ExposeSecret::expose_secret(p))?),
        None => None,
    };
    let mut tx = super::begin_write(pool).await?;
    let before = load_in(&mut tx).await?;
    let (nonce, ciphertext) = match (&input.user, sealed, &before) {
        (None, Some(_), _) => return Err(AppError::refused(ProxyRefusal::UserMissing)),
        (None, None, _) => (None, None),
        (Some(_), Some(sealed), _) => (Some(sealed.nonce), Some(sealed.ciphertext)),
        (Some(user), None, Some(stored))
            if stored.user_name.as_deref() == Some(user.as_str())
                && stored.password_nonce.is_some() =>
        {
            (
                stored.password_nonce.clone(),
                stored.password_ciphertext.clone(),
            )
        }
        (Some(_), None, _) => return Err(AppError::refused(ProxyRefusal::PasswordMissing)),
    };
    let after = ProxyRow {
        url: Some(input.server.to_string()),
        user_name: input.user.clone(),
        password_nonce: nonce,
        password_ciphertext: ciphertext,
        no_proxy: input.no_proxy.clone(),
    };
    let changed = match &before {
        None => true,
        Some(b) => {
            b.url != after.url
                || b.user_name != after.user_name
                || b.no_proxy != after.no_proxy
                || input.password.is_some()
        }
    };
    if !changed {
        return Ok(false);
    }
    write_audited(
        tx,
        actor,
        "update outbound proxy",
        before.as_ref(),
        &after,
        now,
    )
    .await
}

/// Clears the proxy: none is used, even when HTTPS_PROXY is set. Returns
/// whether anything changed.
pub async fn clear(pool: &AnyPool, actor: &str, now: i64) -> AppResult<bool> {
    let mut tx = super::begin_write(pool).await?;
    let before = load_in(&mut tx).await?;
    if before.as_ref().is_some_and(|b| b.url.is_none()) {
        return Ok(false);
    }
    let after = ProxyRow {
        url: None,
        user_name: None,
        password_nonce: None,
        password_ciphertext: None,
        no_proxy: String::new(),
    };
    write_audited(
        tx,
        actor,
        "clear outbound proxy",
        before.as_ref(),
        &after,
        now,
    )
    .await
}

/// Writes `after` with its audit entry (the password redacted) and commits.
async fn write_audited(
    mut tx: sqlx::Transaction<'_, sqlx::Any>,
    actor: &str,
    action: &str,
    before: Option<&ProxyRow>,
    after: &ProxyRow,
    now: i64,
) -> AppResult<bool> {
    write(&mut tx, after, now).await?;
    super::audit::record(
        &mut tx,
        super::audit::Entry {
            actor,
            action,
            target: "Outbound Proxy",
            before: audited(before),
            after: audited(Some(after)),
        },
        now,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn write(conn: &mut AnyConnection, row: &ProxyRow, now: i64) -> AppResult<()> {
    sqlx::query(
        "INSERT INTO outbound_proxy
             (id, url, user_name, password_nonce, password_ciphertext, no_proxy, updated_at)
         VALUES (1, $1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET url = $1, user_name = $2, password_nonce = $3,
             password_ciphertext = $4, no_proxy = $5, updated_at = $6",
    )
    .bind(&row.url)
    .bind(&row.user_name)
    .bind(&row.password_nonce)
    .bind(&row.password_ciphertext)
    .bind(&row.no_proxy)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// The proxy Microsoft 365 connections use: the saved one, else the
/// environment's (read once at start), else none.
pub async fn effective(
    pool: &AnyPool,
    cipher: &Cipher,
    env: &ProxyEnv,
) -> AppResult<Option<Proxy>> {
    let Some(row) = load(pool).await? else {
        return Ok(env.proxy());
    };
    let Some(url) = &row.url else {
        return Ok(None);
    };
    // The row was validated before it was saved: unreadable now means the
    // database was edited by hand.
    let unreadable = |e: String| AppError::Internal(anyhow::anyhow!("stored outbound proxy: {e}"));
    let server = proxy::parse_url(url).map_err(unreadable)?;
    let no_proxy = NoProxy::parse(&row.no_proxy).map_err(unreadable)?;
    let credentials = match (
        &row.user_name,
        &row.password_nonce,
        &row.password_ciphertext,
    ) {
        (Some(user), Some(nonce), Some(ciphertext)) => Some(ProxyCredentials {
            user: user.clone(),
            password: SecretString::from(cipher.open_password(nonce, ciphertext)?),
        }),
        _ => None,
    };
    Ok(Some(Proxy {
        server,
        credentials,
        no_proxy,
    }))
}
