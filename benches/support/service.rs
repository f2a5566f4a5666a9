//! The service in the benchmark's own process for the engine benchmarks
//! (engine_sync, graph_sync), included by path (`#[path =
//! "support/service.rs"] mod service;`): its settings and data, the sim's CA
//! trusted, end users, readings of the process and of the database.
// Each benchmark uses a subset.
#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::config::Settings;
use presence_gateway::state::AppState;
use presence_gateway::store;
use secrecy::SecretString;
use sqlx::AnyPool;

pub type Error = Box<dyn std::error::Error>;

/// The node the benchmarks' users and parameters live on.
pub const NODE: &str = "bench";

/// Settings for a service whose data lives under `dir/data`.
pub fn settings(dir: &Path) -> Result<Settings, Error> {
    Ok(Settings {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse()?,
        node_name: NODE.to_owned(),
        tls_cert: None,
        tls_key: None,
        admin_password: Some(SecretString::from("bench-console-password".to_owned())),
        // No outbound proxy: the sim is on loopback.
        proxy_env: Default::default(),
        database: presence_gateway::store::Location::Sqlite(
            presence_gateway::config::database_path(&dir.join("data")),
        ),
    })
}

/// An HTTP client trusting the sim's CA (`ca.pem`), for /sim/ calls.
pub fn sim_client(ca: &Path) -> Result<reqwest::Client, Error> {
    let pem = std::fs::read(ca)?;
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(der?)?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(120))
        .build()?)
}

/// The service trusts the sim's CA (`ca.pem`), as an administrator adding
/// it under Trusted Certificates would.
pub async fn trust(state: &AppState, ca: &Path) -> Result<(), Error> {
    let pem = std::fs::read(ca)?;
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der?;
        let info = presence_gateway::tls::certinfo::parse(&der)?;
        store::trust::insert(&state.pool, &der, &info, "bench", state.now()).await?;
    }
    Ok(())
}

/// The sim (on `port`, its CA in `ca`) as the EWS gateway "Sim", trusted,
/// with the account the sim accepts, as an administrator would add it.
pub async fn add_sim_gateway(
    state: &AppState,
    ca: &Path,
    port: u16,
    account: &str,
    password: &str,
) -> Result<(), Error> {
    use presence_gateway::domain::gateway::{
        AccountName, Description, GatewayKind, Mailbox, Port, ServerLocation,
    };
    trust(state, ca).await?;
    let input = store::gateways::GatewayInput {
        kind: GatewayKind::Ews,
        description: Description::parse("Sim")?,
        server: ServerLocation::parse("127.0.0.1")?,
        port: Port::parse(&port.to_string())?,
        test_mailbox: Mailbox::parse_optional(GatewayKind::Ews, "user00000@example.com")?,
        account: AccountName::parse(GatewayKind::Ews, account)?,
        password: Some(state.cipher.seal_password(password)?),
        graph: None,
    };
    store::gateways::create(&state.pool, &input, "bench", state.now()).await?;
    Ok(())
}

/// `count` end users on this node with calendar presence on: user00000 with
/// mailbox user00000@example.com and on, as the sim's `--mailboxes` makes.
pub async fn add_users(pool: &AnyPool, count: usize) -> Result<(), Error> {
    add_users_on(pool, count, NODE).await
}

/// As `add_users`, on `node`.
pub async fn add_users_on(pool: &AnyPool, count: usize, node: &str) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    for i in 0..count {
        sqlx::query(
            "INSERT INTO users (user_id, role, password_hash, calendar_enabled, mailbox,
                                node, created_at, updated_at)
             VALUES ($1, 'end_user', 'x', 1, $2, $3, 0, 0)",
        )
        .bind(format!("user{i:05}"))
        .bind(format!("user{i:05}@example.com"))
        .bind(node)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

