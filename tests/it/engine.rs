//! The presence engine's lifecycle (EN-1, SV-1..SV-3, SY-2): supervised per
//! node, started, stopped and restarted through the store from any node's
//! console or the shell, with the restart banner following what it runs.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use presence_gateway::store;

use crate::support::{ADMIN, ADMIN_PASSWORD, ServeProcess, TestApp, binary, client, location};

/// Aborts the engine supervisor when the test ends.
pub(crate) struct Engine(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for Engine {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A port free for both TCP and UDP on every IPv4 address right now.
pub(crate) fn free_port() -> u16 {
    for _ in 0..50 {
        let tcp = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        let port = tcp.local_addr().expect("addr").port();
        if port >= 1024 && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return port;
        }
    }
    panic!("no free port for TCP and UDP in 50 tries");
}

pub(crate) async fn set_param(pool: &sqlx::AnyPool, node: &str, name: &str, value: &str) {
    sqlx::query(
        "INSERT INTO service_parameters (node, name, value, updated_at, updated_by)
         VALUES ($1, $2, $3, 0, 'test')
         ON CONFLICT (node, name) DO UPDATE SET value = excluded.value",
    )
    .bind(node)
    .bind(name)
    .bind(value)
    .execute(pool)
    .await
    .expect("set parameter");
}

/// The TestApp's node with its engine on a free notification port.
pub(crate) async fn with_engine(app: &TestApp) -> (Engine, u16) {
    let port = free_port();
    set_param(
        &app.state.pool,
        &app.state.settings.node_name,
        "notification_port",
        &port.to_string(),
    )
    .await;
    let engine = Engine(presence_gateway::engine::spawn(app.state.engine_context()));
    wait_state(&app.state.pool, &app.state.settings.node_name, "running").await;
    (engine, port)
}

/// Polls the store (at most 10 s) until the node's engine is in `state`.
pub(crate) async fn wait_state(
    pool: &sqlx::AnyPool,
    node: &str,
    state: &str,
) -> store::engine::NodeEngine {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let row = store::engine::node(pool, node)
            .await
            .expect("node")
            .expect("registered");
        if row.engine_state == state {
            return row;
        }
        assert!(
            Instant::now() < deadline,
            "engine on {node} is {} ({:?}), not {state}",
            row.engine_state,
            row.engine_reason
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn add_gateway(app: &TestApp, description: &str) {
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "ews"),
                ("description", description),
                ("server", "mail.example.com"),
                ("account_name", "svc@example.com"),
                ("password", "exchange-pass"),
                ("confirm", "exchange-pass"),
                ("port", "443"),
                ("test_mailbox", ""),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303, "add gateway");
}

const BANNER: &str = "Presence Engine restart needed";

async fn control(app: &TestApp, node: &str, action: &str) -> String {
    let response = app
        .post_form(
            "/serviceability/control-center",
            &[("node", node), ("action", action)],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/serviceability/control-center");
    app.get_text("/serviceability/control-center").await.1
}

fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

#[tokio::test]
async fn a_restart_clears_the_banner_and_runs_the_new_generation() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (_engine, port) = with_engine(&app).await;
    let node = app.state.settings.node_name.clone();
    // While running, the engine owns its notification port (TCP and UDP).
    assert!(!port_is_free(port));
    // It answers there: what is no EWS notification is refused, and a
    // notification for no subscription it holds is answered Unsubscribe.
    let refused = client()
        .post(format!("http://127.0.0.1:{port}/notify"))
        .body("<soap:Envelope/>")
        .send()
        .await
        .expect("notification");
    assert_eq!(refused.status().as_u16(), 400);
    let ack = client()
        .post(format!("http://127.0.0.1:{port}/ews/unknown"))
        .body(concat!(
            r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body>"#,
            r#"<SendNotification><ResponseMessages><SendNotificationResponseMessage>"#,
            r#"<Notification><SubscriptionId>x</SubscriptionId><StatusEvent><Watermark>w</Watermark>"#,
            r#"</StatusEvent></Notification></SendNotificationResponseMessage></ResponseMessages>"#,
            r#"</SendNotification></s:Body></s:Envelope>"#
        ))
        .send()
        .await
        .expect("notification");
    assert_eq!(ack.status().as_u16(), 200);
    assert!(
        ack.text()
            .await
            .expect("ack")
            .contains("<SubscriptionStatus>Unsubscribe")
    );

    assert!(!app.get_text("/").await.1.contains(BANNER));
    add_gateway(&app, "Exchange One").await;
    add_gateway(&app, "Exchange Two").await;
    let home = app.get_text("/").await.1;
    assert!(home.contains(BANNER), "{home}");
    assert!(home.contains("/serviceability/control-center"));
    assert!(home.contains("A restart is <strong>required</strong>"));
    let before = store::engine::node(&app.state.pool, &node)
        .await
        .expect("node")
        .expect("row");
    let current = store::changes::current_generation(&app.state.pool)
        .await
        .expect("generation");
    assert!(before.engine_generation < current);

    // Control Center shows the lag, then a restart applies both changes.
    let page = app.get_text("/serviceability/control-center").await.1;
    assert!(page.contains(&format!("(current: {current}; restart to apply")));
    let page = control(&app, &node, "restart").await;
    assert!(
        page.contains(&format!("Running on configuration generation {current}")),
        "{page}"
    );
    assert!(!page.contains(BANNER));
    assert!(page.contains("Exchange One (EWS): not checked yet"));
    let after = wait_state(&app.state.pool, &node, "running").await;
    assert_eq!(after.engine_generation, current);
    assert!(!app.get_text("/").await.1.contains(BANNER));
    // The audit log records who restarted it.
    assert!(
        app.get_text("/system/audit-log")
            .await
            .1
            .contains("engine restart")
    );
}

#[tokio::test]
async fn a_failed_start_shows_the_reason_and_keeps_the_banner() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (_engine, port) = with_engine(&app).await;
    let node = app.state.settings.node_name.clone();
    add_gateway(&app, "Exchange One").await;
    let ran = wait_state(&app.state.pool, &node, "running")
        .await
        .engine_generation;

    // Stop, let another program take the port, then start: it fails.
    let page = control(&app, &node, "stop").await;
    assert!(page.contains("Stopped."), "{page}");
    assert!(port_is_free(port), "a stopped engine releases its port");
    let squatter = TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).expect("hold the port");
    let page = control(&app, &node, "start").await;
    assert!(page.contains("Failed"), "{page}");
    assert!(page.contains(&format!(
        "Microsoft Exchange Notification Port {port} is in use by another program (TCP)"
    )));
    let row = wait_state(&app.state.pool, &node, "failed").await;
    assert_eq!(
        row.engine_generation, ran,
        "a failed start keeps the old generation"
    );
    assert!(app.get_text("/").await.1.contains(BANNER));
    let nodes = app.get_text("/system/nodes").await.1;
    assert!(nodes.contains("Failed: Microsoft Exchange Notification Port"));

    // Freed, a start succeeds and clears the banner.
    drop(squatter);
    let page = control(&app, &node, "start").await;
    assert!(
        page.contains("Running on configuration generation"),
        "{page}"
    );
    assert!(!app.get_text("/").await.1.contains(BANNER));
}

