//! The Troubleshooter panel (SPEC section 2, TS-6): the seven checks run on
//! demand against a gateway's stored configuration — never the one the
//! running engine loaded — their headline stored as the gateway's last
//! verdict (GW-1). Checking all gateways runs them concurrently, so the
//! whole takes about as long as the slowest.

use std::time::Duration;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum_messages::Messages;
use secrecy::SecretString;

use crate::domain::gateway::{GatewayKind, ServerLocation};
use crate::domain::params::ExchangeAuth;
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::store;
use crate::store::gateways::GatewayRow;
use crate::troubleshoot::{self, AuthMode, Credentials, Report, Status, Target};

use super::paths;
use super::session::Admin;
use super::shell::{Shell, format_time, render};

pub fn router() -> Router<AppState> {
    Router::new().route(paths::GATEWAYS_TROUBLESHOOT, post(check_all))
}

pub struct CheckView {
    pub label: &'static str,
    pub status: &'static str,
    pub verdict: String,
    pub detail: String,
    pub elapsed_ms: u64,
}

pub struct ChainView {
    pub subject: String,
    pub issuer: String,
    pub valid: String,
    pub sha256: String,
    pub status: &'static str,
}

/// One run's results as the panel shows them.
pub struct PanelView {
    pub headline: String,
    pub ok: bool,
    pub ran_at: String,
    pub address: String,
    pub matched_name: String,
    pub checks: Vec<CheckView>,
    pub chain: Vec<ChainView>,
}

impl PanelView {
    pub fn headline_class(&self) -> &'static str {
        if self.ok {
            "verdict verdict-ok"
        } else {
            "verdict verdict-fail"
        }
    }
}

fn label(id: &str) -> &'static str {
    match id {
        "dns" => "DNS",
        "tcp" => "TCP connection",
        "tls" => "TLS handshake",
        "chain" => "Certificate chain",
        "validity" => "Certificate validity",
        "name" => "Name match",
        "auth" => "Exchange authentication",
        _ => "Check",
    }
}

fn status_word(status: Status) -> &'static str {
    match status {
        Status::Pass => "Pass",
        Status::Fail => "Fail",
        Status::Warn => "Warning",
        Status::Skip => "Skipped",
    }
}

fn view(report: &Report, now: i64) -> PanelView {
    let date = |t: Option<i64>| t.map(format_time).unwrap_or_default();
    PanelView {
        headline: report.verdict.clone(),
        ok: report.ok,
        ran_at: format_time(now),
        address: report.address.map(|a| a.to_string()).unwrap_or_default(),
        matched_name: report.matched_name.clone().unwrap_or_default(),
        checks: report
            .checks
            .iter()
            .map(|c| CheckView {
                label: label(c.id),
                status: status_word(c.status),
                verdict: c.verdict.clone(),
                detail: c.detail.clone(),
                elapsed_ms: c.elapsed_ms,
            })
            .collect(),
        chain: report
            .chain
            .iter()
            .map(|e| ChainView {
                subject: e.subject.clone(),
                issuer: e.issuer.clone().unwrap_or_default(),
                valid: match (e.not_before, e.not_after) {
                    (Some(_), Some(_)) => {
                        format!("{} to {}", date(e.not_before), date(e.not_after))
                    }
                    _ => String::new(),
                },
                sha256: e
                    .sha256
                    .as_deref()
                    .map(crate::tls::certinfo::colon_fingerprint)
                    .unwrap_or_default(),
                status: e.status.as_str(),
            })
            .collect(),
    }
}

/// The checks' target from the stored configuration: the gateway, the
/// shared credentials (decrypted only here), the trust store.
async fn target_for(state: &AppState, gateway: &GatewayRow) -> AppResult<Target> {
    let stored = Stored::read(state).await?;
    stored.target(state, gateway)
}

/// What every gateway's checks share, read once per run: the trust store
/// and the credentials of each kind (decrypted only here).
struct Stored {
    trust: Vec<rustls::pki_types::CertificateDer<'static>>,
    ews: Option<Credentials>,
    webdav: Option<Credentials>,
    /// SY-2: without DNS on this server, gateways must be IP addresses.
    dns_configured: bool,
    /// Test mailboxes' users' locales, for the WebDAV calendar folder.
    mailbox_locales: std::collections::HashMap<String, String>,
    /// This node's Exchange Timeout and Exchange Server Authentication
    /// parameters (TS-1, TS-5).
    timeout: Duration,
    auth: AuthMode,
}

