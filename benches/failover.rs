//! Failover of a Presence Redundancy Group on PostgreSQL (issue 19's
//! benchmark, CL-4): two nodes as real processes of the release build on
//! one database, 1,000 calendar users on bob-node against the release
//! exchange-sim, Failover After 10 s, the default Calendar Spread. Every
//! user has a meeting that started at a minute boundary just before
//! bob-node is killed with SIGKILL, so each user's transition falls due at
//! the boundary plus their offset (0-49 s): some before the kill (bob-node
//! publishes them), the others during and after the outage (alice-node
//! must). Prints the time from the kill to
//!
//! 1. alice-node holding bob-node's lease (serving its users),
//! 2. the first calendar read by alice-node,
//! 3. the first publication by alice-node, and the last of the 1,000,
//!
//! and, per user, how late their transition was published against its due
//! time, and whether any was published twice or not at all.
//!
//! Needs `PRESENCE_GATEWAY_BENCH_POSTGRES` (scripts/bench.sh starts a
//! private server and sets it); says so and stops without it.
//!   cargo build --release && cargo bench --bench failover

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::clock::SystemClock;
use presence_gateway::domain::presence::offset_seconds;
use presence_gateway::domain::redundancy::GroupForm;
use presence_gateway::store;

#[path = "support/database.rs"]
mod database;
#[path = "support/service.rs"]
mod service;
#[path = "support/sim.rs"]
mod sim;

use service::{scalar, set_param_on, sim_reads, until};
use sim::Error;

const USERS: usize = 1_000;
const FAILOVER_AFTER: u64 = 10;
const SPREAD: u32 = 50;
const ALICE: &str = "alice-node";
const BOB: &str = "bob-node";

/// A node process, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `presence-gateway serve` for `name` on `url` with its data in
/// `dir` and its log in `dir/serve.log`; returns once it listens.
fn start_node(dir: &std::path::Path, url: &str, name: &str) -> Result<Node, Error> {
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_presence-gateway"))
        .arg("--data-dir")
        .arg(dir)
        .args([
            "serve",
            "--database",
            url,
            "--listen",
            "127.0.0.1:0",
            "--node-name",
            name,
        ])
        .env_remove("PRESENCE_GATEWAY_ADMIN_PASSWORD")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let node = Node(child);
    // The first line announces the address; the rest is drained so the
    // process never blocks on a full pipe.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx.recv_timeout(left).map_err(|_| {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            format!("{name} did not start within 30 s: {log}")
        })?;
        if line.contains("listening on ") {
            return Ok(node);
        }
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn sleep_until(at: i64) {
    let left = at - unix_now();
    if left > 0 {
        tokio::time::sleep(Duration::from_secs(left as u64)).await;
    }
}