#[tokio::test]
async fn a_udp_holder_also_fails_the_start() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (_engine, port) = with_engine(&app).await;
    let node = app.state.settings.node_name.clone();
    control(&app, &node, "stop").await;
    let squatter = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("hold UDP");
    let page = control(&app, &node, "restart").await;
    assert!(page.contains("in use by another program (UDP)"), "{page}");
    drop(squatter);
}

#[tokio::test]
async fn live_configuration_is_followed_without_a_restart() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (_engine, _port) = with_engine(&app).await;
    let node = app.state.settings.node_name.clone();
    let generation = wait_state(&app.state.pool, &node, "running")
        .await
        .engine_generation;
    let id = app.create_end_user("alice", "amber-lantern-pw-1").await;
    sqlx::query("UPDATE users SET node = $1, calendar_enabled = 1 WHERE id = $2")
        .bind(&node)
        .bind(id)
        .execute(&app.state.pool)
        .await
        .expect("assign");
    set_param(&app.state.pool, &node, "calendar_out_of_office", "display").await;
    // The live view is read every LIVE_EVERY (2 s): allow several rounds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let live = store::engine::node(&app.state.pool, &node)
            .await
            .expect("node")
            .and_then(|n| n.live())
            .expect("live view");
        if live.calendar_users == 1 && live.display_out_of_office {
            break;
        }
        assert!(Instant::now() < deadline, "not followed live: {live:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let page = app.get_text("/serviceability/control-center").await.1;
    assert!(page.contains("Out of Office displayed"), "{page}");
    let row = wait_state(&app.state.pool, &node, "running").await;
    assert_eq!(row.engine_generation, generation, "no restart happened");
    assert!(!app.get_text("/").await.1.contains(BANNER));
}