impl Stored {
    async fn read(state: &AppState) -> AppResult<Stored> {
        let params = {
            let mut conn = state.pool.acquire().await?;
            store::params::load(&mut conn, &state.settings.node_name).await?
        };
        Ok(Stored {
            trust: store::trust::anchors(&state.pool).await?,
            ews: credentials(state, GatewayKind::Ews).await?,
            webdav: credentials(state, GatewayKind::WebDav).await?,
            dns_configured: store::engine::dns_configured(&state.pool, &state.settings.node_name)
                .await?,
            mailbox_locales: store::users::test_mailbox_locales(&state.pool).await?,
            timeout: Duration::from_secs(u64::from(params.exchange_timeout_seconds)),
            auth: match params.exchange_auth {
                ExchangeAuth::Auto => AuthMode::Auto,
                ExchangeAuth::BasicOnly => AuthMode::Basic,
            },
        })
    }

    fn target(&self, state: &AppState, gateway: &GatewayRow) -> AppResult<Target> {
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
            },
            mailbox: gateway.test_mailbox.clone(),
            // LO-3: a WebDAV mailbox's calendar folder is named in its
            // user's locale.
            calendar_folder: gateway
                .test_mailbox
                .as_deref()
                .and_then(|m| self.mailbox_locales.get(&m.to_lowercase()))
                .map_or(troubleshoot::DEFAULT_CALENDAR_FOLDER, |tag| {
                    crate::exchange::webdav::calendar_folder(tag)
                })
                .to_owned(),
            auth: self.auth,
            timeout: self.timeout,
            now: state.now(),
        })
    }
}

async fn credentials(state: &AppState, kind: GatewayKind) -> AppResult<Option<Credentials>> {
    let Some(stored) = store::gateways::credentials(&state.pool, kind).await? else {
        return Ok(None);
    };
    let password = state
        .cipher
        .open_password(&stored.password_nonce, &stored.password_ciphertext)?;
    Ok(Some(Credentials {
        account: stored.account_name,
        password: SecretString::from(password),
    }))
}

/// Runs the checks on one gateway and stores the headline as its verdict.
pub async fn run_one(state: &AppState, gateway: &GatewayRow) -> AppResult<PanelView> {
    let target = target_for(state, gateway).await?;
    let report = troubleshoot::run(&target).await;
    let now = state.now();
    store::gateways::set_verdict(&state.pool, gateway.id, &report.verdict, now).await?;
    Ok(view(&report, now))
}

/// Runs the checks on every gateway at once (TS-6); each run is bounded by
/// its own deadline (four Exchange Timeouts), so the whole is too.
pub async fn run_all(state: &AppState) -> AppResult<Vec<(GatewayRow, PanelView)>> {
    let gateways = store::gateways::list(&state.pool, None).await?;
    let stored = Stored::read(state).await?;
    let targets = gateways
        .iter()
        .map(|g| stored.target(state, g))
        .collect::<AppResult<Vec<_>>>()?;
    let mut runs = tokio::task::JoinSet::new();
    for (i, target) in targets.into_iter().enumerate() {
        runs.spawn(async move { (i, troubleshoot::run(&target).await) });
    }
    let mut reports: Vec<Option<Report>> = vec![None; gateways.len()];
    while let Some(done) = runs.join_next().await {
        let (i, report) = done.map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?;
        reports[i] = Some(report);
    }
    let now = state.now();
    let mut results = Vec::with_capacity(gateways.len());
    for (gateway, report) in gateways.into_iter().zip(reports) {
        let Some(report) = report else { continue };
        store::gateways::set_verdict(&state.pool, gateway.id, &report.verdict, now).await?;
        results.push((gateway, view(&report, now)));
    }
    Ok(results)
}

pub struct GatewayResult {
    pub id: i64,
    pub description: String,
    pub server: String,
    pub port: i64,
    pub panel: PanelView,
}

#[derive(Template)]
#[template(path = "pages/gateways/troubleshoot_all.html")]
struct AllPage {
    shell: Shell,
    results: Vec<GatewayResult>,
    elapsed_ms: u128,
}

async fn check_all(
    State(state): State<AppState>,
    Admin(user): Admin,
    messages: Messages,
) -> AppResult<Response> {
    let started = std::time::Instant::now();
    let results = run_all(&state)
        .await?
        .into_iter()
        .map(|(g, panel)| GatewayResult {
            id: g.id,
            description: g.description,
            server: g.server,
            port: g.port,
            panel,
        })
        .collect();
    let elapsed_ms = started.elapsed().as_millis();
    render(
        StatusCode::OK,
        &AllPage {
            shell: Shell::new(&state, &user, messages, "Troubleshooter", paths::GATEWAYS).await?,
            results,
            elapsed_ms,
        },
    )
}
