//! The store on two databases (CL-1, CL-2): both schemas agree, and what
//! needs a PostgreSQL server (`cluster_pg`, run by the test command's
//! PostgreSQL pass) works there.

use std::collections::BTreeMap;

use presence_gateway::store;
use sqlx::Row;

use crate::support::{self, TestApp};

/// Table -> (column -> (kind, not null)), as the schema declares them.
type Schema = BTreeMap<String, BTreeMap<String, (&'static str, bool)>>;

/// Tables of the engine's own making that the copy leaves out on purpose:
/// SQLite's full-text index (rebuilt from `users`), the migration ledgers,
/// and the sessions (everyone signs in again).
fn ours(table: &str) -> bool {
    !(table.starts_with("sqlite_")
        || table.starts_with("users_fts")
        || table == "_sqlx_migrations"
        || table == "tower_sessions")
}

async fn sqlite_schema(pool: &sqlx::AnyPool) -> Schema {
    let tables: Vec<String> =
        sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut schema = Schema::new();
    for table in tables.into_iter().filter(|t| ours(t)) {
        let rows = sqlx::query(&format!(
            "SELECT name, type, \"notnull\", pk FROM pragma_table_info('{table}')"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        let mut columns = BTreeMap::new();
        for row in rows {
            let name: String = row.get(0);
            let kind: String = row.get(1);
            let not_null: i64 = row.get(2);
            let pk: i64 = row.get(3);
            let kind = match kind.to_ascii_uppercase().as_str() {
                "INTEGER" => "integer",
                "TEXT" => "text",
                "BLOB" => "blob",
                other => panic!("{table}.{name}: SQLite type {other}"),
            };
            // A primary key column holds no NULL in practice (SQLite's
            // rowid alias), as PostgreSQL declares.
            columns.insert(name, (kind, not_null == 1 || pk > 0));
        }
        schema.insert(table, columns);
    }
    schema
}

async fn postgres_schema(pool: &sqlx::AnyPool) -> Schema {
    let rows = sqlx::query(
        "SELECT table_name::text, column_name::text, data_type::text, is_nullable::text
         FROM information_schema.columns
         WHERE table_schema = current_schema()
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    let mut schema = Schema::new();
    for row in rows {
        let table: String = row.get(0);
        if !ours(&table) {
            continue;
        }
        let name: String = row.get(1);
        let kind: String = row.get(2);
        let nullable: String = row.get(3);
        let kind = match kind.as_str() {
            "bigint" => "integer",
            "text" => "text",
            "bytea" => "blob",
            other => panic!("{table}.{name}: PostgreSQL type {other}"),
        };
        schema
            .entry(table)
            .or_default()
            .insert(name, (kind, nullable == "NO"));
    }
    schema
}

/// The two migration folders describe one schema: the same tables, columns,
/// kinds and nullability (PostgreSQL spells out SQLite's implicit `rowid` of
/// login_failures), every table is copied by `db copy`, and PostgreSQL's
/// migrations carry SQLite's versions up to the newest.
#[tokio::test]
async fn both_schemas_have_the_same_tables_and_columns() {
    let dir = support::private_tempdir().unwrap();
    let sqlite = store::open(&dir.path().join("schema.db")).await.unwrap();
    let sqlite_schema = sqlite_schema(&sqlite).await;
    let mut copied: Vec<&str> = store::copy::TABLES.to_vec();
    copied.sort_unstable();
    let tables: Vec<&str> = sqlite_schema.keys().map(String::as_str).collect();
    assert_eq!(tables, copied, "db copy's table list");

    let sqlite_versions: Vec<i64> = store::SQLITE_MIGRATOR.iter().map(|m| m.version).collect();
    let postgres_versions: Vec<i64> = store::POSTGRES_MIGRATOR.iter().map(|m| m.version).collect();
    assert!(
        postgres_versions
            .iter()
            .all(|v| sqlite_versions.contains(v)),
        "PostgreSQL migrations use SQLite's versions: {postgres_versions:?}"
    );
    assert_eq!(
        postgres_versions.last(),
        sqlite_versions.last(),
        "newest version"
    );

    let Some(server) = support::postgres_server() else {
        println!(
            "SQLite schema checked; the comparison with PostgreSQL runs in the PostgreSQL pass"
        );
        return;
    };
    let url = support::fresh_postgres_database(&server).await;
    let postgres = store::open_at(&store::Location::Postgres(url))
        .await
        .unwrap();
    let mut postgres_schema = postgres_schema(&postgres).await;
    let rowid = postgres_schema
        .get_mut("login_failures")
        .and_then(|columns| columns.remove("rowid"));
    assert_eq!(rowid, Some(("integer", true)), "login_failures.rowid");
    for (table, columns) in &sqlite_schema {
        assert_eq!(
            postgres_schema.get(table),
            Some(columns),
            "table {table}: SQLite {columns:?}"
        );
    }
    assert_eq!(
        postgres_schema.len(),
        sqlite_schema.len(),
        "the same tables"
    );
}

/// `--database` names what is wrong with it before anything starts.
#[test]
fn a_database_url_that_does_not_parse_is_a_usage_error() {
    let dir = support::private_tempdir().unwrap();
    for (url, expected) in [
        (
            "mysql://db.example.com/presence",
            "unsupported database scheme mysql",
        ),
        ("postgres:///presence", "names no host"),
        ("postgres://db.example.com", "names no database"),
    ] {
        let output = std::process::Command::new(support::binary())
            .arg("--data-dir")
            .arg(dir.path())
            .args(["--database", url, "serve", "--listen", "127.0.0.1:0"])
            .env_remove("PRESENCE_GATEWAY_DATABASE_URL")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
    }
}

/// Needs the PostgreSQL server of the test command's second pass: the
/// SQLite pass leaves this module out by name (and says so).
mod cluster_pg {
    use super::*;

    fn server() -> String {
        support::postgres_server().unwrap_or_else(|| {
            panic!(
                "{} is not set: these tests run in the test command's PostgreSQL pass",
                support::POSTGRES_SERVER_ENV
            )
        })
    }

    fn serve_failing(dir: &std::path::Path, database: &str) -> (Option<i32>, String) {
        let output = std::process::Command::new(support::binary())
            .arg("--data-dir")
            .arg(dir)
            .args(["--database", database, "serve", "--listen", "127.0.0.1:0"])
            .env_remove("PRESENCE_GATEWAY_DATABASE_URL")
            .env("PRESENCE_GATEWAY_ADMIN_PASSWORD", support::ADMIN_PASSWORD)
            .output()
            .unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// An unreachable server, a wrong password and a missing database each
    /// say what failed, with exit status 2 and no panic.
    #[tokio::test]
    async fn a_database_that_cannot_be_used_says_what_failed() {
        let server = server();
        let dir = support::private_tempdir().unwrap();
        let closed = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let (status, stderr) = serve_failing(
            dir.path(),
            &format!("postgres://pg@127.0.0.1:{closed}/presence"),
        );
        assert_eq!(status, Some(2), "{stderr}");
        assert!(
            stderr.contains("cannot reach the PostgreSQL server"),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");

        let mut missing = url::Url::parse(&server).unwrap();
        missing.set_path("/no_such_database");
        let (status, stderr) = serve_failing(dir.path(), missing.as_str());
        assert_eq!(status, Some(2), "{stderr}");
        assert!(stderr.contains("the database does not exist"), "{stderr}");

        // A role that must sign in with its password (the server trusts
        // only its administrator).
        let admin = store::open_at(&store::Location::Postgres(
            support::fresh_postgres_database(&server).await,
        ))
        .await
        .unwrap();
        let role = format!("r{:08x}", rand::random::<u32>());
        sqlx::query(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'right-password'"
        ))
        .execute(&admin)
        .await
        .unwrap();
        let mut wrong = url::Url::parse(&server).unwrap();
        wrong.set_username(&role).unwrap();
        wrong.set_password(Some("wrong-password")).unwrap();
        let (status, stderr) = serve_failing(dir.path(), wrong.as_str());
        assert_eq!(status, Some(2), "{stderr}");
        assert!(
            stderr.contains("refused the user name or password"),
            "{stderr}"
        );
        assert!(
            !stderr.contains("wrong-password"),
            "the password is not shown: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    /// A second node with another secrets key refuses to start on the
    /// shared database and says which file to copy; with the first node's
    /// key it starts.
    #[tokio::test]
    async fn a_node_whose_key_does_not_open_the_database_refuses_to_start() {
        let server = server();
        let url = support::fresh_postgres_database(&server).await;
        let first = TestApp::spawn_at(
            support::private_tempdir().unwrap(),
            store::Location::Postgres(url.clone()),
        )
        .await;
        let other = support::private_tempdir().unwrap();
        let (status, stderr) = serve_failing(other.path(), &url);
        assert_eq!(status, Some(1), "{stderr}");
        assert!(
            stderr.contains("copy secrets.key from the data directory of another node"),
            "{stderr}"
        );
        std::fs::copy(
            first.dir.path().join("secrets.key"),
            other.path().join("secrets.key"),
        )
        .unwrap();
        std::fs::set_permissions(
            other.path().join("secrets.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
        let mut settings = support::test_settings(other.path(), Some(support::ADMIN_PASSWORD));
        settings.node_name = "node-b".to_owned();
        settings.database = store::Location::Postgres(url);
        presence_gateway::cmd::serve::prepare(settings, first.clock.clone())
            .await
            .expect("a node with the cluster's key starts");
    }

    /// `db copy` moves a populated single-host installation: rows per
    /// table printed, a second copy refused, and the copied store serves
    /// the same users, gateway and presence, with new rows after the
    /// copied ids.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn db_copy_moves_an_installation_and_new_rows_follow_on() {
        let server = server();
        let source = TestApp::spawn_sqlite().await;
        source.sign_in_admin().await;
        crate::gateways::add(&source, &crate::gateways::ews("Copied", "ex1.example.com")).await;
        let ids: Vec<presence_gateway::domain::user::UserId> = (0..1200)
            .map(|i| presence_gateway::domain::user::UserId::parse(&format!("copy{i:04}")).unwrap())
            .collect();
        crate::support::seed::create_many_end_users(
            &source.state.pool,
            &ids,
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            true,
            source.state.now(),
        )
        .await
        .unwrap();
        sqlx::query("UPDATE users SET node = 'test-node' WHERE user_id = 'copy0007'")
            .execute(&source.state.pool)
            .await
            .unwrap();
        let published = store::presence::publish(
            &source.state.pool,
            &[store::presence::Publication {
                user_id: "copy0007".to_owned(),
                presence: presence_gateway::domain::presence::CalendarPresence::InAMeeting,
                since: source.state.now() - 60,
                until: Some(source.state.now() + 1800),
                gateway: Some("Copied".to_owned()),
                reason: None,
            }],
            source.state.now(),
        )
        .await
        .unwrap();
        assert_eq!(published.len(), 1);
        let users_before = source.count("SELECT COUNT(*) FROM users").await;
        let max_id = source.count("SELECT MAX(id) FROM users").await;
        let db_file = presence_gateway::config::database_path(source.dir.path());
        let (status, presence_before) = source.get_text("/api/v1/presence/copy0007").await;
        assert_eq!(status, 200, "{presence_before}");
        assert!(
            presence_before.contains("\"in_a_meeting\""),
            "{presence_before}"
        );
        let dir = source.stop().await;

        let target = support::fresh_postgres_database(&server).await;
        let copy = |target: &str| {
            std::process::Command::new(support::binary())
                .args(["db", "copy", "--from"])
                .arg(format!("sqlite:{}", db_file.display()))
                .args(["--to", target])
                .env_remove("PRESENCE_GATEWAY_DATABASE_URL")
                .output()
                .unwrap()
        };
        let output = copy(&target);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(0), "{stdout}{stderr}");
        let users_line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with("users "))
            .unwrap_or_else(|| panic!("{stdout}"));
        assert!(
            users_line.contains(&format!(" {users_before} rows")),
            "{stdout}"
        );
        assert!(stdout.contains("gateways"), "{stdout}");
        assert!(stdout.contains("secrets.key"), "{stdout}");

        let again = copy(&target);
        let stderr = String::from_utf8_lossy(&again.stderr).into_owned();
        assert_eq!(again.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("already holds data, so nothing was copied"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("users: {users_before} rows")),
            "{stderr}"
        );

        // The copied installation, on PostgreSQL with the same data
        // directory (its secrets key).
        let app = TestApp::spawn_at(dir, store::Location::Postgres(target)).await;
        app.sign_in_admin().await;
        let (status, page) = app.get_text("/presence/gateways").await;
        assert_eq!(status, 200);
        assert!(page.contains("Copied"), "{page}");
        let (status, page) = app
            .get_text("/users/end-users?field=user_id&match=begins&text=COPY119&page=1")
            .await;
        assert_eq!(status, 200);
        assert!(page.contains("copy1199"), "{page}");
        let (status, body) = app.get_text("/api/v1/presence/copy0007").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, presence_before, "the same presence after the copy");
        // The sealed Exchange password opens with the copied key: the
        // gateway's edit page renders (it would fail to open otherwise).
        let new_id = app
            .create_end_user("after-copy", "basalt-lantern-pw-12")
            .await;
        assert!(
            new_id > max_id,
            "a new row follows the copied ids: {new_id} <= {max_id}"
        );
        let events = app.count("SELECT COUNT(*) FROM presence_events").await;
        assert_eq!(events, 1);
    }

    /// A node of a two-node cluster on the shared database, in its own
    /// process with its own data directory.
    fn node(dir: &std::path::Path, url: &str, name: &str) -> support::ServeProcess {
        node_with_stderr(dir, url, name, std::process::Stdio::inherit())
    }

    fn node_with_stderr(
        dir: &std::path::Path,
        url: &str,
        name: &str,
        stderr: std::process::Stdio,
    ) -> support::ServeProcess {
        support::ServeProcess::start_with_stderr(
            dir,
            &[
                "--database",
                url,
                "--listen",
                "127.0.0.1:0",
                "--node-name",
                name,
            ],
            &[("PRESENCE_GATEWAY_ADMIN_PASSWORD", support::ADMIN_PASSWORD)],
            stderr,
        )
    }

    fn copy_key(from: &std::path::Path, to: &std::path::Path) {
        std::fs::copy(from.join("secrets.key"), to.join("secrets.key")).unwrap();
        std::fs::set_permissions(
            to.join("secrets.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .unwrap();
    }

    async fn sign_in(client: &reqwest::Client, base: &str) {
        let response = client
            .post(format!("{base}/login"))
            .header("Origin", base)
            .header("Sec-Fetch-Site", "same-origin")
            .form(&[
                ("user_id", support::ADMIN),
                ("password", support::ADMIN_PASSWORD),
                ("next", ""),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303, "signed in on {base}");
    }

    /// The status of `GET base/` with `client`'s cookies (a signed-out
    /// browser is sent to the sign-in page).
    async fn home_status(client: &reqwest::Client, base: &str) -> u16 {
        client
            .get(format!("{base}/"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn open_stream(
        client: &reqwest::Client,
        base: &str,
        last_event_id: Option<&str>,
    ) -> crate::api::SseReader {
        let mut request = client.get(format!("{base}/api/v1/presence/stream"));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = tokio::time::timeout(std::time::Duration::from_secs(10), request.send())
            .await
            .expect("the stream answers in time")
            .unwrap();
        crate::api::SseReader::new(response)
    }

    async fn publish(pool: &sqlx::AnyPool, user: &str, since: i64) -> i64 {
        use presence_gateway::domain::user::{Role, UserId};
        let id = UserId::parse(user).unwrap();
        if store::users::find_by_user_id(pool, user)
            .await
            .unwrap()
            .is_none()
        {
            store::users::create(
                pool,
                store::users::NewUser {
                    user_id: &id,
                    role: Role::EndUser,
                    first_name: "Erin",
                    last_name: "Enduser",
                    password_hash: "not-a-hash",
                    must_change_password: false,
                },
                since,
            )
            .await
            .unwrap();
        }
        let batch = [crate::api::publication(
            user,
            presence_gateway::domain::presence::CalendarPresence::InAMeeting,
            since,
        )];
        store::presence::publish(pool, &batch, since).await.unwrap()[0]
    }

    /// Two nodes as separate processes with separate data directories on
    /// one PostgreSQL database (CL-3): a sign-out on B ends the session on
    /// A at once; A's Control Center restarts B's engine within a second;
    /// a write from elsewhere reaches a stream on A through the database's
    /// notification (well before the stream's fallback poll); a stream
    /// opened on B resumes on A with Last-Event-ID after B is killed.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_in_two_processes_share_sessions_commands_and_streams() {
        use std::time::{Duration, Instant};
        let server = server();
        let url = support::fresh_postgres_database(&server).await;
        let pool = store::open_at(&store::Location::Postgres(url.clone()))
            .await
            .unwrap();
        let (port_a, port_b) = (crate::engine::free_port(), crate::engine::free_port());
        crate::engine::set_param(&pool, "node-a", "notification_port", &port_a.to_string()).await;
        crate::engine::set_param(&pool, "node-b", "notification_port", &port_b.to_string()).await;
        let (dir_a, dir_b) = (
            support::private_tempdir().unwrap(),
            support::private_tempdir().unwrap(),
        );
        let a = node(dir_a.path(), &url, "node-a");
        copy_key(dir_a.path(), dir_b.path());
        let mut b = node(dir_b.path(), &url, "node-b");
        crate::engine::wait_state(&pool, "node-b", "running").await;
        crate::engine::wait_state(&pool, "node-a", "running").await;

        // One browser: signed in on A, the session holds on B; signed out
        // on B, A refuses it on the next request.
        let browser = crate::api::streaming_client(true);
        sign_in(&browser, &a.url).await;
        assert_eq!(home_status(&browser, &a.url).await, 200);
        assert_eq!(home_status(&browser, &b.url).await, 200);
        let response = browser
            .post(format!("{}/logout", b.url))
            .header("Origin", &b.url)
            .header("Sec-Fetch-Site", "same-origin")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303);
        assert_eq!(
            home_status(&browser, &a.url).await,
            303,
            "A refuses at once"
        );

        // A's Control Center restarts B's engine; B's process acts.
        sign_in(&browser, &a.url).await;
        let asked = Instant::now();
        let response = browser
            .post(format!("{}/serviceability/control-center", a.url))
            .header("Origin", &a.url)
            .header("Sec-Fetch-Site", "same-origin")
            .form(&[("node", "node-b"), ("action", "restart")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 303);
        let restarted = loop {
            // B's supervisor marks the command done once its engine runs
            // again.
            let outcome: Option<String> = sqlx::query_scalar(
                "SELECT outcome FROM engine_commands WHERE node = 'node-b' AND done_at IS NOT NULL",
            )
            .fetch_optional(&pool)
            .await
            .unwrap()
            .flatten();
            if outcome.is_some() {
                assert_eq!(
                    store::engine::node(&pool, "node-b")
                        .await
                        .unwrap()
                        .unwrap()
                        .engine_state,
                    "running"
                );
                break asked.elapsed();
            }
            assert!(
                asked.elapsed() < Duration::from_secs(10),
                "B never restarted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(
            restarted < Duration::from_secs(1),
            "B restarted {restarted:?} after A asked"
        );

        // A stream on A hears a write made elsewhere through the database's
        // notification, sooner than its fallback poll (2 s).
        let streamer = crate::api::streaming_client(true);
        sign_in(&streamer, &a.url).await;
        let mut on_a = open_stream(&streamer, &a.url, None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let written = Instant::now();
        let seq = publish(&pool, "carol", 1_800_000_000).await;
        let event = on_a.next_within(Duration::from_secs(10)).await.unwrap();
        assert_eq!(event.id, seq.to_string());
        let heard = written.elapsed();
        assert!(heard < Duration::from_millis(1500), "heard after {heard:?}");
        drop(on_a);

        // A stream on B, then B is killed: the client resumes on A.
        let mut on_b = open_stream(&streamer, &b.url, None).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let first = publish(&pool, "dave", 1_800_000_060).await;
        assert_eq!(
            on_b.next_within(Duration::from_secs(10)).await.unwrap().id,
            first.to_string()
        );
        b.child.kill().unwrap();
        b.child.wait().unwrap();
        drop(on_b);
        let missed = [
            publish(&pool, "erin", 1_800_000_120).await,
            publish(&pool, "frank", 1_800_000_180).await,
        ];
        let mut resumed = open_stream(&streamer, &a.url, Some(&first.to_string())).await;
        for seq in missed {
            let event = resumed.next_within(Duration::from_secs(10)).await.unwrap();
            assert_eq!(event.id, seq.to_string());
        }
        assert!(
            resumed
                .next_within(Duration::from_millis(500))
                .await
                .is_none()
        );
        drop(a);
        pool.close().await;
    }

    /// One request of the load in the restart test: when it was sent and
    /// answered (since the test's start), and its status (0: no answer).
    struct Sent {
        path: String,
        sent: std::time::Duration,
        answered: std::time::Duration,
        status: u16,
    }

    /// Four clients asking without pause, until `stop` is set (or 180 s,
    /// or 200,000 requests): the API for `users` with `bearer`, the gateway
    /// list with the administrator's cookies, and /healthz.
    fn load(
        app: &TestApp,
        bearer: &str,
        users: &[String],
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        t0: std::time::Instant,
    ) -> Vec<tokio::task::JoinHandle<Vec<Sent>>> {
        use std::time::Duration;
        (0..4)
            .map(|worker| {
                let api = crate::api::streaming_client(false);
                let console = app.client.clone();
                let base = app.url("");
                let bearer = bearer.to_owned();
                let users = users.to_vec();
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut sent = Vec::new();
                    let mut i = worker;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed)
                        && t0.elapsed() < Duration::from_secs(180)
                        && sent.len() < 50_000
                    {
                        let (path, request) = match i % 3 {
                            0 => {
                                let path =
                                    format!("/api/v1/presence/{}", users[i / 3 % users.len()]);
                                let request = api
                                    .get(format!("{base}{path}"))
                                    .header("Authorization", &bearer);
                                (path, request)
                            }
                            1 => {
                                let path = "/presence/gateways".to_owned();
                                (path.clone(), console.get(format!("{base}{path}")))
                            }
                            _ => {
                                let path = "/healthz".to_owned();
                                (path.clone(), api.get(format!("{base}{path}")))
                            }
                        };
                        let at = t0.elapsed();
                        let status = match request.timeout(Duration::from_secs(15)).send().await {
                            Ok(response) => response.status().as_u16(),
                            Err(_) => 0,
                        };
                        sent.push(Sent {
                            path,
                            sent: at,
                            answered: t0.elapsed(),
                            status,
                        });
                        i += 4;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    sent
                })
            })
            .collect()
    }

    /// PostgreSQL stopped for 10 s under load, then started (CL-5): a
    /// running node with its engine and 50 calendar users, while four
    /// clients keep asking for presence, a console page and /healthz.
    /// Outside the outage (until the server stops, and from 5 s after it is
    /// back) every request answers 200; during it, pages and the API say
    /// the database is unavailable (503) and never fail otherwise or stay
    /// silent. The meetings that fell due during the outage are published
    /// once the server is back, each exactly once, and an open stream
    /// carries alice's without reconnecting. (That a refused write is kept
    /// for the next round is the engine's unit test
    /// `publications_the_database_refused_...`.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgresql_stopped_for_10_s_under_load_loses_no_presence() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::time::{Duration, Instant};

        use presence_gateway::domain::presence::{offset_seconds, publish_at};
        const USERS: usize = 50;
        let _ = server();
        let pg = support::PrivatePostgres::start();
        let url = support::fresh_postgres_database(&pg.url).await;
        let app = TestApp::spawn_at(
            support::private_tempdir().unwrap(),
            store::Location::Postgres(url),
        )
        .await;
        app.sign_in_admin().await;
        let rig = crate::presence_engine::Rig::with_app(&[], app).await;
        rig.add_gateway("Sim", rig.sim.port()).await;
        rig.add_user("alice", "alice@example.com").await;
        let mut users = vec!["alice".to_owned()];
        for i in 1..USERS {
            let user = format!("user{i:02}");
            rig.add_user(&user, &format!("{user}@example.com")).await;
            users.push(user);
        }
        let start = crate::presence_engine::minute_from_now(&rig.app, 3);
        let end = start + 30 * 60;
        let mailboxes: Vec<String> = users.iter().map(|u| format!("{u}@example.com")).collect();
        let rows: Vec<(&str, i64, i64, &str)> = mailboxes
            .iter()
            .map(|m| (m.as_str(), start, end, "Busy"))
            .collect();
        rig.script(&rows).await;
        let _engine = rig.start_engine().await;
        rig.wait_first_read().await;
        // Every first read published (the latest offset is under 50 s).
        rig.advance_to(publish_at(rig.app.state.now(), 0) + 60);
        for user in &users {
            rig.wait_presence(user, "available", 10).await;
        }
        let token = crate::api::create_token(&rig.app, "Through a restart").await;
        let bearer = format!("Bearer {token}");
        let api = crate::api::streaming_client(false);
        let mut stream = crate::api::SseReader::new(
            crate::api::open_stream(&api, &rig.app, "", &[("Authorization", &bearer)]).await,
        );

        let t0 = Instant::now();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let workers = load(&rig.app, &bearer, &users, stop.clone(), t0);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let paused = t0.elapsed();
        pg.pause();
        // The meetings fall due while the database is away.
        let last_due = users
            .iter()
            .map(|u| publish_at(start, offset_seconds(u, 50)))
            .max()
            .unwrap();
        rig.advance_to(last_due);
        let (status, page) = rig.app.get_text("/presence/gateways").await;
        assert_eq!(status, 503, "{page}");
        assert!(page.contains("Database unavailable"), "{page}");
        if let Some(left) = Duration::from_secs(10).checked_sub(t0.elapsed() - paused) {
            tokio::time::sleep(left).await;
        }
        pg.resume();
        let resumed = t0.elapsed();

        // Every meeting published once the server is back, by itself.
        for user in &users {
            let seen = rig.wait_presence(user, "in_a_meeting", 30).await;
            assert_eq!(seen["since"], crate::presence_engine::rfc3339(start));
        }
        let event = stream
            .next_within(Duration::from_secs(30))
            .await
            .expect("the open stream carries the meetings");
        assert_eq!(
            event.data["calendar_presence"], "in_a_meeting",
            "{:?}",
            event.data
        );
        // Published once each: available, then in a meeting.
        let repeated = rig
            .app
            .count(
                "SELECT COUNT(*) FROM (SELECT user_id FROM presence_events
                 GROUP BY user_id HAVING COUNT(*) <> 2) AS odd",
            )
            .await;
        assert_eq!(repeated, 0, "a user not published exactly twice");
        assert_eq!(
            rig.app
                .count("SELECT COUNT(*) FROM presence_events WHERE presence = 'in_a_meeting'")
                .await,
            USERS as i64
        );
        // The load keeps going for 5 s after the window.
        let window_end = resumed + Duration::from_secs(5);
        if let Some(left) = (window_end + Duration::from_secs(5)).checked_sub(t0.elapsed()) {
            tokio::time::sleep(left).await;
        }
        stop.store(true, Ordering::Relaxed);
        let mut sent = Vec::new();
        for worker in workers {
            sent.extend(worker.await.unwrap());
        }
        let before = sent.iter().filter(|s| s.answered < paused).count();
        let after = sent.iter().filter(|s| s.sent > window_end).count();
        assert!(
            before > 50 && after > 50,
            "load: {before} before, {after} after"
        );
        let outside: Vec<String> = sent
            .iter()
            .filter(|s| (s.answered < paused || s.sent > window_end) && s.status != 200)
            .map(|s| format!("{} {} at {:?}", s.status, s.path, s.sent))
            .collect();
        assert!(
            outside.is_empty(),
            "outside the outage (paused at {paused:?}, back at {resumed:?}), {} of {}: {:?}",
            outside.len(),
            sent.len(),
            &outside[..outside.len().min(20)]
        );
        let inside: Vec<String> = sent
            .iter()
            .filter(|s| ![200, 503].contains(&s.status))
            .map(|s| format!("{} {} at {:?}", s.status, s.path, s.sent))
            .collect();
        assert!(
            inside.is_empty(),
            "during the outage, {}: {:?}",
            inside.len(),
            &inside[..inside.len().min(20)]
        );
        let unavailable = sent.iter().filter(|s| s.status == 503).count();
        println!(
            "PostgreSQL stopped {:?} under load: {} requests, {before} before, {after} after \
             (all 200), {unavailable} answered 503 meanwhile",
            resumed - paused,
            sent.len()
        );
        for path in ["/", "/presence/gateways", "/serviceability/control-center"] {
            let (status, _) = rig.app.get_text(path).await;
            assert_eq!(status, 200, "{path} after the restart");
        }
    }

    /// Two nodes starting at once on an empty database: the migrations
    /// apply once (sqlx holds an advisory lock while it migrates) and both
    /// start.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_migrating_at_once_apply_each_migration_once() {
        let url = support::fresh_postgres_database(&server()).await;
        let location = store::Location::Postgres(url);
        let (a, b) = tokio::join!(store::open_at(&location), store::open_at(&location));
        let (a, b) = (a.unwrap(), b.unwrap());
        let applied: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT version, COUNT(*) FROM _sqlx_migrations GROUP BY version ORDER BY version",
        )
        .fetch_all(&a)
        .await
        .unwrap();
        assert_eq!(applied.len(), store::POSTGRES_MIGRATOR.iter().count());
        assert!(applied.iter().all(|(_, n)| *n == 1), "{applied:?}");
        a.close().await;
        b.close().await;
    }

    // ------------------------------------------------------- CL-4 failover

    const FAILOVER_AFTER: u64 = 10;
    const USERS: usize = 1000;

    /// A node process logging to `log` (warnings and up).
    fn node_logging(
        dir: &std::path::Path,
        url: &str,
        name: &str,
        log: &std::path::Path,
    ) -> support::ServeProcess {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        node_with_stderr(dir, url, name, std::process::Stdio::from(file))
    }

    fn signal(process: &support::ServeProcess, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &process.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal}");
    }

    fn unix_now() -> i64 {
        time::OffsetDateTime::now_utc().unix_timestamp()
    }

    /// Sleeps until the wall clock reads `at` (at most 5 minutes).
    async fn sleep_until(at: i64) {
        let left = (at - unix_now()).clamp(0, 300);
        tokio::time::sleep(std::time::Duration::from_secs(left as u64)).await;
    }

    /// Who serves `node`'s users now, by its lease.
    async fn served_by(pool: &sqlx::AnyPool, node: &str) -> Option<String> {
        sqlx::query_scalar("SELECT served_by FROM node_leases WHERE node = $1")
            .bind(node)
            .fetch_optional(pool)
            .await
            .unwrap()
    }

    /// Waits (at most `secs`) until `by` serves `node`'s users; how long
    /// it took.
    async fn wait_served_by(
        pool: &sqlx::AnyPool,
        node: &str,
        by: &str,
        secs: u64,
    ) -> std::time::Duration {
        let started = std::time::Instant::now();
        loop {
            if served_by(pool, node).await.as_deref() == Some(by) {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(secs),
                "{node}'s users not served by {by} within {secs} s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `secs`) until `SQL` counts `n`.
    async fn wait_count(pool: &sqlx::AnyPool, sql: &str, n: i64, secs: u64) {
        let started = std::time::Instant::now();
        loop {
            let count: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
            if count == n {
                return;
            }
            assert!(
                started.elapsed() < std::time::Duration::from_secs(secs),
                "{sql}: {count}, not {n}, after {secs} s"
            );
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// Every user's published events, in order: no event repeats the one
    /// before it (two engines, or an engine taking over, publishing the
    /// same state again).
    async fn assert_no_repeats(pool: &sqlx::AnyPool) {
        let rows: Vec<(String, String, i64, Option<i64>, i64)> = sqlx::query_as(
            "SELECT user_id, presence, since, until, seq FROM presence_events
             ORDER BY user_id, seq",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        for pair in rows.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            assert!(
                !(a.0 == b.0 && a.1 == b.1 && a.2 == b.2 && a.3 == b.3),
                "published twice: {b:?} after {a:?}"
            );
        }
    }

    /// The availability requests exchange-sim has answered that name
    /// `mailbox`.
    /// CL-4 with real processes on one PostgreSQL database and exchange-sim
    /// with 1,000 generated mailboxes, all on bob-node, grouped with
    /// alice-node (High Availability, Failover After 10 s), on the wall
    /// clock:
    /// - bob-node killed (`kill -9`): alice-node takes its users over
    ///   within Failover After + 10 s, reads their calendars, publishes a
    ///   meeting that falls due during the outage, and nothing unchanged
    ///   is published again; Control Center on alice-node says so;
    /// - bob-node started again: it takes its users back (fallback);
    /// - bob-node frozen (SIGSTOP) past its lease, then woken (SIGCONT)
    ///   after alice-node published a meeting that bob-node also had due:
    ///   it is published once, and bob-node takes its users back only
    ///   through the lease.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_killed_or_frozen_node_is_failed_over_and_falls_back_without_duplicates() {
        use std::time::Duration;

        use presence_gateway::domain::redundancy::GroupForm;

        let url = support::fresh_postgres_database(&server()).await;
        let app = TestApp::spawn_at(
            support::private_tempdir().unwrap(),
            store::Location::Postgres(url.clone()),
        )
        .await;
        app.sign_in_admin().await;
        let count = USERS.to_string();
        let rig = crate::presence_engine::Rig::with_app(&["--mailboxes", &count], app).await;
        rig.add_gateway("Sim", rig.sim.port()).await;
        let pool = rig.app.state.pool.clone();
        let (a, b) = ("alice-node", "bob-node");
        let mut ports = Vec::new();
        for node in [a, b] {
            store::nodes::register(&pool, node, "127.0.0.1:0", unix_now())
                .await
                .unwrap();
            let port = crate::engine::free_port().to_string();
            crate::engine::set_param(&pool, node, "notification_port", &port).await;
            crate::engine::set_param(&pool, node, "notification_host", "127.0.0.1").await;
            ports.push(port.clone());
            crate::engine::set_param(&pool, node, "calendar_spread", "0").await;
        }
        let group = GroupForm::parse("Pair 1", a, b, true, &FAILOVER_AFTER.to_string()).unwrap();
        store::redundancy::save(&pool, None, &group, "admin", unix_now())
            .await
            .unwrap();
        let mut tx = pool.begin().await.unwrap();
        for i in 0..USERS {
            sqlx::query(
                "INSERT INTO users (user_id, role, password_hash, calendar_enabled, mailbox,
                                    node, created_at, updated_at)
                 VALUES ($1, 'end_user', 'x', 1, $2, $3, 0, 0)",
            )
            .bind(format!("user{i:05}"))
            .bind(format!("user{i:05}@example.com"))
            .bind(b)
            .execute(&mut *tx)
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        // Two meetings on minute boundaries well ahead: the first falls due
        // while bob-node is dead, the second while it is frozen.
        let m1 = (unix_now() / 60 + 3) * 60;
        let m3 = m1 + 120;
        rig.script(&[
            ("user00000@example.com", m1, m1 + 3600, "Busy"),
            ("user00003@example.com", m3, m3 + 3600, "Busy"),
        ])
        .await;
        let logs = support::private_tempdir().unwrap();
        let (dir_a, dir_b) = (
            support::private_tempdir().unwrap(),
            support::private_tempdir().unwrap(),
        );
        copy_key(rig.app.dir.path(), dir_a.path());
        copy_key(rig.app.dir.path(), dir_b.path());
        let node_a = node_logging(dir_a.path(), &url, a, &logs.path().join("a.log"));
        let mut node_b = node_logging(dir_b.path(), &url, b, &logs.path().join("b.log"));
        crate::engine::wait_state(&pool, a, "running").await;
        crate::engine::wait_state(&pool, b, "running").await;
        let known = "SELECT COUNT(*) FROM calendar_presence WHERE presence <> 'unknown'";
        wait_count(&pool, known, USERS as i64, 120).await;
        assert_eq!(served_by(&pool, b).await.as_deref(), Some(b));
        assert!(
            unix_now() < m1 - 40,
            "the set-up took too long for the script"
        );

        // 1. bob-node dies.
        sleep_until(m1 - 40).await;
        let read_before = rig.reads("user00999@").await;
        let killed = std::time::Instant::now();
        node_b.child.kill().unwrap();
        node_b.child.wait().unwrap();
        let took = wait_served_by(&pool, b, a, FAILOVER_AFTER + 10).await;
        println!("failover: alice-node serves bob-node's users {took:?} after kill -9");
        // alice-node reads them within Failover After + 10 s of the kill.
        loop {
            if rig.reads("user00999@").await > read_before {
                break;
            }
            assert!(
                killed.elapsed() < Duration::from_secs(FAILOVER_AFTER + 10),
                "alice-node did not read bob-node's users in time"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        println!(
            "failover: alice-node read them {:?} after kill -9",
            killed.elapsed()
        );
        // ... and holds a push subscription for each, on its own listener.
        let on_a = |url: &str| {
            let port: String = url
                .trim_start_matches("http://127.0.0.1:")
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            port == ports[0]
        };
        let left = Duration::from_secs(FAILOVER_AFTER + 10).saturating_sub(killed.elapsed());
        rig.wait_subscriptions(
            left.as_secs().max(1),
            "alice-node subscribed to every user",
            |subs| {
                subs.iter()
                    .filter(|s| s["url"].as_str().is_some_and(on_a))
                    .count()
                    >= USERS
            },
        )
        .await;
        println!(
            "failover: alice-node subscribed to all {USERS} {:?} after kill -9",
            killed.elapsed()
        );
        let browser = crate::api::streaming_client(true);
        sign_in(&browser, &node_a.url).await;
        let home = browser
            .get(format!("{}/serviceability/control-center", node_a.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            home.contains("Failed over: bob-node&#39;s users are served by alice-node since"),
            "{home}"
        );
        let meeting = |user: &str, since: i64| {
            format!(
                "SELECT COUNT(*) FROM presence_events WHERE user_id = '{user}'
                 AND presence = 'in_a_meeting' AND since = {since}"
            )
        };
        sleep_until(m1).await;
        wait_count(&pool, &meeting("user00000", m1), 1, 15).await;
        assert_no_repeats(&pool).await;

        // 2. bob-node is started again and takes its users back.
        let node_b = node_logging(dir_b.path(), &url, b, &logs.path().join("b.log"));
        let took = wait_served_by(&pool, b, b, 20).await;
        println!("fallback: bob-node serves its users again {took:?} after its start");
        let audited = |action: &str| {
            format!(
                "SELECT COUNT(*) FROM audit_log WHERE action = '{action}' AND actor = 'cluster'
                 AND target = 'bob-node'"
            )
        };
        wait_count(&pool, &audited("redundancy_group.failover"), 1, 1).await;
        wait_count(&pool, &audited("redundancy_group.fallback"), 1, 1).await;

        // 3. bob-node freezes past its lease; the meeting at m3 is due on
        // both nodes' schedules.
        sleep_until(m3 - 40).await;
        signal(&node_b, "-STOP");
        let took = wait_served_by(&pool, b, a, FAILOVER_AFTER + 10).await;
        println!("failover: alice-node serves frozen bob-node's users {took:?} after SIGSTOP");
        sleep_until(m3).await;
        wait_count(&pool, &meeting("user00003", m3), 1, 15).await;
        sleep_until(m3 + 3).await;
        signal(&node_b, "-CONT");
        let took = wait_served_by(&pool, b, b, 20).await;
        println!("fallback: bob-node serves its users again {took:?} after SIGCONT");
        // Let whatever bob-node had due when it woke reach the database.
        tokio::time::sleep(Duration::from_secs(3)).await;
        wait_count(&pool, &meeting("user00003", m3), 1, 1).await;
        wait_count(&pool, &meeting("user00000", m1), 1, 1).await;
        wait_count(&pool, &audited("redundancy_group.failover"), 2, 1).await;
        wait_count(&pool, &audited("redundancy_group.fallback"), 2, 1).await;
        assert_no_repeats(&pool).await;
        let log = std::fs::read_to_string(logs.path().join("b.log")).unwrap_or_default();
        println!(
            "bob-node's writes refused by the fence after waking: {}",
            log.matches("by its redundancy lease this node serves no calendar users")
                .count()
        );
        drop(node_a);
        drop(node_b);
    }
}