#[tokio::test]
async fn a_deactivated_node_stops_refuses_starts_and_leaves_the_banner() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (_engine, port) = with_engine(&app).await;
    let node = app.state.settings.node_name.clone();
    add_gateway(&app, "Exchange One").await;
    assert!(app.get_text("/").await.1.contains(BANNER));

    // Unticking the node deactivates it.
    let response = app
        .post_form("/serviceability/service-activation", &[("shown", &node)])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    wait_state(&app.state.pool, &node, "stopped").await;
    assert!(port_is_free(port));
    assert!(!app.get_text("/").await.1.contains(BANNER));
    let page = control(&app, &node, "start").await;
    assert!(
        page.contains("Refused: the Presence Engine is deactivated"),
        "{page}"
    );

    // Activated again, it starts on the current configuration.
    let response = app
        .post_form(
            "/serviceability/service-activation",
            &[("shown", &node), ("node", &node)],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let row = wait_state(&app.state.pool, &node, "running").await;
    let current = store::changes::current_generation(&app.state.pool)
        .await
        .expect("generation");
    assert_eq!(row.engine_generation, current);
    assert!(!app.get_text("/").await.1.contains(BANNER));
}

#[tokio::test]
async fn dns_configured_is_a_setting_per_node_the_troubleshooter_obeys() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let node = app.state.settings.node_name.clone();
    let page = app.get_text("/system/settings").await.1;
    assert!(page.contains("DNS configured on this server"));
    assert!(page.contains("checked"));
    let response = app.post_form("/system/settings", &[("shown", &node)]).await;
    assert_eq!(response.status().as_u16(), 303);
    assert!(
        !store::engine::dns_configured(&app.state.pool, &node)
            .await
            .expect("setting")
    );
    // A gateway given by name cannot be resolved without DNS: the dns check says so.
    add_gateway(&app, "By Name").await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM gateways")
        .fetch_one(&app.state.pool)
        .await
        .expect("id");
    let panel = app
        .post_form(&format!("/presence/gateways/{id}/troubleshoot"), &[])
        .await
        .text()
        .await
        .expect("panel");
    assert!(panel.contains("DNS is not configured"), "{panel}");
    let response = app
        .post_form("/system/settings", &[("shown", &node), ("node", &node)])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert!(
        store::engine::dns_configured(&app.state.pool, &node)
            .await
            .expect("setting")
    );
}

