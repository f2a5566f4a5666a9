//! TS-6 benchmark: ten EWS gateways on exchange-sim answering with 200 ms of
//! latency, checked by the Troubleshooter panel's "all gateways" run, must
//! finish within 1.5 times the time one gateway takes (measured in the same
//! run). Uses the release exchange-sim binary.
//!   cargo bench --bench troubleshoot_all

use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::clock::ManualClock;
use presence_gateway::config::Settings;
use presence_gateway::domain::gateway::{
    AccountName, Description, GatewayKind, Mailbox, Port, ServerLocation,
};
use presence_gateway::store;
use presence_gateway::web::troubleshooter;
use secrecy::SecretString;

const GATEWAYS: usize = 10;
const LATENCY_MS: &str = "200";
const RUNS: usize = 3;

#[path = "support/database.rs"]
mod database;
#[path = "support/sim.rs"]
mod sim;

use sim::Error;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let dir = database::private_tempdir()?;
    let (_sim, port) = sim::start(dir.path(), &["--latency-ms", LATENCY_MS])?;
    let settings = Settings {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse()?,
        node_name: "bench".to_owned(),
        tls_cert: None,
        tls_key: None,
        admin_password: Some(SecretString::from("bench-console-password".to_owned())),
        proxy_env: Default::default(),
        database: presence_gateway::store::Location::Sqlite(
            presence_gateway::config::database_path(&dir.path().join("data")),
        ),
    };
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let state = presence_gateway::cmd::serve::prepare(settings, clock)
        .await?
        .state;
    let pem = std::fs::read(dir.path().join("ca.pem"))?;
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der?;
        let info = presence_gateway::tls::certinfo::parse(&der)?;
        store::trust::insert(&state.pool, &der, &info, "bench", state.now()).await?;
    }
    for i in 0..GATEWAYS {
        let input = store::gateways::GatewayInput {
            kind: GatewayKind::Ews,
            description: Description::parse(&format!("Sim {i:02}"))?,
            server: ServerLocation::parse("127.0.0.1")?,
            port: Port::parse(&port.to_string())?,
            test_mailbox: Mailbox::parse_optional(GatewayKind::Ews, "user@example.com")?,
            account: AccountName::parse(GatewayKind::Ews, sim::ACCOUNT)?,
            password: if i == 0 {
                Some(state.cipher.seal_password(sim::PASSWORD)?)
            } else {
                None
            },
            graph: None,
        };
        store::gateways::create(&state.pool, &input, "bench", state.now()).await?;
    }
    let gateways = store::gateways::list(&state.pool, None).await?;
    let one = &gateways[0];

    let mut single = Vec::new();
    let mut all = Vec::new();
    for _ in 0..RUNS {
        let started = Instant::now();
        let panel = troubleshooter::run_one(&state, one).await?;
        single.push(started.elapsed());
        if panel.headline != "Verified" {
            return Err(format!("one gateway: {}", panel.headline).into());
        }
        let started = Instant::now();
        let results = troubleshooter::run_all(&state).await?;
        all.push(started.elapsed());
        let verified = results
            .iter()
            .filter(|(_, p)| p.headline == "Verified")
            .count();
        if verified != GATEWAYS {
            return Err(format!("only {verified} of {GATEWAYS} verified").into());
        }
    }
    single.sort();
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let (one_ms, all_ms) = (ms(single[RUNS / 2]), ms(all[RUNS / 2]));
    let ratio = all_ms / one_ms;
    println!(
        "TS-6 Troubleshooter, exchange-sim latency {LATENCY_MS} ms, median of {RUNS}: one gateway \
         {one_ms:.0} ms, all {GATEWAYS} gateways {all_ms:.0} ms, ratio {ratio:.2} (target <= 1.5): {}",
        if ratio <= 1.5 { "PASS" } else { "FAIL" }
    );
    state.pool.close().await;
    Ok(())
}