/// A free TCP (and UDP) port on all interfaces.
pub fn free_port() -> Result<u16, Error> {
    for _ in 0..50 {
        let tcp = std::net::TcpListener::bind(("0.0.0.0", 0))?;
        let port = tcp.local_addr()?.port();
        if std::net::UdpSocket::bind(("0.0.0.0", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port".into())
}

/// A line of /proc/self/status in kB (VmRSS, VmHWM), as MB.
fn status_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with(field)).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|kb| kb.parse::<f64>().ok())
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Resident memory of this process, MB.
pub fn rss_mb() -> f64 {
    status_mb("VmRSS:")
}

/// The most resident memory this process has had (the kernel's high-water
/// mark), MB.
pub fn peak_rss_mb() -> f64 {
    status_mb("VmHWM:")
}

/// CPU time (user + system) this process has used, seconds.
pub fn cpu_seconds() -> f64 {
    // /proc/self/stat fields 14 and 15: utime and stime in clock ticks.
    let ticks = 100.0;
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(") ")?.1.to_owned();
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / ticks)
        })
        .unwrap_or(0.0)
}

/// Sets a service parameter on this node (the engine follows it live).
pub async fn set_param(pool: &AnyPool, name: &str, value: &str) -> Result<(), Error> {
    set_param_on(pool, NODE, name, value).await
}

/// As `set_param`, on `node`.
pub async fn set_param_on(
    pool: &AnyPool,
    node: &str,
    name: &str,
    value: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO service_parameters (node, name, value, updated_at, updated_by)
         VALUES ($1, $2, $3, 0, 'bench')
         ON CONFLICT (node, name) DO UPDATE SET value = excluded.value",
    )
    .bind(node)
    .bind(name)
    .bind(value)
    .execute(pool)
    .await?;
    Ok(())
}

pub async fn scalar(pool: &AnyPool, sql: &str) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(sql).fetch_one(pool).await?)
}

/// Polls `sql` until it reaches `target` or `limit` passes; returns the
/// time taken, or None.
pub async fn until(pool: &AnyPool, sql: &str, target: i64, limit: Duration) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < limit {
        if scalar(pool, sql).await.ok()? >= target {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Users whose calendar presence is known (read and published).
pub const KNOWN_SQL: &str = "SELECT COUNT(*) FROM calendar_presence WHERE presence <> 'unknown'";

/// The sim's GET /sim/stats.
pub async fn sim_stats(client: &reqwest::Client, port: u16) -> Result<serde_json::Value, Error> {
    Ok(client
        .get(format!("https://127.0.0.1:{port}/sim/stats"))
        .send()
        .await?
        .json()
        .await?)
}

/// GetUserAvailability requests the sim has answered.
pub async fn sim_reads(client: &reqwest::Client, port: u16) -> Result<i64, Error> {
    let stats = sim_stats(client, port).await?;
    Ok(stats["operations"]["GetUserAvailability"]
        .as_i64()
        .unwrap_or(0))
}

/// Gives the sim's mailboxes user{i:05} for each `i` of `users` one Busy
/// meeting from `start` to `end` (Unix seconds), in one POST /sim/calendars.
pub async fn script_meetings(
    client: &reqwest::Client,
    port: u16,
    users: impl IntoIterator<Item = usize>,
    start: i64,
    end: i64,
) -> Result<(), Error> {
    let stamp = |unix: i64| presence_gateway::clock::rfc3339(unix).unwrap_or_default();
    let mut rows = String::from("mailbox,start,end,busy_type\n");
    for i in users {
        rows.push_str(&format!(
            "user{i:05}@example.com,{},{},Busy\n",
            stamp(start),
            stamp(end)
        ));
    }
    let answer = client
        .post(format!("https://127.0.0.1:{port}/sim/calendars"))
        .body(rows)
        .send()
        .await?;
    if !answer.status().is_success() {
        return Err(format!("scripting calendars: {}", answer.status()).into());
    }
    Ok(())
}