/// A page rendered before another node registered does not list it, so
/// saving that page leaves the new node as it is instead of switching it off.
#[tokio::test]
async fn saving_an_older_page_leaves_a_node_it_did_not_show_alone() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let node = app.state.settings.node_name.clone();
    let page = app.get_text("/serviceability/service-activation").await.1;
    assert!(
        page.contains(&format!(r#"name="shown" value="{node}""#)),
        "{page}"
    );
    assert!(!page.contains("node-late"));
    store::nodes::register(&app.state.pool, "node-late", "127.0.0.2:8080", 0)
        .await
        .expect("register");

    // The older page, saved with this node unticked: only this node changes.
    for path in ["/serviceability/service-activation", "/system/settings"] {
        let response = app.post_form(path, &[("shown", &node)]).await;
        assert_eq!(response.status().as_u16(), 303, "{path}");
    }
    assert_eq!(switches(&app.state.pool, "node-late").await, (true, true));
    assert_eq!(switches(&app.state.pool, &node).await, (false, false));
}

/// A node's Service Activation and "DNS configured" switches.
async fn switches(pool: &sqlx::AnyPool, node: &str) -> (bool, bool) {
    let (activated, dns): (store::Flag, store::Flag) =
        sqlx::query_as("SELECT activated, dns_configured FROM nodes WHERE name = $1")
            .bind(node)
            .fetch_one(pool)
            .await
            .expect("node");
    (activated.0, dns.0)
}

/// Prepares a data directory whose nodes use the given notification ports,
/// before any service starts on it.
async fn prepare_dir(dir: &Path, ports: &[(&str, u16)]) {
    let pool = store::open(&dir.join("presence-gateway.db"))
        .await
        .expect("open");
    for (node, port) in ports {
        set_param(&pool, node, "notification_port", &port.to_string()).await;
    }
    pool.close().await;
}

async fn sign_in(url: &str) -> reqwest::Client {
    let client = client();
    let response = client
        .post(format!("{url}/login"))
        .header("Origin", url)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[("user_id", ADMIN), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status().as_u16(), 303);
    client
}

async fn post(client: &reqwest::Client, url: &str, path: &str, form: &[(&str, &str)]) -> String {
    let response = client
        .post(format!("{url}{path}"))
        .header("Origin", url)
        .header("Sec-Fetch-Site", "same-origin")
        .form(form)
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status().as_u16(), 303, "{path}");
    let back = location(&response);
    client
        .get(format!("{url}{back}"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

async fn get(client: &reqwest::Client, url: &str, path: &str) -> String {
    client
        .get(format!("{url}{path}"))
        .send()
        .await
        .expect("GET")
        .text()
        .await
        .expect("body")
}

fn serve(dir: &Path, node: &str) -> ServeProcess {
    ServeProcess::start(
        dir,
        &["--listen", "127.0.0.1:0", "--node-name", node],
        &[("PRESENCE_GATEWAY_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
}

#[tokio::test]
async fn two_processes_form_a_cluster_and_node_a_restarts_node_b() {
    let dir = crate::support::private_tempdir().expect("dir");
    let (port_a, port_b) = (free_port(), free_port());
    prepare_dir(dir.path(), &[("node-a", port_a), ("node-b", port_b)]).await;
    let a = serve(dir.path(), "node-a");
    let b = serve(dir.path(), "node-b");
    let pool = store::open(&dir.path().join("presence-gateway.db"))
        .await
        .expect("open");
    wait_state(&pool, "node-a", "running").await;
    let b_started = wait_state(&pool, "node-b", "running").await;

    let console = sign_in(&a.url).await;
    let nodes = get(&console, &a.url, "/system/nodes").await;
    assert!(
        nodes.contains("node-a") && nodes.contains("node-b"),
        "{nodes}"
    );
    assert!(nodes.contains(&format!("127.0.0.1:{}", b.port())) || nodes.contains("node-b"));

    // A change on node A's console is pending on both nodes.
    let response = console
        .post(format!("{}/presence/gateways/new", a.url))
        .header("Origin", &a.url)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[
            ("type", "ews"),
            ("description", "Exchange One"),
            ("server", "mail.example.com"),
            ("account_name", "svc@example.com"),
            ("password", "exchange-pass"),
            ("confirm", "exchange-pass"),
            ("port", "443"),
            ("test_mailbox", ""),
        ])
        .send()
        .await
        .expect("add");
    assert_eq!(response.status().as_u16(), 303);
    let home = get(&console, &a.url, "/").await;
    assert!(
        home.contains(BANNER) && home.contains("node-a, node-b"),
        "{home}"
    );

    // Node A's console restarts node B's engine: B's process acts.
    let page = post(
        &console,
        &a.url,
        "/serviceability/control-center",
        &[("node", "node-b"), ("action", "restart")],
    )
    .await;
    assert!(
        page.contains("Presence Engine on node-b: Running on configuration generation"),
        "{page}"
    );
    let b_after = wait_state(&pool, "node-b", "running").await;
    assert!(b_after.engine_generation > b_started.engine_generation);
    assert!(b_after.engine_since >= b_started.engine_since);
    // Node A still runs the old generation: the banner names only it.
    let home = get(&console, &a.url, "/").await;
    assert!(home.contains(BANNER), "{home}");
    assert!(home.contains("restarts on node-a:"), "{home}");

    // The shell restarts node A through the store.
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["engine", "restart", "--node", "node-a"])
        .output()
        .expect("engine restart");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("node-a: Running on configuration generation"),
        "{stdout}"
    );
    assert!(!get(&console, &a.url, "/").await.contains(BANNER));
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["engine", "status"])
        .output()
        .expect("engine status");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("node-a: running") && stdout.contains("node-b: running"),
        "{stdout}"
    );
    let out = Command::new(binary())
        .arg("--data-dir")
        .arg(dir.path())
        .args(["engine", "stop", "--node", "nowhere"])
        .output()
        .expect("engine stop");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node named \"nowhere\""));
    drop(b);
    drop(a);
    pool.close().await;
}

