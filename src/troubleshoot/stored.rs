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
use sqlx::AnyPool;

use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::domain::params::ExchangeAuth;
use crate::error::{AppError, AppResult};
use crate::secrets::cipher::Cipher;
use crate::store;
use crate::store::gateways::GatewayRow;

use super::{AuthMode, Credentials, DEFAULT_CALENDAR_FOLDER, Report, Target};

/// Where a stored run reads from and what it runs as.
pub struct Scope<'a> {
    pub pool: &'a AnyPool,
    pub cipher: &'a Cipher,
    /// The node whose parameters apply (Exchange Timeout, Exchange Server
    /// Authentication, DNS configured).
    pub node: &'a str,
    /// Unix seconds, for certificate dates and the stored verdict's time.
    pub now: i64,
    /// The Outbound Proxy's default when none is saved (GR-3).
    pub proxy_env: &'a crate::domain::proxy::ProxyEnv,
}

/// What every gateway's checks share, read once per run.
struct Stored {
    trust: Vec<CertificateDer<'static>>,
    ews: Option<Credentials>,
    webdav: Option<Credentials>,
    /// Microsoft 365: the Application (client) ID and the client secret.
    graph: Option<Credentials>,
    /// SY-2: without DNS on this server, gateways must be IP addresses.
    dns_configured: bool,
    /// Test mailboxes' users' locales, for the WebDAV calendar folder.
    mailbox_locales: HashMap<String, String>,
    timeout: Duration,
    auth: AuthMode,
    now: i64,
    /// For Microsoft 365 gateways only (GR-3).
    proxy: Option<super::Proxy>,
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
            graph: credentials(scope, GatewayKind::Graph).await?,
            dns_configured: store::engine::dns_configured(scope.pool, scope.node).await?,
            mailbox_locales: store::users::test_mailbox_locales(scope.pool).await?,
            timeout: Duration::from_secs(u64::from(params.exchange_timeout_seconds)),
            auth: match params.exchange_auth {
                ExchangeAuth::Auto => AuthMode::Auto,
                ExchangeAuth::BasicOnly => AuthMode::Basic,
            },
            now: scope.now,
            proxy: store::proxy::effective(scope.pool, scope.cipher, scope.proxy_env).await?,
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
                // Never used: Microsoft 365 gateways run `graph_target`.
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
            // On-premises Exchange is reached directly (GR-3).
            proxy: None,
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

impl Stored {
    /// A Microsoft 365 gateway's checks, from its row and its sealed secret.
    fn graph_target(&self, gateway: &GatewayRow) -> AppResult<super::graph::GraphTarget> {
        let cloud = super::graph::cloud_of(gateway).map_err(|e| {
            AppError::Internal(anyhow::anyhow!("stored Microsoft 365 gateway: {e}"))
        })?;
        let (client_id, secret) = match &self.graph {
            Some(credentials) => (
                credentials.account.clone(),
                Some(credentials.password.clone()),
            ),
            None => (String::new(), None),
        };
        Ok(super::graph::GraphTarget {
            cloud,
            tenant: gateway.tenant.clone().unwrap_or_default(),
            client_id,
            secret,
            mailbox: gateway.test_mailbox.clone(),
            trust: self.trust.clone(),
            proxy: self.proxy.clone(),
            timeout: self.timeout,
            now: self.now,
        })
    }

    /// The checks for `gateway`, whatever its type.
    async fn run(&self, gateway: &GatewayRow) -> AppResult<Report> {
        Ok(match gateway.kind() {
            GatewayKind::Graph => super::graph::run(&self.graph_target(gateway)?).await,
            _ => super::run(&self.target(gateway)?).await,
        })
    }
}

/// Runs the checks on one gateway and stores the headline as its verdict.
pub async fn run_one(scope: &Scope<'_>, gateway: &GatewayRow) -> AppResult<Report> {
    let report = Stored::read(scope).await?.run(gateway).await?;
    store::gateways::set_verdict(scope.pool, gateway.id, &report.verdict, scope.now).await?;
    Ok(report)
}

/// Runs the checks on every gateway at once (TS-6); each run is bounded by
/// its own deadline (four Exchange Timeouts), so the whole is too.
pub async fn run_all(scope: &Scope<'_>) -> AppResult<Vec<(GatewayRow, Report)>> {
    let gateways = store::gateways::list(scope.pool, None).await?;
    let stored = std::sync::Arc::new(Stored::read(scope).await?);
    let mut reports: Vec<Option<Report>> = vec![None; gateways.len()];
    let mut runs = tokio::task::JoinSet::new();
    for (i, gateway) in gateways.iter().enumerate() {
        let stored = stored.clone();
        let gateway = gateway.clone();
        runs.spawn(async move { (i, stored.run(&gateway).await) });
    }
    while let Some(done) = runs.join_next().await {
        let (i, report) = done.map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
        reports[i] = Some(report?);
    }
    let mut results = Vec::with_capacity(gateways.len());
    for (gateway, report) in gateways.into_iter().zip(reports) {
        let Some(report) = report else { continue };
        store::gateways::set_verdict(scope.pool, gateway.id, &report.verdict, scope.now).await?;
        results.push((gateway, report));
    }
    Ok(results)
}
