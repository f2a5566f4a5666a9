//! The presence engine over EWS, end to end (EN-2 to EN-5): exchange-sim's
//! scripted calendars read through a gateway configured in the console,
//! published at the minute plus the user's offset, seen in the API and on
//! the End User page. Calendar time is the injected clock; the tests move
//! it instead of waiting for minutes.

use std::time::{Duration, Instant};

use presence_gateway::domain::presence::{offset_seconds, publish_at};
use presence_gateway::store;

use crate::engine::{Engine, set_param, with_engine};
use crate::sim::{ACCOUNT, PASSWORD, PASSWORD_ENV, SimProcess};
use crate::support::{TestApp, admin_app, location, tls_config};

/// Calendar Spread's default (SPEC 4).
const SPREAD: u32 = 50;
const GRAPH_DOMAIN: &str = "contoso.onmicrosoft.com";
const GRAPH_CLIENT: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";
/// exchange-sim's Microsoft 365 face as [`Rig::add_graph_gateway`] expects.
pub(crate) const GRAPH_ARGS: &[&str] = &[
    "--graph-secret-env",
    PASSWORD_ENV,
    "--graph-domain",
    GRAPH_DOMAIN,
    "--graph-client-id",
    GRAPH_CLIENT,
];

pub(crate) struct Rig {
    pub(crate) app: TestApp,
    pub(crate) sim: SimProcess,
    sim_client: reqwest::Client,
}

impl Rig {
    /// exchange-sim with `args`, its CA trusted, and a console with no
    /// gateway yet.
    pub(crate) async fn new(args: &[&str]) -> Rig {
        Rig::with_app(args, admin_app().await).await
    }

    /// As `new`, around `app` (signed in as the administrator).
    pub(crate) async fn with_app(args: &[&str], app: TestApp) -> Rig {
        let mut all = vec!["--account", ACCOUNT, "--password-env", PASSWORD_ENV];
        all.extend_from_slice(args);
        let sim = SimProcess::start(&all);
        let pem = std::fs::read(sim.dir.path().join("ca.pem")).expect("CA written");
        let mut roots = rustls::RootCertStore::empty();
        for der in rustls_pemfile::certs(&mut &pem[..]) {
            let der = der.expect("PEM");
            let info = presence_gateway::tls::certinfo::parse(&der).expect("certificate");
            store::trust::insert(&app.state.pool, &der, &info, "admin", app.state.now())
                .await
                .expect("trust");
            roots.add(der).expect("root");
        }
        let sim_client = reqwest::Client::builder()
            .use_preconfigured_tls(tls_config(roots))
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Rig {
            app,
            sim,
            sim_client,
        }
    }

    /// An EWS gateway to `port` on loopback (the sim's unless said).
    pub(crate) async fn add_gateway(&self, description: &str, port: u16) -> i64 {
        let port = port.to_string();
        let response = self
            .app
            .post_form(
                "/presence/gateways/new",
                &[
                    ("type", "ews"),
                    ("description", description),
                    ("server", "127.0.0.1"),
                    ("account_name", ACCOUNT),
                    ("password", PASSWORD),
                    ("confirm", PASSWORD),
                    ("port", &port),
                    ("test_mailbox", ""),
                ],
            )
            .await;
        created(response, "add gateway")
    }

    /// A Microsoft 365 gateway on the sim's Graph face (Cloud Custom, its
    /// https://localhost:PORT as both URLs); the sim must have been started
    /// with [`GRAPH_ARGS`].
    pub(crate) async fn add_graph_gateway(&self, description: &str) -> i64 {
        self.add_graph_gateway_with(description, PASSWORD).await
    }

    /// Likewise with the client secret `secret`.
    pub(crate) async fn add_graph_gateway_with(&self, description: &str, secret: &str) -> i64 {
        let base = format!("https://localhost:{}", self.sim.port());
        let response = self
            .app
            .post_form(
                "/presence/gateways/new",
                &[
                    ("type", "graph"),
                    ("description", description),
                    ("tenant", GRAPH_DOMAIN),
                    ("client_id", GRAPH_CLIENT),
                    ("client_secret", secret),
                    ("confirm_client_secret", secret),
                    ("cloud", "custom"),
                    ("signin_url", &base),
                    ("graph_url", &base),
                    ("test_mailbox", ""),
                ],
            )
            .await;
        created(response, "add Microsoft 365 gateway")
    }

    /// An end user on this node with calendar presence on; returns the row
    /// id.
    pub(crate) async fn add_user(&self, user_id: &str, mailbox: &str) -> i64 {
        let response = self
            .app
            .post_form(
                "/users/end-users/new",
                &[
                    ("user_id", user_id),
                    ("first_name", "Cal"),
                    ("last_name", "Endar"),
                    ("mailbox", mailbox),
                    ("node", "test-node"),
                    ("locale", "en-US"),
                    ("calendar_enabled", "on"),
                    ("password", "end-user-pass-1"),
                    ("confirm", "end-user-pass-1"),
                ],
            )
            .await;
        created(response, user_id)
    }

    /// Replaces the named mailboxes' calendars in the sim with `rows`
    /// (`mailbox,start,end,busy_type`, times as Unix seconds here).
    pub(crate) async fn script(&self, rows: &[(&str, i64, i64, &str)]) {
        let mut text = String::from("mailbox,start,end,busy_type\n");
        for (mailbox, start, end, busy) in rows {
            text.push_str(&format!(
                "{mailbox},{},{},{busy}\n",
                rfc3339(*start),
                rfc3339(*end)
            ));
        }
        self.post_rows(text).await;
    }

    /// Gives `mailbox` an empty calendar in the sim (a mailbox it knows).
    pub(crate) async fn script_empty(&self, mailbox: &str) {
        self.post_rows(format!("{mailbox},,,\n")).await;
    }

    async fn post_rows(&self, text: String) {
        let answer = self
            .sim_client
            .post(format!(
                "https://127.0.0.1:{}/sim/calendars",
                self.sim.port()
            ))
            .body(text)
            .send()
            .await
            .expect("POST /sim/calendars");
        assert_eq!(answer.status().as_u16(), 200);
    }

    /// Moves the injected clock forward to `at` (never back).
    pub(crate) fn advance_to(&self, at: i64) {
        let now = self.app.state.now();
        assert!(at >= now, "the clock only moves forward ({at} < {now})");
        self.app.clock.advance(time::Duration::seconds(at - now));
    }

    pub(crate) async fn presence(&self, user: &str) -> serde_json::Value {
        let path = format!("/api/v1/presence/{user}");
        let mut response = self.app.get(&path).await;
        if response.status().as_u16() == 401 {
            // Calendar time moved past the session's 30 idle minutes.
            self.app.sign_in_admin().await;
            response = self.app.get(&path).await;
        }
        assert_eq!(response.status().as_u16(), 200);
        response.json().await.expect("JSON")
    }