#[tokio::test]
async fn the_banner_survives_a_process_restart_until_the_engine_restarts() {
    let dir = crate::support::private_tempdir().expect("dir");
    let port = free_port();
    prepare_dir(dir.path(), &[("node-a", port)]).await;
    let first = serve(dir.path(), "node-a");
    let pool = store::open(&dir.path().join("presence-gateway.db"))
        .await
        .expect("open");
    let started = wait_state(&pool, "node-a", "running").await;
    let console = sign_in(&first.url).await;
    let page = post(
        &console,
        &first.url,
        "/system/settings",
        &[("shown", "node-a")], // DNS off: not a restart change; the gateway below is.
    )
    .await;
    assert!(page.contains("Update successful"));
    let response = console
        .post(format!("{}/presence/gateways/new", first.url))
        .header("Origin", &first.url)
        .header("Sec-Fetch-Site", "same-origin")
        .form(&[
            ("type", "ews"),
            ("description", "Exchange One"),
            ("server", "10.0.0.5"),
            ("account_name", "svc@example.com"),
            ("password", "exchange-pass"),
            ("confirm", "exchange-pass"),
            ("port", "443"),
            ("test_mailbox", ""),
        ])
        .send()
        .await
        .expect("add");
    assert_eq!(response.status().as_u16(), 303);
    assert!(get(&console, &first.url, "/").await.contains(BANNER));
    assert_eq!(first.terminate().code(), Some(0));
    assert_eq!(
        store::engine::node(&pool, "node-a")
            .await
            .expect("node")
            .expect("row")
            .engine_state,
        "stopped"
    );

    // The process comes back and the engine resumes on what it ran before.
    let second = serve(dir.path(), "node-a");
    let resumed = wait_state(&pool, "node-a", "running").await;
    assert_eq!(resumed.engine_generation, started.engine_generation);
    let console = sign_in(&second.url).await;
    assert!(get(&console, &second.url, "/").await.contains(BANNER));
    let page = post(
        &console,
        &second.url,
        "/serviceability/control-center",
        &[("node", "node-a"), ("action", "restart")],
    )
    .await;
    assert!(
        page.contains("Running on configuration generation"),
        "{page}"
    );
    assert!(!get(&console, &second.url, "/").await.contains(BANNER));
    drop(second);
    pool.close().await;
}
