//! The troubleshooter (SPEC section 2): seven checks against an Exchange
//! server, always all seven and in order — `dns`, `tcp`, `tls`, `chain`,
//! `validity`, `name`, `auth`. Used by `presence-gateway check` and, later,
//! the console's Troubleshooter panel.
//!
//! One connection carries everything: the TLS handshake captures the chain
//! whatever its validity, the chain is judged, and only when chain, validity
//! and name passed are credentials sent, over that same connection (TS-5).

pub mod graph;
mod steps;
pub mod stored;
mod tunnel;
pub mod verdict;

use steps::{Clock, authenticate, skip};
use verdict::headline;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rustls::pki_types::CertificateDer;
use serde_json::json;

use crate::domain::gateway::{GatewayKind, ServerLocation};
pub use crate::domain::proxy::Proxy;
use crate::tls::capture::CapturingVerifier;
use crate::tls::chain::ChainEntry;

pub const DEFAULT_CALENDAR_FOLDER: &str = "Calendar";

use crate::exchange::client;
pub use crate::exchange::client::{AuthMode, Credentials};

/// What to check, parsed and validated by the caller.
pub struct Target {
    pub kind: GatewayKind,
    pub host: ServerLocation,
    pub port: u16,
    /// Dial this address instead of resolving `host` (names are still
    /// checked against `host`).
    pub connect: Option<IpAddr>,
    pub dns_configured: bool,
    pub trust: Vec<CertificateDer<'static>>,
    pub credentials: Option<Credentials>,
    pub mailbox: Option<String>,
    pub calendar_folder: String,
    pub auth: AuthMode,
    /// Each network step's bound (the Exchange Timeout parameter).
    pub timeout: Duration,
    /// Unix seconds, for certificate dates.
    pub now: i64,
    /// The Outbound Proxy (GR-3): Microsoft 365's hosts only, never
    /// on-premises Exchange.
    pub proxy: Option<Proxy>,
}

impl Target {
    /// The proxy this connection goes through: None without one, or when
    /// No Proxy For names the host.
    pub fn via(&self) -> Option<&Proxy> {
        self.proxy.as_ref().filter(|p| p.applies_to(&self.host))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Pass,
    Fail,
    Warn,
    Skip,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Warn => "warn",
            Status::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Check {
    pub id: &'static str,
    pub status: Status,
    pub verdict: String,
    pub detail: String,
    pub elapsed_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Report {
    pub ok: bool,
    pub verdict: String,
    pub address: Option<SocketAddr>,
    pub matched_name: Option<String>,
    pub checks: Vec<Check>,
    pub chain: Vec<ChainEntry>,
}

pub const NETWORK_ERROR: &str = "Failed - Network Error";
pub const VERIFIED: &str = "Verified";
const SKIPPED: &str = "Skipped";

use crate::clock::rfc3339;

impl Report {
    /// The object `check --json` prints (TS-9).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "ok": self.ok,
            "verdict": self.verdict,
            "address": self.address.map(|a| a.to_string()),
            "matched_name": self.matched_name,
            "checks": self.checks.iter().map(|c| json!({
                "id": c.id,
                "status": c.status.as_str(),
                "verdict": c.verdict,
                "detail": c.detail,
                "elapsed_ms": c.elapsed_ms,
            })).collect::<Vec<_>>(),
            "chain": self.chain.iter().map(|e| json!({
                "subject": e.subject,
                "issuer": e.issuer,
                "not_before": e.not_before.and_then(rfc3339),
                "not_after": e.not_after.and_then(rfc3339),
                "sha256": e.sha256,
                "status": e.status.as_str(),
            })).collect::<Vec<_>>(),
        })
    }

