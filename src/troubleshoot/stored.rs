//! The troubleshooter over the stored configuration (the console's panel):
//! a gateway as saved, the shared credentials (decrypted only here), the
//! trust store and this node's parameters — never what the running engine
//! loaded. Each run's headline is stored as the gateway's last verdict
//! (GW-1). Checking all gateways runs them concurrently, so the whole takes
//! about as long as the slowest (TS-6).

use std::collections::HashMap;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use secrecy::SecretString;
use sqlx::SqlitePool;

use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::domain::params::ExchangeAuth;
use crate::error::{AppError, AppResult};
use crate::secrets::cipher::Cipher;
use crate::store;
use crate::store::gateways::GatewayRow;

use super::{AuthMode, Credentials, DEFAULT_CALENDAR_FOLDER, Report, Target};

/// Where a stored run reads from and what it runs as.
pub struct Scope<'a> {
    pub pool: &'a SqlitePool,
    pub cipher: &'a Cipher,
    /// The node whose parameters apply (Exchange Timeout, Exchange Server
    /// Authentication, DNS configured).
    pub node: &'a str,
    /// Unix seconds, for certificate dates and the stored verdict's time.
    pub now: i64,
}

/// What every gateway's checks share, read once per run.
struct Stored {
    trust: Vec<CertificateDer<'static>>,
    ews: Option<Credentials>,
    webdav: Option<Credentials>,
    /// SY-2: without DNS on this server, gateways must be IP addresses.
    dns_configured: bool,
    /// Test mailboxes' users' locales, for the WebDAV calendar folder.
    mailbox_locales: HashMap<String, String>,
    timeout: Duration,
    auth: AuthMode,
    now: i64,
}

impl Stored {
    async fn read(scope: &Scope<'_>) -> AppResult<Stored> {
        let params = {
            let mut conn = scope.pool.acquire().await?;
            store::params::load(&mut conn, scope.node).await?
        };
        Ok(Stored {
            trust: store::trust::anchors(scope.pool).await?,
            ews: credentials(scope, GatewayKind::Ews).await?,
            webdav: credentials(scope, GatewayKind::WebDav).await?,
            dns_configured: store::engine::dns_configured(scope.pool, scope.node).await?,
            mailbox_locales: store::users::test_mailbox_locales(scope.pool).await?,
            timeout: Duration::from_secs(u64::from(params.exchange_timeout_seconds)),
            auth: match params.exchange_auth {
                ExchangeAuth::Auto => AuthMode::Auto,
                ExchangeAuth::BasicOnly => AuthMode::Basic,
            },
            now: scope.now,
        })
    }

    fn target(&self, gateway: &GatewayRow) -> AppResult<Target> {
        let kind = gateway.kind();
        let host = ServerLocation::parse(&gateway.server).map_err(|e| {
            AppError::Internal(anyhow::anyhow!("stored server location unreadable: {e}"))
        })?;
        Ok(Target {
            kind,
            host,
            port: u16::try_from(gateway.port).unwrap_or(443),
            connect: None,
            dns_configured: self.dns_configured,
            trust: self.trust.clone(),
            credentials: match kind {
                GatewayKind::Ews => self.ews.clone(),
                GatewayKind::WebDav => self.webdav.clone(),
                // Never reached: Microsoft 365 gateways are answered by
                // `not_built` before a target is made.
                GatewayKind::Graph => None,
            },
            mailbox: gateway.test_mailbox.clone(),
            // LO-3: a WebDAV mailbox's calendar folder is named in its
            // user's locale.
            calendar_folder: gateway
                .test_mailbox
                .as_deref()
                .and_then(|m| self.mailbox_locales.get(&m.to_lowercase()))
                .map_or(DEFAULT_CALENDAR_FOLDER, |tag| {
                    crate::exchange::webdav::calendar_folder(tag)
                })
                .to_owned(),
            auth: self.auth,
            timeout: self.timeout,
            now: self.now,
        })
    }
}

async fn credentials(scope: &Scope<'_>, kind: GatewayKind) -> AppResult<Option<Credentials>> {
    let Some(stored) = store::gateways::credentials(scope.pool, kind).await? else {
        return Ok(None);
    };
    let password = scope
        .cipher
        .open_password(&stored.password_nonce, &stored.password_ciphertext)?;
    Ok(Some(Credentials {
        account: stored.account_name,
        password: SecretString::from(password),
    }))
}

/// The troubleshooter's checks speak Exchange (EWS and WebDAV over TLS with
/// an account); Microsoft 365's (a token from the sign-in host, then Graph)
/// are not built yet. Say so plainly instead of running Exchange's checks
/// against Graph's host; no verdict is stored, since nothing was checked.
pub fn not_built(gateway: &GatewayRow) -> Report {
    Report {
        ok: false,
        verdict: GRAPH_NOT_BUILT.to_owned(),
        address: None,
        matched_name: None,
        checks: vec![super::Check {
            id: "auth",
            status: super::Status::Skip,
            verdict: GRAPH_NOT_BUILT.to_owned(),
            detail: format!(
                "{} is a {} gateway: the troubleshooter's checks for Microsoft 365 are not \
                 built yet, so nothing was checked.",
                gateway.description,
                GatewayKind::Graph.label()
            ),
            elapsed_ms: 0,
        }],
        chain: Vec::new(),
    }
}

pub const GRAPH_NOT_BUILT: &str = "Not checked - Microsoft 365 checks not built yet";

/// Runs the checks on one gateway and stores the headline as its verdict.
pub async fn run_one(scope: &Scope<'_>, gateway: &GatewayRow) -> AppResult<Report> {
    if gateway.kind() == GatewayKind::Graph {
        return Ok(not_built(gateway));
    }
    let target = Stored::read(scope).await?.target(gateway)?;
    let report = super::run(&target).await;
    store::gateways::set_verdict(scope.pool, gateway.id, &report.verdict, scope.now).await?;
    Ok(report)
}

/// Runs the checks on every gateway at once (TS-6); each run is bounded by
/// its own deadline (four Exchange Timeouts), so the whole is too.
pub async fn run_all(scope: &Scope<'_>) -> AppResult<Vec<(GatewayRow, Report)>> {
    let gateways = store::gateways::list(scope.pool, None).await?;
    let stored = Stored::read(scope).await?;
    // Microsoft 365 gateways get no target: their checks are not built.
    let targets = gateways
        .iter()
        .map(|g| {
            (g.kind() != GatewayKind::Graph)
                .then(|| stored.target(g))
                .transpose()
        })
        .collect::<AppResult<Vec<_>>>()?;
    let mut reports: Vec<Option<Report>> = vec![None; gateways.len()];
    let mut runs = tokio::task::JoinSet::new();
    for (i, target) in targets.into_iter().enumerate() {
        match target {
            Some(target) => {
                runs.spawn(async move { (i, super::run(&target).await) });
            }
            None => reports[i] = Some(not_built(&gateways[i])),
        }
    }
    while let Some(done) = runs.join_next().await {
        let (i, report) = done.map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
        reports[i] = Some(report);
    }
    let mut results = Vec::with_capacity(gateways.len());
    for (gateway, report) in gateways.into_iter().zip(reports) {
        let Some(report) = report else { continue };
        if gateway.kind() == GatewayKind::Graph {
            results.push((gateway, report));
            continue;
        }
        store::gateways::set_verdict(scope.pool, gateway.id, &report.verdict, scope.now).await?;
        results.push((gateway, report));
    }
    Ok(results)
}
