//! Idle event streams (issue 20's benchmark): the service in this process on
//! a loopback port, with 1,000 and then 5,000 streams open from this process
//! (spread over client addresses 127.0.0.1 to 127.0.0.5, as the per-address
//! bound of 2,000 asks). Prints, for each count:
//!
//! 1. the process's CPU over 60 s with nothing published (target under 2%
//!    of a core at 1,000), clients included: they only read the keep-alive
//!    comments;
//! 2. one change published, and the time until each stream has received
//!    it (p50, p99 and the last; target p99 under 1 s at 1,000).
//!
//! 10,000 streams would need 20,000 descriptors in one process (both ends
//! here); this machine's hard limit is 20,000, so the count stops at 5,000.
//! The database is SQLite, or PostgreSQL with PRESENCE_GATEWAY_BENCH_POSTGRES.
//!   cargo bench --bench streams

use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::clock::SystemClock;
use presence_gateway::domain::presence::CalendarPresence;
use presence_gateway::store;
use presence_gateway::store::presence::Publication;

#[path = "support/database.rs"]
mod database;
#[path = "support/service.rs"]
mod service;

use service::{Error, cpu_seconds};

const IDLE: Duration = Duration::from_secs(60);
const PER_ADDRESS: usize = 1_000;

#[tokio::main]
async fn main() -> Result<(), Error> {
    presence_gateway::net::raise_fd_limit();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = database::private_tempdir()?;
    let mut settings = service::settings(dir.path())?;
    settings.database = database::location(&settings.data_dir).await?;
    let state = presence_gateway::cmd::serve::prepare(settings, Arc::new(SystemClock))
        .await?
        .state;
    let (token, hash) = presence_gateway::secrets::api_token::generate();
    let name = presence_gateway::domain::token::TokenName::parse("Streams bench")
        .map_err(|e| format!("{e:?}"))?;
    store::tokens::create(&state.pool, &name, &hash, "bench", state.now()).await?;
    // The one user whose change is published (user00000).
    service::add_users(&state.pool, 1).await?;
    let bearer = format!("Bearer {}", secrecy::ExposeSecret::expose_secret(&token));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let app = presence_gateway::web::app(state.clone());
    tokio::spawn(presence_gateway::net::serve(
        listener,
        None,
        app,
        presence_gateway::net::Limits::console(),
        std::future::pending(),
    ));
    println!("idle event streams on {}", database::kind());
    let mut open = Vec::new();
    let mut since = 1_800_000_000i64;
    for target in [1_000usize, 5_000] {
        // Open up to `target`, in client-address groups.
        while open.len() < target {
            let address = 1 + open.len() / PER_ADDRESS;
            let client = reqwest::Client::builder()
                .local_address(std::net::IpAddr::from([127, 0, 0, address as u8]))
                .pool_max_idle_per_host(0)
                .build()?;
            let url = format!("http://127.0.0.1:{port}/api/v1/presence/stream");
            for _ in 0..PER_ADDRESS.min(target - open.len()) {
                let response = client
                    .get(&url)
                    .header("Authorization", &bearer)
                    .send()
                    .await?;
                if !response.status().is_success() {
                    return Err(
                        format!("stream {} refused: {}", open.len(), response.status()).into(),
                    );
                }
                open.push(response);
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
        let cpu = cpu_seconds();
        let idle = Instant::now();
        tokio::time::sleep(IDLE).await;
        let share = (cpu_seconds() - cpu) / idle.elapsed().as_secs_f64() * 100.0;
        println!(
            "{target} idle streams: process CPU {share:.2}% of a core over {} s{}",
            IDLE.as_secs(),
            if target == 1_000 {
                format!(
                    " (target < 2%: {})",
                    if share < 2.0 { "PASS" } else { "FAIL" }
                )
            } else {
                String::new()
            }
        );

        // One change, and when each stream has it.
        since += 60;
        let streams = std::mem::take(&mut open);
        let published = Instant::now();
        let mut readers = tokio::task::JoinSet::new();
        for mut stream in streams {
            readers.spawn(async move {
                let mut seen = String::new();
                let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
                while let Ok(Ok(Some(chunk))) =
                    tokio::time::timeout_at(deadline, stream.chunk()).await
                {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                    if seen.contains("event: presence") {
                        return (Some(published.elapsed()), stream);
                    }
                }
                (None, stream)
            });
        }
        store::presence::publish(
            &state.pool,
            &[Publication {
                user_id: "user00000".to_owned(),
                presence: CalendarPresence::InAMeeting,
                since,
                until: Some(since + 1800),
                gateway: Some("Sim".to_owned()),
                reason: None,
            }],
            since,
        )
        .await?;
        let mut times = Vec::new();
        let mut missed = 0;
        while let Some(done) = readers.join_next().await {
            let (took, stream) = done?;
            match took {
                Some(took) => times.push(took),
                None => missed += 1,
            }
            open.push(stream);
        }
        times.sort();
        let at = |p: f64| {
            times
                .get(((times.len() as f64 - 1.0) * p).round() as usize)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "{target} streams, one change published: received by {} (missed {missed}) \
             p50 {:.0} ms, p99 {:.0} ms, last {:.0} ms{}",
            times.len(),
            at(0.5),
            at(0.99),
            at(1.0),
            if target == 1_000 {
                format!(
                    " (target p99 < 1 s: {})",
                    if at(0.99) < 1000.0 && missed == 0 {
                        "PASS"
                    } else {
                        "FAIL"
                    }
                )
            } else {
                String::new()
            }
        );
    }
    Ok(())
}
