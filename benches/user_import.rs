//! US-4 benchmark: a 45,000-row CSV file checked and applied through the
//! functions the Bulk Administration page uses (the check that builds the
//! report, then Apply: checked again and written in one transaction).
//! Target: under 5 s for check + apply. A second import of the same users
//! with changed names measures the update path.
//! Each run starts from a fresh data directory, as `serve` prepares it.
//!   cargo bench --bench user_import

use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::clock::ManualClock;
use presence_gateway::config::Settings;
use presence_gateway::store;
use secrecy::SecretString;

#[path = "support/database.rs"]
mod database;

const USERS: usize = 45_000;
const RUNS: usize = 3;
const TARGET: Duration = Duration::from_secs(5);

fn csv(surname: &str) -> Vec<u8> {
    let mut csv = String::from("user_id,first_name,last_name,mailbox,node,locale,calendar\r\n");
    for i in 0..USERS {
        csv.push_str(&format!(
            "user{i:05},First{i},\"{surname}, {i}\",user{i:05}@example.com,bench,,{}\r\n",
            if i % 2 == 0 { "on" } else { "off" }
        ));
    }
    csv.into_bytes()
}

struct Timing {
    check: Duration,
    apply: Duration,
}

impl Timing {
    fn total(&self) -> Duration {
        self.check + self.apply
    }
}

async fn import(
    pool: &sqlx::AnyPool,
    bytes: &[u8],
    now: i64,
) -> Result<(Timing, store::bulk::Applied), Box<dyn std::error::Error>> {
    let work = store::bulk::Work::alone();
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    let started = Instant::now();
    let report = store::bulk::check(pool, bytes.clone(), &work)
        .await?
        .map_err(|e| e.to_string())?;
    if !report.is_clean() {
        return Err(format!("{} rows in error", report.errors).into());
    }
    let check = started.elapsed();
    let started = Instant::now();
    // The page makes the unusable password hash per Apply: count it in.
    let hash = store::bulk::unusable_password_hash().await?;
    let applied = store::bulk::apply(pool, bytes, &hash, "admin", now, None, &work)
        .await?
        .map_err(|e| format!("refused: {e:?}"))?;
    Ok((
        Timing {
            check,
            apply: started.elapsed(),
        },
        applied,
    ))
}

async fn one_run() -> Result<(Timing, Timing), Box<dyn std::error::Error>> {
    let dir = database::private_tempdir()?;
    let settings = Settings {
        data_dir: dir.path().to_owned(),
        listen: "127.0.0.1:0".parse()?,
        node_name: "bench".to_owned(),
        tls_cert: None,
        tls_key: None,
        admin_password: Some(SecretString::from("bench-console-password".to_owned())),
        proxy_env: Default::default(),
        database: presence_gateway::store::Location::Sqlite(
            presence_gateway::config::database_path(dir.path()),
        ),
    };
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()));
    let state = presence_gateway::cmd::serve::prepare(settings, clock)
        .await?
        .state;

    let (create, applied) = import(&state.pool, &csv("Surname"), state.now()).await?;
    if applied.created != USERS {
        return Err(format!("created {} users, not {USERS}", applied.created).into());
    }
    let (update, applied) = import(&state.pool, &csv("Renamed"), state.now()).await?;
    if applied.updated != USERS || applied.unchanged != 0 {
        return Err(format!("updated {} users, not {USERS}", applied.updated).into());
    }
    let exported = store::bulk::export(&state.pool).await?;
    if exported.iter().filter(|b| **b == b'\n').count() != USERS + 1 {
        return Err("the export does not hold every user".into());
    }
    state.pool.close().await;
    Ok((create, update))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        runs.push(one_run().await?);
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    for (n, (create, update)) in runs.iter().enumerate() {
        println!(
            "run {}: create {USERS}: check {:.0} ms + apply {:.0} ms = {:.0} ms; \
             update {USERS}: check {:.0} ms + apply {:.0} ms = {:.0} ms",
            n + 1,
            ms(create.check),
            ms(create.apply),
            ms(create.total()),
            ms(update.check),
            ms(update.apply),
            ms(update.total()),
        );
    }
    let worst = runs
        .iter()
        .map(|(create, update)| create.total().max(update.total()))
        .max()
        .unwrap_or_default();
    println!(
        "US-4 import of {USERS} users (check + apply, worst of {RUNS} runs, create and update) \
         under {} s: {:.0} ms: {}",
        TARGET.as_secs(),
        ms(worst),
        if worst < TARGET { "PASS" } else { "FAIL" }
    );
    Ok(())
}