    /// Polls the API (at most `secs` seconds) until `user`'s presence is
    /// `state`; returns the object.
    pub(crate) async fn wait_presence(
        &self,
        user: &str,
        state: &str,
        secs: u64,
    ) -> serde_json::Value {
        self.poll_presence(user, state, secs, None).await
    }

    /// Like [`Rig::wait_presence`], moving the clock a minute on every half
    /// second, for reads whose time the test does not control (retries).
    pub(crate) async fn wait_presence_moving(
        &self,
        user: &str,
        state: &str,
        secs: u64,
    ) -> serde_json::Value {
        self.poll_presence(user, state, secs, Some(time::Duration::minutes(1)))
            .await
    }

    async fn poll_presence(
        &self,
        user: &str,
        state: &str,
        secs: u64,
        step: Option<time::Duration>,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let seen = self.presence(user).await;
            if seen["calendar_presence"] == state {
                return seen;
            }
            if Instant::now() >= deadline {
                let stored = store::presence::current(&self.app.state.pool, user).await;
                let health = store::health::gateways(&self.app.state.pool).await;
                panic!("{user} is not {state} within {secs} s: {seen}\n{stored:?}\n{health:?}");
            }
            match step {
                Some(step) => {
                    self.app.clock.advance(step);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    pub(crate) async fn start_engine(&self) -> Engine {
        with_engine(&self.app).await.0
    }

    /// The engine with push notifications: the sim posts them to loopback,
    /// and asks a status every `status_minutes` (the sim's minutes, which
    /// `--minute-ms` makes short). Returns the notification port.
    pub(crate) async fn start_engine_with_push(&self, status_minutes: u32) -> (Engine, u16) {
        let pool = &self.app.state.pool;
        set_param(pool, "test-node", "notification_host", "127.0.0.1").await;
        set_param(
            pool,
            "test-node",
            "ews_status_frequency",
            &status_minutes.to_string(),
        )
        .await;
        with_engine(&self.app).await
    }

    /// exchange-sim's `/sim/...` endpoints.
    pub(crate) async fn sim_post(&self, path_and_query: &str) -> serde_json::Value {
        let answer = self
            .sim_client
            .post(format!(
                "https://127.0.0.1:{}{path_and_query}",
                self.sim.port()
            ))
            .send()
            .await
            .expect("POST to the sim");
        assert_eq!(answer.status().as_u16(), 200, "{path_and_query}");
        answer.json().await.unwrap_or(serde_json::Value::Null)
    }

    /// The sim's reads (GetUserAvailability requests) that named `mailbox`.
    pub(crate) async fn reads(&self, mailbox: &str) -> usize {
        self.sim_stats().await["availability_requests"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter(|r| r["mailboxes"].to_string().contains(mailbox))
                    .count()
            })
            .unwrap_or(0)
    }

    /// Waits (at most 10 s) until the sim has answered `n` GetUserAvailability
    /// requests naming `mailbox`.
    pub(crate) async fn wait_reads(&self, mailbox: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let reads = self.reads(mailbox).await;
            if reads >= n {
                return;
            }
            assert!(Instant::now() < deadline, "not {n} reads of {mailbox}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub(crate) async fn sim_stats(&self) -> serde_json::Value {
        self.sim_client
            .get(format!("https://127.0.0.1:{}/sim/stats", self.sim.port()))
            .send()
            .await
            .expect("GET /sim/stats")
            .json()
            .await
            .expect("JSON")
    }

    /// Waits (at most `secs`) until the sim's live subscriptions satisfy
    /// `test`; returns them.
    pub(crate) async fn wait_subscriptions(
        &self,
        secs: u64,
        what: &str,
        test: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let stats = self.sim_stats().await;
            let subs = stats["subscriptions"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if test(&subs) {
                return subs;
            }
            assert!(
                Instant::now() < deadline,
                "{what} within {secs} s: {subs:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `secs`) until the gateway health the engines wrote
    /// satisfies `test`; returns it.
    pub(crate) async fn wait_health(
        &self,
        secs: u64,
        test: impl Fn(&[store::health::GatewayHealth]) -> bool,
    ) -> Vec<store::health::GatewayHealth> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let health = store::health::gateways(&self.app.state.pool)
                .await
                .expect("health");
            if test(&health) {
                return health;
            }
            assert!(Instant::now() < deadline, "not within {secs} s: {health:?}");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Waits (at most 10 s) until the engine has had an answer from a
    /// gateway: what it read is then scheduled at the current minute plus
    /// each user's offset, so moving the clock a minute on publishes it.
    pub(crate) async fn wait_first_read(&self) {
        self.wait_health(10, |h| h.iter().any(|h| h.last_success.is_some()))
            .await;
    }
}

/// The id a create form redirected to (`.../{id}`).
fn created(response: reqwest::Response, what: &str) -> i64 {
    assert_eq!(response.status().as_u16(), 303, "{what}");
    location(&response)
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("id")
}

pub(crate) fn rfc3339(unix: i64) -> String {
    presence_gateway::clock::rfc3339(unix).expect("time")
}

/// The minute `minutes` from the clock's current minute.
pub(crate) fn minute_from_now(app: &TestApp, minutes: i64) -> i64 {
    app.state.now().div_euclid(60) * 60 + minutes * 60
}

#[tokio::test]
async fn a_scripted_meeting_is_published_at_its_minute_plus_the_offset_and_not_before() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let user_id = rig.add_user("alice", "alice@example.com").await;
    let start = minute_from_now(&rig.app, 10);
    let end = start + 30 * 60;
    rig.script(&[("alice@example.com", start, end, "Busy")])
        .await;
    let offset = i64::from(offset_seconds("alice", SPREAD));
    let _engine = rig.start_engine().await;
    rig.wait_first_read().await;

    // The first read publishes the current state at once, calendar time
    // standing still (EN-3: what is learned late is not held).
    let seen = rig.wait_presence("alice", "available", 10).await;
    assert_eq!(seen["until"], rfc3339(start), "{seen}");
    assert_eq!(seen["gateway"], "Sim");

    // An integrator's stream, with a token, from here on.
    let token = crate::api::create_token(&rig.app, "Integration").await;
    let bearer = format!("Bearer {token}");
    let mut stream = crate::api::SseReader::new(
        crate::api::open_stream(
            &crate::api::streaming_client(false),
            &rig.app,
            "",
            &[("Authorization", &bearer)],
        )
        .await,
    );

    // One second before 10:00 + offset: still available, however long the
    // engine looks.
    let due = publish_at(start, offset as u32);
    assert_eq!(due, start + offset);
    rig.advance_to(due - 1);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        rig.presence("alice").await["calendar_presence"],
        "available"
    );

    rig.advance_to(due);
    let seen = rig.wait_presence("alice", "in_a_meeting", 5).await;
    assert_eq!(
        seen,
        serde_json::json!({
            "userid": "alice",
            "calendar_presence": "in_a_meeting",
            "since": rfc3339(start),
            "until": rfc3339(end),
            "gateway": "Sim",
        })
    );
    let (_, page) = rig
        .app
        .get_text(&format!("/users/end-users/{user_id}"))
        .await;
    assert!(
        page.contains("In a meeting"),
        "End User page shows it: {page}"
    );
    // The stream carried the same object, with the log's sequence number.
    let event = stream
        .next_within(Duration::from_secs(10))
        .await
        .expect("a presence event on the stream");
    assert_eq!(event.event, "presence");
    assert_eq!(event.data, seen);
    assert!(
        event.id.parse::<i64>().is_ok_and(|seq| seq > 0),
        "{}",
        event.id
    );

    // Control Center's figures: one user in a meeting, the gateway healthy
    // with its requests counted, and the chart.
    let (_, center) = rig.app.get_text("/serviceability/control-center").await;
    assert!(
        center.contains(r#"<tr class="presence-counts" data-node="test-node"><td>1</td><td>0</td><td>0</td><td>0</td></tr>"#),
        "{center}"
    );
    let gateways = center
        .split("engine-gateways")
        .nth(1)
        .expect("the engine's gateway table");
    assert!(
        gateways.contains(">Sim</a></th><td>1</td>") && gateways.contains("<td>Healthy</td>"),
        "{gateways}"
    );
    assert!(center.contains("Transitions and Exchange requests per minute, last hour"));
    // The serve process's heartbeat task is not running here; calendar time
    // moved on, so beat once as it would.
    store::nodes::heartbeat(&rig.app.state.pool, "test-node", rig.app.state.now())
        .await
        .expect("heartbeat");
    let (_, home) = rig.app.get_text("/").await;
    assert!(home.contains("Presence at a glance"));
    assert!(home.contains("Nothing needs attention"), "{home}");

    // The meeting's end, likewise.
    rig.advance_to(publish_at(end, offset as u32));
    let seen = rig.wait_presence("alice", "available", 5).await;
    assert_eq!(seen["since"], rfc3339(end));
    // Three changes in the log: available, in a meeting, available.
    assert_eq!(
        rig.app
            .count("SELECT COUNT(*) FROM presence_events WHERE user_id = 'alice'")
            .await,
        3
    );
}

#[tokio::test]
async fn a_mailbox_exchange_does_not_know_is_unknown_with_the_reason() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let user_id = rig.add_user("ghost", "nobody@example.com").await;
    let _engine = rig.start_engine().await;
    rig.wait_first_read().await;
    rig.advance_to(rig.app.state.now() + 60);
    let deadline = Instant::now() + Duration::from_secs(10);
    let published = loop {
        if let Some(p) = store::presence::current(&rig.app.state.pool, "ghost")
            .await
            .expect("current")
        {
            break p;
        }
        assert!(Instant::now() < deadline, "nothing published for ghost");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(published.presence.as_str(), "unknown");
    let reason = published.reason.expect("a reason");
    assert!(reason.starts_with("ErrorMailRecipientNotFound"), "{reason}");
    assert_eq!(published.gateway, None);
    let seen = rig.presence("ghost").await;
    assert_eq!(seen["calendar_presence"], "unknown");
    assert_eq!(seen["until"], serde_json::Value::Null);
    let (_, page) = rig
        .app
        .get_text(&format!("/users/end-users/{user_id}"))
        .await;
    assert!(
        page.contains("ErrorMailRecipientNotFound"),
        "the page says why"
    );
}

#[tokio::test]
async fn switching_calendar_presence_off_publishes_unknown_without_a_restart() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let user_id = rig.add_user("carol", "carol@example.com").await;
    let start = minute_from_now(&rig.app, -5);
    rig.script(&[("carol@example.com", start, start + 3600, "Busy")])
        .await;
    let _engine = rig.start_engine().await;
    rig.wait_first_read().await;
    rig.advance_to(rig.app.state.now() + 60);
    let seen = rig.wait_presence("carol", "in_a_meeting", 10).await;
    // Read after it began: since when the calendar says.
    assert_eq!(seen["since"], rfc3339(start));

    let response = rig
        .app
        .post_form(
            &format!("/users/end-users/{user_id}"),
            &[
                ("user_id", "carol"),
                ("first_name", "Cal"),
                ("last_name", "Endar"),
                ("mailbox", "carol@example.com"),
                ("node", "test-node"),
                ("locale", "en-US"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    rig.wait_presence("carol", "unknown", 10).await;
    // The stream's log says so too, with no gateway.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = store::presence::events_after(&rig.app.state.pool, 0, Some("carol"), 10)
            .await
            .expect("events");
        if events
            .last()
            .is_some_and(|e| e.presence.as_str() == "unknown")
        {
            break;
        }
        assert!(Instant::now() < deadline, "no unknown event: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_failing_gateways_users_move_to_a_healthy_one() {
    let rig = Rig::new(&[]).await;
    // Nothing listens on this port: every connection is refused.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    rig.add_gateway("A dead one", dead).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let now = rig.app.state.now();
    let mut rows = Vec::new();
    let names: Vec<(String, String)> = (0..6)
        .map(|i| (format!("mover{i}"), format!("mover{i}@example.com")))
        .collect();
    for (user, mailbox) in &names {
        rig.add_user(user, mailbox).await;
        rows.push((mailbox.as_str(), now - 60, now + 3600, "Busy"));
    }
    rig.script(&rows).await;
    let _engine = rig.start_engine().await;
    // Round-robin put half on the dead gateway; after three failed tries
    // (retried after 2 s and 4 s) it is set aside and they move.
    for (user, _) in &names {
        let seen = rig.wait_presence_moving(user, "in_a_meeting", 30).await;
        assert_eq!(seen["gateway"], "Sim", "{seen}");
    }
    let dead = |h: &[store::health::GatewayHealth]| {
        h.iter()
            .find(|h| h.description == "A dead one")
            .filter(|d| !d.healthy && d.users == 0)
            .cloned()
    };
    let health = rig.wait_health(10, |h| dead(h).is_some()).await;
    let error = dead(&health).and_then(|d| d.last_error).unwrap_or_default();
    assert!(error.contains("Network Error"), "{error}");
}

fn subscribed_mailbox(subs: &[serde_json::Value], mailbox: &str) -> Option<String> {
    subs.iter()
        .find(|s| s["mailbox"].as_str() == Some(mailbox))
        .and_then(|s| s["id"].as_str().map(str::to_owned))
}

/// EN-2: one push subscription per user, under impersonation, with a
/// call-back on the engine's listener; a change in the calendar is
/// notified and published without waiting for a poll.
#[tokio::test]
async fn a_notified_change_is_published_without_waiting_for_a_poll() {
    let rig = Rig::new(&["--minute-ms", "200"]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    rig.add_user("erin", "erin@example.com").await;
    rig.script_empty("erin@example.com").await;
    let (_engine, port) = rig.start_engine_with_push(10).await;
    rig.wait_first_read().await;
    let subs = rig
        .wait_subscriptions(10, "a subscription for erin", |subs| {
            subscribed_mailbox(subs, "erin@example.com").is_some()
        })
        .await;
    let sub = subs
        .iter()
        .find(|s| s["mailbox"] == "erin@example.com")
        .expect("erin's");
    let url = sub["url"].as_str().expect("url");
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/ews/")),
        "{url}"
    );
    assert_eq!(
        url.len(),
        format!("http://127.0.0.1:{port}/ews/").len() + 32
    );
    assert_eq!(sub["status_frequency"], 10);

    // The engine holds the subscription (Control Center counts it; health
    // is written every 3 s) and has read erin again since making it.
    rig.wait_health(10, |h| h.first().is_some_and(|h| h.subscriptions == 1))
        .await;
    let (_, center) = rig.app.get_text("/serviceability/control-center").await;
    assert!(
        center.contains(r#"<td class="subscriptions" data-node="test-node">1</td>"#),
        "Control Center counts the subscription"
    );
    rig.wait_reads("erin@example.com", 2).await;

    // A meeting booked now, in the sim: the notification makes the engine
    // read erin's calendar; calendar time moves only to the publication
    // minute, never past the five-minute poll.
    let now = rig.app.state.now();
    let start = now.div_euclid(60) * 60;
    rig.script(&[("erin@example.com", start, start + 1800, "Busy")])
        .await;
    let offset = offset_seconds("erin", SPREAD);
    // Let the notification arrive and the read finish before time moves:
    // the first read, the one after subscribing, and the notified one.
    rig.wait_reads("erin@example.com", 3).await;
    // Learned late, so published at once: calendar time stands still.
    let _ = offset;
    let seen = rig.wait_presence("erin", "in_a_meeting", 10).await;
    assert_eq!(seen["since"], rfc3339(start));
    assert_eq!(seen["until"], rfc3339(start + 1800));

    // Cut short in mid-minute to end at the next minute: the notified read
    // shows the new end within a second, and the end itself keeps its
    // minute plus the offset.
    let reads = rig.reads("erin@example.com").await;
    let cut_at = rig.app.state.now() + 5;
    let new_end = cut_at.div_euclid(60) * 60 + 120;
    rig.advance_to(cut_at);
    rig.script(&[("erin@example.com", start, new_end, "Busy")])
        .await;
    rig.wait_reads("erin@example.com", reads + 1).await;
    let read = std::time::Instant::now();
    loop {
        let seen = rig.presence("erin").await;
        if seen["until"] == rfc3339(new_end) {
            assert_eq!(seen["calendar_presence"], "in_a_meeting");
            break;
        }
        assert!(
            read.elapsed() < Duration::from_secs(1),
            "the new end was not published within 1 s of its read: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let due = publish_at(new_end, offset);
    rig.advance_to(due - 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rig.presence("erin").await["calendar_presence"],
        "in_a_meeting"
    );
    rig.advance_to(due);
    let seen = rig.wait_presence("erin", "available", 10).await;
    assert_eq!(seen["since"], rfc3339(new_end));
}

/// EN-3: after an engine start, every user's first read is published within
/// a second of the read, calendar time standing still (the clock is not
/// moved at all), with `since` what the calendar says.
#[tokio::test]
async fn after_a_start_every_first_read_is_published_within_a_second() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let now = rig.app.state.now();
    let began = now.div_euclid(60) * 60 - 600;
    let mut rows = Vec::new();
    let mailboxes: Vec<String> = (0..20).map(|i| format!("user{i:02}@example.com")).collect();
    for (i, mailbox) in mailboxes.iter().enumerate() {
        rig.add_user(&format!("user{i:02}"), mailbox).await;
        // Half of them are in a meeting that began ten minutes ago.
        if i % 2 == 0 {
            rows.push((mailbox.as_str(), began, began + 3600, "Busy"));
        }
    }
    rig.script(&rows).await;
    for mailbox in mailboxes.iter().skip(1).step_by(2) {
        rig.script_empty(mailbox).await;
    }
    let _engine = rig.start_engine().await;
    rig.wait_first_read().await;
    let read = std::time::Instant::now();
    loop {
        let known = rig
            .app
            .count("SELECT COUNT(*) FROM calendar_presence WHERE presence <> 'unknown'")
            .await;
        if known == 20 {
            break;
        }
        assert!(
            read.elapsed() < Duration::from_secs(1),
            "{known} of 20 published within 1 s of the first answer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(rig.app.state.now(), now, "calendar time stood still");
    let seen = rig.presence("user00").await;
    assert_eq!(seen["calendar_presence"], "in_a_meeting");
    assert_eq!(seen["since"], rfc3339(began));
    assert_eq!(
        rig.presence("user01").await["calendar_presence"],
        "available"
    );
}

/// A notification for a path or subscription the engine does not hold is
/// answered Unsubscribe and changes nothing.
#[tokio::test]
async fn a_notification_for_an_unknown_subscription_is_answered_unsubscribe() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let (_engine, port) = rig.start_engine_with_push(10).await;
    let before = rig.app.count("SELECT COUNT(*) FROM presence_events").await;
    let body = r#"<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/"><soap11:Body><m:SendNotification xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages"><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">made-up</t:SubscriptionId><t:PreviousWatermark xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">AAAA</t:PreviousWatermark><t:MoreEvents xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types">false</t:MoreEvents><t:ModifiedEvent xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><t:Watermark>AAAB</t:Watermark><t:TimeStamp>2026-12-03T10:00:00Z</t:TimeStamp><t:ItemId Id="x"/><t:ParentFolderId Id="y"/></t:ModifiedEvent></m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>"#;
    let client = crate::support::bare_client();
    for path in ["/ews/00112233445566778899aabbccddeeff", "/", "/ews/"] {
        let answer = client
            .post(format!("http://127.0.0.1:{port}{path}"))
            .header("Content-Type", "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await
            .expect("POST a notification");
        assert_eq!(answer.status().as_u16(), 200);
        let text = answer.text().await.expect("body");
        assert!(
            text.contains("<SubscriptionStatus>Unsubscribe</SubscriptionStatus>"),
            "{path}: {text}"
        );
    }
    let garbage = client
        .post(format!("http://127.0.0.1:{port}/ews/x"))
        .body("<not-soap/>")
        .send()
        .await
        .expect("POST garbage");
    assert_eq!(garbage.status().as_u16(), 400);
    assert_eq!(
        rig.app.count("SELECT COUNT(*) FROM presence_events").await,
        before
    );
}

/// EN-2: a subscription that goes silent for two status periods is made
/// again, and the calendar read again.
#[tokio::test]
async fn a_lost_subscription_is_detected_and_made_again() {
    let rig = Rig::new(&["--minute-ms", "100"]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    rig.add_user("fred", "fred@example.com").await;
    rig.script_empty("fred@example.com").await;
    let _engine = rig.start_engine_with_push(10).await;
    let subs = rig
        .wait_subscriptions(10, "a subscription for fred", |subs| {
            subscribed_mailbox(subs, "fred@example.com").is_some()
        })
        .await;
    let first = subscribed_mailbox(&subs, "fred@example.com").expect("id");
    let dropped = rig
        .sim_post("/sim/subscriptions/drop?mailbox=fred@example.com")
        .await;
    assert_eq!(dropped["dropped"], 1);
    // Two status periods (2 x 10 minutes) and a little more, in calendar
    // time: the engine gives the silent subscription up and makes another.
    rig.advance_to(rig.app.state.now() + 21 * 60);
    let subs = rig
        .wait_subscriptions(10, "a new subscription for fred", |subs| {
            subscribed_mailbox(subs, "fred@example.com").is_some_and(|id| id != first)
        })
        .await;
    assert_eq!(subs.len(), 1, "{subs:?}");
}

/// Switching calendar presence off ends the user's subscription: its next
/// notification is answered Unsubscribe, and the sim drops it.
#[tokio::test]
async fn calendar_off_ends_the_subscription() {
    let rig = Rig::new(&["--minute-ms", "100"]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let id = rig.add_user("gina", "gina@example.com").await;
    rig.script_empty("gina@example.com").await;
    let _engine = rig.start_engine_with_push(10).await;
    rig.wait_subscriptions(10, "a subscription for gina", |subs| {
        subscribed_mailbox(subs, "gina@example.com").is_some()
    })
    .await;
    let response = rig
        .app
        .post_form(
            &format!("/users/end-users/{id}"),
            &[
                ("user_id", "gina"),
                ("first_name", "Cal"),
                ("last_name", "Endar"),
                ("mailbox", "gina@example.com"),
                ("node", "test-node"),
                ("locale", "en-US"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    // The engine follows the roster every 2 s; the sim's status events
    // come every second (10 sim minutes of 100 ms).
    rig.wait_subscriptions(15, "gina's subscription ended", |subs| {
        subscribed_mailbox(subs, "gina@example.com").is_none()
    })
    .await;
}

/// EN-4: ErrorServerBusy's BackOffMilliseconds is honoured for that
/// gateway: no request reaches it before the back-off ends.
#[tokio::test]
async fn server_busy_back_off_is_honoured() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    rig.add_user("hank", "hank@example.com").await;
    rig.script_empty("hank@example.com").await;
    rig.sim_post("/sim/faults?kind=server-busy&count=1&back_off_ms=1500")
        .await;
    let _engine = rig.start_engine().await;
    // While it lasts, the back-off shows as the gateway's Throttled until.
    rig.wait_health(5, |h| {
        h.first().is_some_and(|h| h.throttled_until.is_some())
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(15);
    let requests = loop {
        let stats = rig.sim_stats().await;
        let requests = stats["availability_requests"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if requests.len() >= 2 {
            break requests;
        }
        assert!(
            Instant::now() < deadline,
            "no retry after the back-off: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let at = |r: &serde_json::Value| r["at_unix_ms"].as_i64().expect("time");
    assert!(
        !requests[0]["fault"].is_null(),
        "the first was refused busy"
    );
    let gap = at(&requests[1]) - at(&requests[0]);
    assert!(gap >= 1500, "the retry came {gap} ms after ErrorServerBusy");
    rig.wait_first_read().await;
    let health = store::health::gateways(&rig.app.state.pool)
        .await
        .expect("health");
    let error = health[0].last_error.clone().unwrap_or_default();
    assert!(error.starts_with("ErrorServerBusy"), "{error}");

    // A 503 on the next read shows in the gateway's health too.
    rig.sim_post("/sim/faults?kind=http-503&count=1").await;
    rig.advance_to(rig.app.state.now() + 6 * 60); // past the 5-minute poll
    rig.wait_health(10, |h| {
        h.first().and_then(|h| h.last_error.as_deref()) == Some("HTTP 503 Service Unavailable")
    })
    .await;
}

/// A gateway added while the engine runs waits for a restart (GW-7, SV-3);
/// after it, the engine reads through it.
#[tokio::test]
async fn an_engine_restart_picks_up_a_new_gateway() {
    let rig = Rig::new(&[]).await;
    rig.add_user("ivan", "ivan@example.com").await;
    let now = rig.app.state.now();
    rig.script(&[("ivan@example.com", now - 60, now + 3600, "Busy")])
        .await;
    let _engine = rig.start_engine().await;
    // No gateway: nothing can be read; the End User page will say why.
    let deadline = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        rig.app.clock.advance(time::Duration::minutes(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
        if let Some(p) = store::presence::current(&rig.app.state.pool, "ivan")
            .await
            .expect("current")
        {
            break p;
        }
        assert!(Instant::now() < deadline, "nothing published for ivan");
    };
    assert_eq!(stored.presence.as_str(), "unknown");
    assert_eq!(stored.gateway, None);
    assert_eq!(
        stored.reason.as_deref(),
        Some(presence_gateway::engine::calendars::NO_EWS_GATEWAY)
    );

    rig.add_gateway("Sim", rig.sim.port()).await;
    let response = rig
        .app
        .post_form(
            "/serviceability/control-center",
            &[("node", "test-node"), ("action", "restart")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let seen = rig.wait_presence_moving("ivan", "in_a_meeting", 20).await;
    assert_eq!(seen["gateway"], "Sim");
}

/// The End User form as the administrator saves it, with these values.
async fn edit_user(rig: &Rig, id: i64, user_id: &str, mailbox: &str, node: &str, calendar: bool) {
    let mut form = vec![
        ("user_id", user_id),
        ("first_name", "Cal"),
        ("last_name", "Endar"),
        ("mailbox", mailbox),
        ("node", node),
        ("locale", "en-US"),
    ];
    if calendar {
        form.push(("calendar_enabled", "on"));
    }
    let response = rig
        .app
        .post_form(&format!("/users/end-users/{id}"), &form)
        .await;
    assert_eq!(response.status().as_u16(), 303, "edit {user_id}");
}

/// EN-1: a changed mailbox is read without a restart.
#[tokio::test]
async fn a_changed_mailbox_is_read_without_a_restart() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let id = rig.add_user("kim", "kim.old@example.com").await;
    let now = rig.app.state.now();
    rig.script_empty("kim.old@example.com").await;
    rig.script(&[("kim.new@example.com", now - 60, now + 3600, "Busy")])
        .await;
    let _engine = rig.start_engine().await;
    rig.wait_presence_moving("kim", "available", 10).await;
    edit_user(&rig, id, "kim", "kim.new@example.com", "test-node", true).await;
    rig.wait_presence_moving("kim", "in_a_meeting", 15).await;
}

/// A calendar user assigned to no node is read by no engine: `unknown`,
/// and the End User page says why.
#[tokio::test]
async fn a_user_on_no_node_is_unknown_and_the_page_says_why() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let id = rig.add_user("lee", "lee@example.com").await;
    let now = rig.app.state.now();
    rig.script(&[("lee@example.com", now - 60, now + 3600, "Busy")])
        .await;
    let _engine = rig.start_engine().await;
    rig.wait_presence_moving("lee", "in_a_meeting", 10).await;
    edit_user(&rig, id, "lee", "lee@example.com", "", true).await;
    let seen = rig.wait_presence_moving("lee", "unknown", 10).await;
    assert_eq!(seen["gateway"], serde_json::Value::Null);
    let (_, page) = rig.app.get_text(&format!("/users/end-users/{id}")).await;
    assert!(
        page.contains("assigned to no node, so no Presence Engine reads this calendar"),
        "{page}"
    );
    // The engine also says so in the log, for the stream, when it sees
    // the user leave (its roster is read every 2 s).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let events = store::presence::events_after(&rig.app.state.pool, 0, Some("lee"), 10)
            .await
            .expect("events");
        if events.last().map(|e| e.presence.as_str()) == Some("unknown") {
            break;
        }
        assert!(Instant::now() < deadline, "{events:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// EN-1: a user assigned to another node is read there from then on; the
/// node they left publishes nothing more for them.
#[tokio::test]
async fn a_user_moved_to_another_node_is_read_there() {
    use crate::engine::{free_port, wait_state};
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    let id = rig.add_user("judy", "judy@example.com").await;
    let now = rig.app.state.now();
    rig.script(&[("judy@example.com", now - 60, now + 3600, "Busy")])
        .await;
    let _engine = rig.start_engine().await;
    rig.wait_presence_moving("judy", "in_a_meeting", 10).await;

    // A second node's engine in this process, on the same database.
    rig.app.add_node("node-b").await;
    let pool = &rig.app.state.pool;
    set_param(
        pool,
        "node-b",
        "notification_port",
        &free_port().to_string(),
    )
    .await;
    let mut context = rig.app.state.engine_context();
    context.node = "node-b".to_owned();
    context.wake = presence_gateway::engine::Wake::default();
    let _engine_b = Engine(presence_gateway::engine::spawn(context));
    wait_state(pool, "node-b", "running").await;

    edit_user(&rig, id, "judy", "judy@example.com", "node-b", true).await;
    // node-b reads her (and, the state being what the store shows, does not
    // publish it again); test-node lets her go.
    rig.wait_health(15, |h| {
        let users = |node: &str| h.iter().find(|h| h.node == node).map_or(-1, |h| h.users);
        users("node-b") == 1 && users("test-node") == 0
    })
    .await;
    let events = store::presence::events_after(pool, 0, Some("judy"), 100)
        .await
        .expect("events");
    let before = events.len();
    assert_eq!(before, 1, "moving publishes nothing by itself: {events:?}");

    // Her meeting is cancelled; node-b's next read publishes it. (The
    // sim cannot reach node-b's notification URL, named after the node, so
    // that is the hourly read a subscribed user gets: within 60 minutes of
    // calendar time.)
    rig.script_empty("judy@example.com").await;
    let seen = rig.wait_presence_moving("judy", "available", 45).await;
    assert_eq!(seen["gateway"], "Sim");
}

/// A full batch: 100 mailboxes in one GetUserAvailability (a request body
/// larger than a server reads before answering its challenge), with NTLMv2
/// on kept connections; 150 users are read in two batches, no error.
#[tokio::test]
async fn full_batches_of_a_hundred_mailboxes_are_read_over_ntlm() {
    let rig = Rig::new(&["--mailboxes", "150"]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    {
        let mut tx = rig.app.state.pool.begin().await.expect("begin");
        for i in 0..150 {
            sqlx::query(
                "INSERT INTO users (user_id, role, password_hash, calendar_enabled, mailbox,
                                    node, created_at, updated_at)
                 VALUES ($1, 'end_user', 'x', 1, $2, 'test-node', 0, 0)",
            )
            .bind(format!("user{i:05}"))
            .bind(format!("user{i:05}@example.com"))
            .execute(&mut *tx)
            .await
            .expect("insert");
        }
        tx.commit().await.expect("commit");
    }
    let _engine = rig.start_engine().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        rig.app.clock.advance(time::Duration::minutes(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
        let known = rig
            .app
            .count("SELECT COUNT(*) FROM calendar_presence WHERE presence <> 'unknown'")
            .await;
        if known == 150 {
            break;
        }
        assert!(Instant::now() < deadline, "only {known} of 150 read");
    }
    let stats = rig.sim_stats().await;
    let sizes: Vec<usize> = stats["availability_requests"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["mailboxes"].as_array().map(Vec::len))
                .collect()
        })
        .unwrap_or_default();
    assert!(sizes.contains(&100), "batches of {sizes:?}");
    assert!(sizes.iter().all(|&n| n <= 100), "batches of {sizes:?}");
    let health = rig.wait_health(5, |h| !h.is_empty()).await;
    assert_eq!(health[0].last_error, None, "{health:?}");
}

/// Watermarks are tracked: a notification whose previous watermark is not
/// the last one heard means notifications were lost, and the calendar is
/// read again even though the notification itself only says "status".
#[tokio::test]
async fn a_gap_in_watermarks_reads_the_calendar_again() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Sim", rig.sim.port()).await;
    rig.add_user("nina", "nina@example.com").await;
    rig.script_empty("nina@example.com").await;
    let _engine = rig.start_engine_with_push(10).await;
    let subs = rig
        .wait_subscriptions(10, "a subscription for nina", |subs| {
            subscribed_mailbox(subs, "nina@example.com").is_some()
        })
        .await;
    rig.wait_health(10, |h| h.first().is_some_and(|h| h.subscriptions == 1))
        .await;
    // The first read and the one after subscribing.
    rig.wait_reads("nina@example.com", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let id = subscribed_mailbox(&subs, "nina@example.com").expect("id");
    let url = subs[0]["url"].as_str().expect("url").to_owned();
    let status = |previous: &str| {
        format!(
            r#"<?xml version="1.0" encoding="utf-8"?><soap11:Envelope xmlns:soap11="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="http://schemas.microsoft.com/exchange/services/2006/messages" xmlns:t="http://schemas.microsoft.com/exchange/services/2006/types"><soap11:Body><m:SendNotification><m:ResponseMessages><m:SendNotificationResponseMessage ResponseClass="Success"><m:ResponseCode>NoError</m:ResponseCode><m:Notification><t:SubscriptionId>{id}</t:SubscriptionId><t:PreviousWatermark>{previous}</t:PreviousWatermark><t:MoreEvents>false</t:MoreEvents><t:StatusEvent><t:Watermark>after-{previous}</t:Watermark></t:StatusEvent></m:Notification></m:SendNotificationResponseMessage></m:ResponseMessages></m:SendNotification></soap11:Body></soap11:Envelope>"#
        )
    };
    let answer = crate::support::bare_client()
        .post(&url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(status("not-the-last-one"))
        .send()
        .await
        .expect("POST a notification");
    assert!(
        answer
            .text()
            .await
            .expect("body")
            .contains("<SubscriptionStatus>OK</SubscriptionStatus>")
    );
    rig.wait_reads("nina@example.com", 3).await;
    // In sequence (previous = the last heard): a status only, no read.
    let answer = crate::support::bare_client()
        .post(&url)
        .header("Content-Type", "text/xml; charset=utf-8")
        .body(status("after-not-the-last-one"))
        .send()
        .await
        .expect("POST a notification");
    assert_eq!(answer.status().as_u16(), 200);
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = rig.sim_stats().await;
    let reads = stats["availability_requests"].as_array().map_or(0, |r| {
        r.iter()
            .filter(|r| r["mailboxes"].to_string().contains("nina@example.com"))
            .count()
    });
    assert_eq!(reads, 3, "{stats}");
}

#[tokio::test]
async fn a_microsoft_365_calendar_is_polled_and_published_at_its_minute_plus_the_offset() {
    let rig = Rig::new(GRAPH_ARGS).await;
    rig.add_graph_gateway("Online").await;
    rig.add_user("alice", "alice@example.com").await;
    rig.script_empty("alice@example.com").await;
    let offset = i64::from(offset_seconds("alice", SPREAD));
    let _engine = rig.start_engine().await;
    rig.wait_first_read().await;
    rig.advance_to(publish_at(rig.app.state.now(), offset as u32));
    let seen = rig.wait_presence("alice", "available", 10).await;
    assert_eq!(seen["gateway"], "Online", "{seen}");

    // A meeting booked after that read is picked up by the next poll, one
    // Microsoft 365 Poll Interval (5 minutes by default) later.
    let start = minute_from_now(&rig.app, 8);
    let end = start + 30 * 60;
    rig.script(&[("alice@example.com", start, end, "Busy")])
        .await;
    let polls = |stats: &serde_json::Value| {
        stats["graph"]["get_schedule_requests"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = polls(&rig.sim_stats().await);
    rig.advance_to(rig.app.state.now() + 4 * 60);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        polls(&rig.sim_stats().await),
        before,
        "no poll before the interval"
    );
    rig.advance_to(rig.app.state.now() + 60);
    let deadline = Instant::now() + Duration::from_secs(10);
    while polls(&rig.sim_stats().await) == before {
        assert!(Instant::now() < deadline, "no poll after the interval");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let due = publish_at(start, offset as u32);
    rig.advance_to(due - 1);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rig.presence("alice").await["calendar_presence"],
        "available"
    );
    rig.advance_to(due);
    let seen = rig.wait_presence("alice", "in_a_meeting", 5).await;
    assert_eq!(seen["since"], rfc3339(start));
    assert_eq!(seen["until"], rfc3339(end));
    assert_eq!(seen["gateway"], "Online");
    // Through Graph only, with one token.
    let stats = rig.sim_stats().await;
    assert_eq!(stats["graph"]["token_requests"], 1, "{stats}");
    assert!(
        stats["availability_requests"]
            .as_array()
            .is_none_or(|r| r.is_empty()),
        "{stats}"
    );
    // Control Center shows the gateway healthy.
    let (_, center) = rig.app.get_text("/serviceability/control-center").await;
    let gateways = center
        .split("engine-gateways")
        .nth(1)
        .expect("the engine's gateway table");
    assert!(
        gateways.contains(">Online</a></th><td>1</td>") && gateways.contains("<td>Healthy</td>"),
        "{gateways}"
    );
}

/// exchange-sim's Microsoft 365 counters.
fn graph_count(stats: &serde_json::Value, name: &str) -> u64 {
    stats["graph"][name].as_u64().unwrap_or(0)
}

impl Rig {
    /// Waits (at most 10 s, the clock still) until the sim's Microsoft 365
    /// counter `name` reaches `at_least`.
    async fn wait_graph(&self, name: &str, at_least: u64) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let stats = self.sim_stats().await;
            if graph_count(&stats, name) >= at_least {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "graph {name} not {at_least} within 10 s: {}",
                stats["graph"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A Rig whose sim plays Microsoft 365 with notifications delivered to
/// this node's listener (the sim plays the reverse proxy in front of it),
/// a Microsoft 365 gateway, alice with calendar presence on, and the engine
/// running with a Notification URL. Returns alice's row id too.
async fn graph_push_rig(extra: &[&str]) -> (Rig, Engine, i64) {
    let port = crate::engine::free_port();
    let deliver = format!("http://127.0.0.1:{port}");
    let mut args = GRAPH_ARGS.to_vec();
    args.extend(["--graph-deliver-to", &deliver]);
    args.extend_from_slice(extra);
    let rig = Rig::new(&args).await;
    rig.add_graph_gateway("Online").await;
    let alice = rig.add_user("alice", "alice@example.com").await;
    rig.script_empty("alice@example.com").await;
    let pool = &rig.app.state.pool;
    set_param(pool, "test-node", "notification_port", &port.to_string()).await;
    set_param(
        pool,
        "test-node",
        "m365_notification_url",
        "https://presence.example.com/pg",
    )
    .await;
    let engine = Engine(presence_gateway::engine::spawn(
        rig.app.state.engine_context(),
    ));
    crate::engine::wait_state(pool, "test-node", "running").await;
    (rig, engine, alice)
}

#[tokio::test]
async fn microsoft_365_notifications_read_a_changed_calendar_at_once() {
    let (rig, _engine, alice) = graph_push_rig(&[]).await;

    // After the first read, a subscription on alice's events: Graph's
    // validation handshake was answered by the listener.
    let stats = rig.wait_graph("subscriptions_active", 1).await;
    assert!(
        graph_count(&stats, "validations_ok") >= 1,
        "{}",
        stats["graph"]
    );
    let subscription = &stats["graph"]["subscriptions"][0];
    assert!(
        subscription.to_string().contains("alice@example.com"),
        "{subscription}"
    );
    let offset = i64::from(offset_seconds("alice", SPREAD));
    rig.advance_to(publish_at(rig.app.state.now(), offset as u32));
    rig.wait_presence("alice", "available", 10).await;

    // A meeting booked now is notified and read at once, long before the
    // next poll (the clock does not move).
    let reads = graph_count(&rig.sim_stats().await, "get_schedule_requests");
    let start = minute_from_now(&rig.app, 3);
    rig.script(&[("alice@example.com", start, start + 1800, "Busy")])
        .await;
    rig.wait_graph("notifications_sent", 1).await;
    rig.wait_graph("get_schedule_requests", reads + 1).await;
    rig.advance_to(publish_at(start, offset as u32));
    rig.wait_presence("alice", "in_a_meeting", 5).await;

    // A notification with a forged clientState is ignored: nothing read.
    let reads = graph_count(&rig.sim_stats().await, "get_schedule_requests");
    rig.sim_post("/sim/graph/notify?mailbox=alice@example.com&client_state=forged")
        .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        graph_count(&rig.sim_stats().await, "get_schedule_requests"),
        reads,
        "a forged notification caused a read"
    );

    // Lifecycle: `missed` reads again; `reauthorizationRequired` renews;
    // `subscriptionRemoved` makes the subscription again.
    rig.sim_post("/sim/graph/lifecycle?mailbox=alice@example.com&event=missed")
        .await;
    rig.wait_graph("get_schedule_requests", reads + 1).await;
    rig.sim_post("/sim/graph/lifecycle?mailbox=alice@example.com&event=reauthorizationRequired")
        .await;
    rig.wait_graph("subscriptions_renewed", 1).await;
    rig.sim_post("/sim/graph/lifecycle?mailbox=alice@example.com&event=subscriptionRemoved")
        .await;
    let stats = rig.wait_graph("subscriptions_created", 2).await;
    assert_eq!(
        graph_count(&stats, "subscriptions_active"),
        1,
        "{}",
        stats["graph"]
    );

    // Calendar presence switched off: the subscription is deleted.
    edit_user(
        &rig,
        alice,
        "alice",
        "alice@example.com",
        "test-node",
        false,
    )
    .await;
    let stats = rig.wait_graph("subscriptions_deleted", 1).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stats = stats;
    while graph_count(&stats, "subscriptions_active") != 0 {
        assert!(Instant::now() < deadline, "{}", stats["graph"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        stats = rig.sim_stats().await;
    }
}

#[tokio::test]
async fn a_microsoft_365_sign_in_failure_shows_in_the_gateways_health() {
    let rig = Rig::new(GRAPH_ARGS).await;
    rig.add_graph_gateway_with("Online", "not-the-secret-value")
        .await;
    let user_id = rig.add_user("alice", "alice@example.com").await;
    let _engine = rig.start_engine().await;
    let health = rig
        .wait_health(10, |h| h.iter().any(|h| h.last_error.is_some()))
        .await;
    let error = health[0].last_error.clone().unwrap_or_default();
    assert!(
        error.contains("AADSTS7000215") || error.contains("client secret is wrong"),
        "{error}"
    );
    assert!(
        error.contains("Value"),
        "the advice says what to copy: {error}"
    );
    let (_, center) = rig.app.get_text("/serviceability/control-center").await;
    assert!(center.contains("client secret is wrong"), "{center}");
    // The user is unknown, and the End User page says why (published at
    // the user's minute plus offset: the clock moves a minute at a time).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, page) = rig
            .app
            .get_text(&format!("/users/end-users/{user_id}"))
            .await;
        if page.contains("client secret is wrong") {
            break;
        }
        assert!(Instant::now() < deadline, "{page}");
        rig.app.clock.advance(time::Duration::minutes(1));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(rig.presence("alice").await["calendar_presence"], "unknown");
    // One sign-in attempt per pause, not one per read.
    let tokens = rig.sim_stats().await["graph"]["token_requests"]
        .as_u64()
        .unwrap_or(0);
    assert!(tokens <= 6, "{tokens} sign-in attempts");
}

#[tokio::test]
async fn a_microsoft_365_subscription_is_renewed_before_it_expires() {
    // Graph grants 20 minutes here, whatever is asked: renewed in the
    // second half of that, by calendar time.
    let (rig, _engine, _) = graph_push_rig(&["--graph-subscription-minutes", "20"]).await;
    rig.wait_graph("subscriptions_active", 1).await;
    let made = rig.app.state.now();
    rig.advance_to(made + 9 * 60);
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        graph_count(&rig.sim_stats().await, "subscriptions_renewed"),
        0,
        "renewed in the first half of its life"
    );
    rig.advance_to(made + 11 * 60);
    let stats = rig.wait_graph("subscriptions_renewed", 1).await;
    assert_eq!(
        graph_count(&stats, "subscriptions_active"),
        1,
        "{}",
        stats["graph"]
    );
    assert_eq!(
        graph_count(&stats, "subscriptions_created"),
        1,
        "{}",
        stats["graph"]
    );
}

#[tokio::test]
async fn stopping_the_engine_deletes_its_microsoft_365_subscriptions() {
    let (rig, _engine, _) = graph_push_rig(&[]).await;
    rig.wait_graph("subscriptions_active", 1).await;
    let response = rig
        .app
        .post_form(
            "/serviceability/control-center",
            &[("node", "test-node"), ("action", "stop")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    crate::engine::wait_state(&rig.app.state.pool, "test-node", "stopped").await;
    let stats = rig.wait_graph("subscriptions_deleted", 1).await;
    assert_eq!(
        graph_count(&stats, "subscriptions_active"),
        0,
        "{}",
        stats["graph"]
    );
}