    /// The human-readable report `check` prints without --json.
    pub fn to_text(&self) -> String {
        let mut out = format!("{}\n", self.verdict);
        if let Some(address) = self.address {
            out.push_str(&format!("address: {address}\n"));
        }
        if let Some(name) = &self.matched_name {
            out.push_str(&format!("matched name: {name}\n"));
        }
        for c in &self.checks {
            out.push_str(&format!(
                "{:<9}{:<5} {} ({} ms)\n         {}\n",
                c.id,
                c.status.as_str(),
                c.verdict,
                c.elapsed_ms,
                c.detail
            ));
        }
        if !self.chain.is_empty() {
            out.push_str("chain:\n");
            for e in &self.chain {
                out.push_str(&format!("  [{}] {}\n", e.status.as_str(), e.subject));
                if let Some(issuer) = &e.issuer {
                    out.push_str(&format!("      issuer: {issuer}\n"));
                }
                if let (Some(nb), Some(na)) = (
                    e.not_before.and_then(rfc3339),
                    e.not_after.and_then(rfc3339),
                ) {
                    out.push_str(&format!("      valid: {nb} to {na}\n"));
                }
                if let Some(fp) = &e.sha256 {
                    out.push_str(&format!("      sha256: {fp}\n"));
                }
            }
        }
        out
    }
}

/// What the first six checks found: where the connection went, the TLS
/// stream if the handshake completed, and the chain's judgement.
struct Reached {
    address: Option<SocketAddr>,
    tls: Option<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>,
    judged: steps::Judged,
}

/// `dns`, `tcp`, `tls`, then `chain`, `validity` and `name` on the chain
/// the handshake captured.
async fn reach(target: &Target, clock: &Clock, checks: &mut Vec<Check>) -> Reached {
    let addresses = steps::dns(target, clock, checks).await;
    let connected = steps::tcp(target, &addresses, clock, checks).await;
    let address = connected.as_ref().map(|(_, a)| *a);
    let verifier = CapturingVerifier::new(crate::tls::provider());
    let tls = steps::tls(target, connected.map(|(s, _)| s), &verifier, clock, checks).await;
    let judged = steps::judge(target, &verifier.chain(), checks);
    Reached {
        address,
        tls,
        judged,
    }
}

/// A connection for the engine (EN-2), made by the same steps and judged by
/// the same rules as the troubleshooter's first six checks: the engine
/// trusts exactly the servers the troubleshooter calls Verified. Err says
/// which check failed and why, in the troubleshooter's words.
pub async fn connect(target: &Target) -> Result<client::Connection, String> {
    let clock = Clock {
        deadline: Instant::now() + target.timeout * 3,
        step: target.timeout,
    };
    let mut checks = Vec::with_capacity(6);
    let Reached { tls, judged, .. } = reach(target, &clock, &mut checks).await;
    match tls {
        Some(stream) if judged.trusted_path => {
            let peer = steps::peer(target, &stream);
            client::Connection::handshake(stream, peer, clock.bound())
                .await
                .map_err(|e| format!("{NETWORK_ERROR}: {e}"))
        }
        _ => Err(checks
            .iter()
            .find(|c| c.status == Status::Fail)
            .map(|c| format!("{}: {}", c.verdict, c.detail))
            .unwrap_or_else(|| "The server could not be verified.".to_owned())),
    }
}

/// Runs the seven checks. Each network step is bounded by `target.timeout`,
/// the whole run by four of them.
pub async fn run(target: &Target) -> Report {
    let clock = Clock {
        deadline: Instant::now() + target.timeout * 4,
        step: target.timeout,
    };
    let mut checks = Vec::with_capacity(7);
    let Reached {
        address,
        tls,
        judged,
    } = reach(target, &clock, &mut checks).await;
    let (entries, matched_name, trusted_path) =
        (judged.entries, judged.matched_name, judged.trusted_path);

    // auth
    let started = Instant::now();
    let auth_check = match (&target.credentials, tls, trusted_path) {
        (None, _, _) => skip(
            "auth",
            "No credentials given (--account and --password-env).",
        ),
        (Some(_), None, _) => skip("auth", "Not attempted: no TLS connection."),
        (Some(_), Some(_), false) => skip(
            "auth",
            "Not attempted: credentials are only sent to a server whose chain, validity and \
             name were verified.",
        ),
        (Some(credentials), Some(stream), true) => {
            authenticate(target, credentials, stream, &clock, started).await
        }
    };
    checks.push(auth_check);

    let verdict = headline(&checks);
    Report {
        ok: !checks.iter().any(|c| c.status == Status::Fail),
        verdict,
        address,
        matched_name,
        checks,
        chain: entries,
    }
}