async fn served_by(pool: &sqlx::AnyPool, node: &str) -> Result<Option<String>, Error> {
    let leases = store::redundancy::leases(pool).await?;
    Ok(leases
        .into_iter()
        .find(|lease| lease.node == node)
        .map(|lease| lease.served_by))
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    if database::kind() != "PostgreSQL" {
        println!(
            "failover: needs PostgreSQL ({} unset); not measured",
            database::POSTGRES_ENV
        );
        return Ok(());
    }
    let dir = database::private_tempdir()?;
    let (_sim, sim_port) = sim::start(dir.path(), &["--mailboxes", &USERS.to_string()])?;
    let client = service::sim_client(&dir.path().join("ca.pem"))?;

    // The cluster's configuration, written once through the store as the
    // console would (the secrets key is made here and copied to both
    // nodes, as the admin guide says).
    let mut settings = service::settings(dir.path())?;
    let location = database::location(&settings.data_dir).await?;
    let store::Location::Postgres(url) = location.clone() else {
        return Err("not PostgreSQL".into());
    };
    settings.database = location;
    let seed_dir = settings.data_dir.clone();
    let state = presence_gateway::cmd::serve::prepare(settings, Arc::new(SystemClock))
        .await?
        .state;
    let pool = state.pool.clone();
    service::add_sim_gateway(
        &state,
        &dir.path().join("ca.pem"),
        sim_port,
        sim::ACCOUNT,
        sim::PASSWORD,
    )
    .await?;
    for node in [ALICE, BOB] {
        store::nodes::register(&pool, node, "127.0.0.1:0", unix_now()).await?;
        let port = service::free_port()?;
        set_param_on(&pool, node, "notification_port", &port.to_string()).await?;
        set_param_on(&pool, node, "notification_host", "127.0.0.1").await?;
        set_param_on(&pool, node, "calendar_spread", &SPREAD.to_string()).await?;
    }
    let group = GroupForm::parse("Pair 1", ALICE, BOB, true, &FAILOVER_AFTER.to_string())
        .map_err(|e| format!("{e:?}"))?;
    store::redundancy::save(&pool, None, &group, "bench", unix_now()).await?;
    service::add_users_on(&pool, USERS, BOB).await?;
    let mut nodes = Vec::new();
    for name in [ALICE, BOB] {
        let node_dir = dir.path().join(name);
        std::fs::create_dir_all(&node_dir)?;
        // The service refuses a data directory others may read.
        std::fs::set_permissions(&node_dir, std::fs::Permissions::from_mode(0o700))?;
        std::fs::copy(seed_dir.join("secrets.key"), node_dir.join("secrets.key"))?;
        nodes.push(start_node(&node_dir, &url, name)?);
    }
    let known = until(
        &pool,
        service::KNOWN_SQL,
        USERS as i64,
        Duration::from_secs(120),
    )
    .await
    .ok_or("bob-node did not read its users within 120 s")?;
    println!(
        "failover on PostgreSQL: {USERS} users on bob-node, known {} after start; \
         Failover After {FAILOVER_AFTER} s, Calendar Spread {SPREAD} s",
        secs(known)
    );
    // Each node renews every 2 s; wait for both leases to be current.
    tokio::time::sleep(Duration::from_secs(3)).await;
    if served_by(&pool, BOB).await?.as_deref() != Some(BOB) {
        return Err("bob-node does not hold its own lease".into());
    }

    // Meetings for every user from the next minute boundary, scripted well
    // ahead so that bob-node has read them all before it dies.
    let boundary = (unix_now() + 40).div_euclid(60) * 60;
    service::script_meetings(&client, sim_port, 0..USERS, boundary, boundary + 3600).await?;
    let meeting_sql = format!(
        "SELECT COUNT(*) FROM presence_events WHERE presence = 'in_a_meeting' AND since = {boundary}"
    );

    // bob-node dies 5 s after the boundary: the users whose offset is
    // under 5 s are published by it, the rest fall due while it is away.
    sleep_until(boundary + 5).await;
    let published_by_bob = scalar(&pool, &meeting_sql).await?;
    let reads_before = sim_reads(&client, sim_port).await?;
    let killed = Instant::now();
    let killed_at = unix_now();
    let mut bob = nodes.pop().ok_or("no bob-node")?;
    bob.0.kill()?;
    bob.0.wait()?;
    let (mut lease, mut read, mut first) = (None, None, None);
    let mut all = None;
    while killed.elapsed() < Duration::from_secs(FAILOVER_AFTER + 120) {
        if lease.is_none() && served_by(&pool, BOB).await?.as_deref() == Some(ALICE) {
            lease = Some(killed.elapsed());
        }
        if read.is_none() && sim_reads(&client, sim_port).await? > reads_before {
            read = Some(killed.elapsed());
        }
        let published = scalar(&pool, &meeting_sql).await?;
        if first.is_none() && published > published_by_bob {
            first = Some(killed.elapsed());
        }
        if published >= USERS as i64 {
            all = Some(killed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let show = |d: Option<Duration>| d.map_or_else(|| "never (within the bound)".to_owned(), secs);
    println!(
        "kill -9 of bob-node to alice-node serving its users: {}",
        show(lease)
    );
    println!(
        "kill -9 to alice-node's first calendar read: {}",
        show(read)
    );
    println!(
        "kill -9 to the first publication by alice-node: {} (target: within Failover After \
         + 10 s = {} s: {})",
        show(first),
        FAILOVER_AFTER + 10,
        match first {
            Some(d) if d <= Duration::from_secs(FAILOVER_AFTER + 10) => "PASS",
            _ => "FAIL",
        }
    );
    println!(
        "kill -9 to all {USERS} meetings published: {} ({published_by_bob} by bob-node before \
         it died)",
        show(all)
    );

    // Each user's publication against its due time (boundary + offset),
    // and how many times it was published.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(&format!(
        "SELECT user_id, CAST(MIN(at) AS BIGINT), CAST(COUNT(*) AS BIGINT) FROM presence_events
         WHERE presence = 'in_a_meeting' AND since = {boundary} GROUP BY user_id"
    ))
    .fetch_all(&pool)
    .await?;
    let twice = rows.iter().filter(|(_, _, n)| *n > 1).count();
    let mut on_time = 0;
    let mut gap = 0;
    let mut late = Vec::new();
    for (user, at, _) in &rows {
        let due = boundary + i64::from(offset_seconds(user, SPREAD));
        if at - due <= 1 {
            on_time += 1;
        } else {
            late.push(at - due);
            if due > killed_at {
                gap += 1;
            }
        }
    }
    late.sort_unstable();
    println!(
        "per user: {on_time} published within 1 s of due; {} late (of them {gap} fell due \
         during the failover), worst {} s late; {} never published; {twice} published twice",
        late.len(),
        late.last().copied().unwrap_or(0),
        USERS - rows.len()
    );
    drop(nodes);
    Ok(())
}
