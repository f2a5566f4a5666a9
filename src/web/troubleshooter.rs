//! The Troubleshooter panel (SPEC section 2, TS-6): shows the seven checks
//! that `troubleshoot::stored` runs on demand against a gateway's stored
//! configuration.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum_messages::Messages;

use crate::error::AppResult;
use crate::state::AppState;
use crate::store::gateways::GatewayRow;
use crate::troubleshoot::stored::{self, Scope};
use crate::troubleshoot::{Report, Status};

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

/// This node's scope for a stored run.
fn scope(state: &AppState) -> Scope<'_> {
    Scope {
        pool: &state.pool,
        cipher: &state.cipher,
        node: &state.settings.node_name,
        now: state.now(),
        proxy_env: &state.settings.proxy_env,
    }
}

/// Runs the checks on one gateway as stored; the headline becomes its
/// verdict.
pub async fn run_one(state: &AppState, gateway: &GatewayRow) -> AppResult<PanelView> {
    let scope = scope(state);
    let report = stored::run_one(&scope, gateway).await?;
    Ok(view(&report, scope.now))
}

/// Runs the checks on every gateway at once (TS-6).
pub async fn run_all(state: &AppState) -> AppResult<Vec<(GatewayRow, PanelView)>> {
    let scope = scope(state);
    Ok(stored::run_all(&scope)
        .await?
        .into_iter()
        .map(|(g, report)| (g, view(&report, scope.now)))
        .collect())
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
