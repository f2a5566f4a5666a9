//! The presence API with its callers (EN-5): sessions and API tokens
//! (System > API Tokens) on `GET /api/v1/presence/{userid}` and the
//! server-sent event stream `GET /api/v1/presence/stream`, over a real TCP
//! port. Every wait is bounded.

use std::time::Duration;

use presence_gateway::domain::presence::CalendarPresence;
use presence_gateway::store::presence::{self, Publication};
use serde_json::{Value, json};

use crate::support::{self, TestApp, field_error, location};

/// Longest a test waits for an event that should come.
const EVENT_WAIT: Duration = Duration::from_secs(10);

pub(crate) fn publication(user: &str, state: CalendarPresence, since: i64) -> Publication {
    Publication {
        user_id: user.to_owned(),
        presence: state,
        since,
        until: Some(since + 1800),
        gateway: Some("Exchange 1".to_owned()),
        reason: None,
    }
}

/// Publishes one change per (user, state), as the engine would; their
/// sequence numbers.
async fn publish(app: &TestApp, changes: &[(&str, CalendarPresence)]) -> Vec<i64> {
    let batch: Vec<Publication> = changes
        .iter()
        .enumerate()
        .map(|(i, (user, state))| publication(user, *state, 1_800_000_000 + i as i64 * 60))
        .collect();
    presence::publish(&app.state.pool, &batch, 1_800_000_000)
        .await
        .expect("publish")
}

/// A client of its own, signed in as `user`.
async fn signed_in(app: &TestApp, user: &str, password: &str) -> reqwest::Client {
    let client = app.other_client();
    let response = client
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[("user_id", user), ("password", password), ("next", "")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status().as_u16(), 303, "{user} signs in");
    client
}

/// An app with alice and bob (end users) and the administrator signed in
/// on `app.client`.
async fn app_with_users() -> TestApp {
    let app = support::admin_app().await;
    app.create_end_user("alice", "amber-lantern-pw-1").await;
    app.create_end_user("bob", "basalt-lantern-pw-12").await;
    app
}

/// Creates a token on System > API Tokens as the signed-in administrator;
/// the token as the page shows it once.
pub(crate) async fn create_token(app: &TestApp, name: &str) -> String {
    let (status, page) = app.post_text("/system/api-tokens", &[("name", name)]).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("Copy it now; it will not be shown again."),
        "{page}"
    );
    token_in(&page).unwrap_or_else(|| panic!("no token on the page: {page}"))
}

fn token_in(page: &str) -> Option<String> {
    let start = page.find("value=\"pgw_")? + "value=\"".len();
    let end = page[start..].find('"')? + start;
    Some(page[start..end].to_owned())
}

async fn token_id(app: &TestApp, name: &str) -> i64 {
    sqlx::query_scalar("SELECT id FROM api_tokens WHERE name = $1 AND revoked_at IS NULL")
        .bind(name)
        .fetch_one(&app.state.pool)
        .await
        .expect("token id")
}

async fn get_with(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(app.url(path));
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    request.send().await.expect("GET")
}

/// Status, `WWW-Authenticate` and JSON body of a GET.
async fn json_get(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    authorization: Option<&str>,
) -> (u16, Option<String>, Value) {
    let response = get_with(client, app, path, authorization).await;
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "GET {path}: {status} is {content_type:?}, not JSON"
    );
    (status, challenge, response.json().await.expect("JSON body"))
}

fn assert_unauthorized(outcome: &(u16, Option<String>, Value), what: &str) {
    let (status, challenge, body) = outcome;
    assert_eq!(*status, 401, "{what}: {body}");
    assert!(
        challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer")),
        "{what}: WWW-Authenticate {challenge:?}"
    );
    assert!(body["error"].is_string(), "{what}: {body}");
}

// --------------------------------------------------------------- presence

#[tokio::test]
async fn anonymous_callers_get_401_json_with_a_bearer_challenge() {
    let app = TestApp::spawn().await;
    app.create_end_user("alice", "amber-lantern-pw-1").await;
    let anonymous = support::bare_client();
    for path in [
        "/api/v1/presence/alice",
        "/api/v1/presence/stream",
        "/api/v1/no-such-thing",
    ] {
        let outcome = json_get(&anonymous, &app, path, None).await;
        assert_unauthorized(&outcome, path);
    }
}

#[tokio::test]
async fn sessions_read_as_their_role_allows() {
    let app = app_with_users().await;
    let alice = signed_in(&app, "alice", "amber-lantern-pw-1").await;
    let (status, _, body) = json_get(&alice, &app, "/api/v1/presence/alice", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userid"], "alice");
    let (status, _, body) = json_get(&alice, &app, "/api/v1/presence/bob", None).await;
    assert_eq!(
        status, 404,
        "another's presence is as if it did not exist: {body}"
    );

    for user in ["alice", "bob"] {
        let (status, _, body) =
            json_get(&app.client, &app, &format!("/api/v1/presence/{user}"), None).await;
        assert_eq!(status, 200, "the administrator reads {user}: {body}");
        assert_eq!(body["userid"], user);
    }
}

#[tokio::test]
async fn tokens_read_anyones_presence_until_revoked() {
    let app = app_with_users().await;
    let token = create_token(&app, "Presence server").await;
    let bearer = format!("Bearer {token}");
    let caller = support::bare_client();

    publish(&app, &[("bob", CalendarPresence::InAMeeting)]).await;
    sqlx::query("UPDATE users SET calendar_enabled = 1, node = 'test-node' WHERE user_id = 'bob'")
        .execute(&app.state.pool)
        .await
        .unwrap();
    let (status, _, body) = json_get(&caller, &app, "/api/v1/presence/alice", Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["calendar_presence"], "unknown");
    let (status, _, body) = json_get(&caller, &app, "/api/v1/presence/BOB", Some(&bearer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({
            "userid": "bob",
            "calendar_presence": "in_a_meeting",
            "since": "2027-01-15T08:00:00Z",
            "until": "2027-01-15T08:30:00Z",
            "gateway": "Exchange 1",
        })
    );
    let (status, _, _) = json_get(&caller, &app, "/api/v1/presence/nobody", Some(&bearer)).await;
    assert_eq!(status, 404);
    let (status, _, _) = json_get(&caller, &app, "/api/v1/nothing-here", Some(&bearer)).await;
    assert_eq!(status, 404, "an unknown path, to a known caller");

    // Only the hash is stored.
    let hash = presence_gateway::secrets::api_token::hash(&token);
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM api_tokens WHERE token_hash = '{hash}'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM api_tokens WHERE token_hash LIKE '%{}%' OR name LIKE '%{}%'",
            &token[4..20],
            &token[4..20]
        ))
        .await,
        0
    );

    // Revoked: refused at once, as a bad token.
    let id = token_id(&app, "Presence server").await;
    let response = app
        .post_form(&format!("/system/api-tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let outcome = json_get(&caller, &app, "/api/v1/presence/alice", Some(&bearer)).await;
    assert_unauthorized(&outcome, "revoked token");
    assert!(
        outcome
            .1
            .as_deref()
            .is_some_and(|c| c.contains("invalid_token")),
        "{:?}",
        outcome.1
    );
}

#[tokio::test]
async fn malformed_and_unknown_bearer_headers_get_401() {
    let app = app_with_users().await;
    let token = create_token(&app, "Dashboard").await;
    let unknown = format!("pgw_{}", "A".repeat(43));
    let caller = support::bare_client();
    for header in [
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        "Bearer not-a-token".to_owned(),
        format!("Basic {token}"),
        format!("Bearer {token}x"),
        format!("Bearer {unknown}"),
        token.clone(),
    ] {
        let outcome = json_get(&caller, &app, "/api/v1/presence/alice", Some(&header)).await;
        assert_unauthorized(&outcome, &header);
    }
    // A bad token is refused even beside a good session: the header speaks.
    let outcome = json_get(
        &app.client,
        &app,
        "/api/v1/presence/alice",
        Some(&format!("Bearer {unknown}")),
    )
    .await;
    assert_unauthorized(&outcome, "bad token with an administrator's session");
    // The scheme is case-insensitive.
    let (status, _, _) = json_get(
        &caller,
        &app,
        "/api/v1/presence/alice",
        Some(&format!("bearer {token}")),
    )
    .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn last_used_is_written_at_most_once_a_minute() {
    let app = app_with_users().await;
    let token = create_token(&app, "Poller").await;
    let bearer = format!("Bearer {token}");
    let caller = support::bare_client();
    let last_used = || async {
        sqlx::query_scalar::<_, Option<i64>>(
            "SELECT last_used_at FROM api_tokens WHERE name = 'Poller'",
        )
        .fetch_one(&app.state.pool)
        .await
        .unwrap()
    };
    assert_eq!(last_used().await, None);
    let (status, _, _) = json_get(&caller, &app, "/api/v1/presence/alice", Some(&bearer)).await;
    assert_eq!(status, 200);
    let first = last_used().await.expect("used");
    app.clock.advance(time::Duration::seconds(30));
    json_get(&caller, &app, "/api/v1/presence/alice", Some(&bearer)).await;
    assert_eq!(
        last_used().await,
        Some(first),
        "not rewritten within a minute"
    );
    app.clock.advance(time::Duration::seconds(31));
    json_get(&caller, &app, "/api/v1/presence/alice", Some(&bearer)).await;
    assert_eq!(last_used().await, Some(first + 61));
    // The console shows it.
    let (_, page) = app.get_text("/system/api-tokens").await;
    assert!(!page.contains(">Never<"), "{page}");
}

// ---------------------------------------------------------------- console

#[tokio::test]
async fn the_console_creates_lists_and_revokes_tokens() {
    let app = app_with_users().await;
    let (status, page) = app.get_text("/system/api-tokens").await;
    assert_eq!(status, 200);
    assert!(page.contains("No token has been created yet."), "{page}");
    assert!(page.contains("href=\"/system/api-tokens\""), "in the menu");

    // Refused names, beside the field.
    let (status, page) = app.post_text("/system/api-tokens", &[("name", "  ")]).await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "name").is_some(), "{page}");
    let long = "x".repeat(65);
    let (status, page) = app
        .post_text("/system/api-tokens", &[("name", &long)])
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "name").is_some(), "{page}");
    assert!(token_in(&page).is_none());

    let token = create_token(&app, "Presence server").await;
    let (status, page) = app
        .post_text("/system/api-tokens", &[("name", "presence SERVER")])
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        field_error(&page, "name").as_deref(),
        Some("Another token in use has this name: names tell the callers apart.")
    );
    assert!(token_in(&page).is_none());

    // Listed, never shown again.
    let (_, page) = app.get_text("/system/api-tokens").await;
    assert!(!page.contains(&token), "the token is shown once only");
    assert!(
        page.contains("<th scope=\"row\">Presence server</th>"),
        "{page}"
    );
    assert!(page.contains("Active"), "{page}");
    assert!(page.contains("Never"), "{page}");

    // Revoke: a confirmation page, then the POST.
    let id = token_id(&app, "Presence server").await;
    let (status, page) = app
        .get_text(&format!("/system/api-tokens/{id}/revoke"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("You are about to revoke the token"), "{page}");
    let response = app
        .post_form(&format!("/system/api-tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/system/api-tokens");
    let (_, page) = app.get_text("/system/api-tokens").await;
    assert!(page.contains("Revoke successful"), "{page}");
    assert!(page.contains("Revoked "), "{page}");
    // Twice: refused, with why.
    let (status, page) = app
        .post_text(&format!("/system/api-tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("already revoked by admin"), "{page}");
    let (status, _) = app.get_text("/system/api-tokens/999/revoke").await;
    assert_eq!(status, 404);

    // A revoked token's name is free again.
    create_token(&app, "Presence server").await;

    let audit: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT action, target, actor FROM audit_log WHERE action LIKE 'API token%' ORDER BY id",
    )
    .fetch_all(&app.state.pool)
    .await
    .unwrap();
    let expected = [
        ("API token created", "Presence server", "admin"),
        ("API token revoked", "Presence server", "admin"),
        ("API token created", "Presence server", "admin"),
    ];
    assert_eq!(
        audit
            .iter()
            .map(|(a, t, u)| (a.as_str(), t.as_str(), u.as_str()))
            .collect::<Vec<_>>(),
        expected
    );
    let logged: i64 = app
        .count(&format!(
            "SELECT COUNT(*) FROM audit_log WHERE after_json LIKE '%{}%'",
            &token[4..20]
        ))
        .await;
    assert_eq!(logged, 0, "the audit log never holds the token");
}

#[tokio::test]
async fn only_administrators_manage_tokens() {
    let app = app_with_users().await;
    let alice = signed_in(&app, "alice", "amber-lantern-pw-1").await;
    let response = alice
        .get(app.url("/system/api-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = alice
        .post(app.url("/system/api-tokens"))
        .header("Origin", &app.base)
        .form(&[("name", "mine")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let anonymous = support::client();
    let response = anonymous
        .get(app.url("/system/api-tokens"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert!(location(&response).starts_with("/login"));
    assert_eq!(app.count("SELECT COUNT(*) FROM api_tokens").await, 0);
    // Cross-site: refused (SY-3).
    let response = app
        .client
        .post(app.url("/system/api-tokens"))
        .header("Origin", "http://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("name", "evil")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM api_tokens").await, 0);
}

// ----------------------------------------------------------------- stream

/// One server-sent event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SseEvent {
    pub(crate) event: String,
    pub(crate) id: String,
    pub(crate) data: Value,
}

/// Reads server-sent events off a streaming response.
pub(crate) struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    pub(crate) fn new(response: reqwest::Response) -> SseReader {
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), or `None` if none came within
    /// `wait` or the stream ended.
    pub(crate) async fn next_within(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(event) = self.take_event() {
                return Some(event);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("reading the stream")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }

    async fn next(&mut self) -> SseEvent {
        self.next_within(EVENT_WAIT)
            .await
            .unwrap_or_else(|| panic!("no event within {EVENT_WAIT:?}"))
    }

    /// The first complete event in the buffer, if any.
    fn take_event(&mut self) -> Option<SseEvent> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let mut event = String::new();
            let mut id = String::new();
            let mut data = Vec::new();
            for line in block.lines() {
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "event" => event = value.to_owned(),
                    "id" => id = value.to_owned(),
                    "data" => data.push(value.to_owned()),
                    _ => {} // a comment (keep-alive) or an unknown field
                }
            }
            if data.is_empty() {
                continue;
            }
            return Some(SseEvent {
                event,
                id,
                data: serde_json::from_str(&data.join("\n")).expect("JSON data"),
            });
        }
    }
}

pub(crate) async fn open_stream(
    client: &reqwest::Client,
    app: &TestApp,
    query: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client.get(app.url(&format!("/api/v1/presence/stream{query}")));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    tokio::time::timeout(EVENT_WAIT, request.send())
        .await
        .expect("the stream answers in time")
        .expect("GET stream")
}

/// A client without the overall request timeout (a stream outlives it).
pub(crate) fn streaming_client(cookies: bool) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(support::tls_config(rustls::RootCertStore::empty()))
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(cookies)
        .build()
        .expect("client")
}

async fn streaming_signed_in(app: &TestApp, user: &str, password: &str) -> reqwest::Client {
    let client = streaming_client(true);
    let response = client
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[("user_id", user), ("password", password), ("next", "")])
        .send()
        .await
        .expect("sign in");
    assert_eq!(response.status().as_u16(), 303);
    client
}

/// The event a publication should produce: the single-user endpoint's JSON.
async fn expected(app: &TestApp, seq: i64) -> SseEvent {
    let published = presence::events_after(&app.state.pool, seq - 1, None, 1)
        .await
        .unwrap()
        .pop()
        .expect("logged");
    assert_eq!(published.seq, seq);
    SseEvent {
        event: "presence".to_owned(),
        id: seq.to_string(),
        data: presence_gateway::web::api::presence_json(&published),
    }
}

#[tokio::test]
async fn the_stream_sends_changes_from_now_and_resumes_after_last_event_id() {
    let app = app_with_users().await;
    // Published before the stream opens: not sent to a new stream.
    let old = publish(&app, &[("alice", CalendarPresence::Away)]).await;
    let admin = streaming_signed_in(&app, support::ADMIN, support::ADMIN_PASSWORD).await;
    let mut stream = SseReader::new(open_stream(&admin, &app, "", &[]).await);

    let seqs = publish(
        &app,
        &[
            ("alice", CalendarPresence::InAMeeting),
            ("bob", CalendarPresence::Available),
        ],
    )
    .await;
    let first = stream.next().await;
    assert_eq!(first, expected(&app, seqs[0]).await);
    assert_eq!(first.data["userid"], "alice");
    assert_eq!(first.data["calendar_presence"], "in_a_meeting");
    assert_eq!(first.data["since"], "2027-01-15T08:00:00Z");
    assert_eq!(first.data["gateway"], "Exchange 1");
    let second = stream.next().await;
    assert_eq!(second, expected(&app, seqs[1]).await);
    assert!(old[0] < seqs[0]);
    let third_seq = publish(&app, &[("alice", CalendarPresence::Available)]).await[0];
    assert_eq!(stream.next().await, expected(&app, third_seq).await);
    drop(stream);

    // Resumed after the first: exactly the second and the third, whichever
    // way the id is given.
    for (query, headers) in [
        (String::new(), vec![("Last-Event-ID", first.id.clone())]),
        (format!("?last_event_id={}", first.id), vec![]),
    ] {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let mut resumed = SseReader::new(open_stream(&admin, &app, &query, &headers).await);
        assert_eq!(resumed.next().await.id, seqs[1].to_string());
        assert_eq!(resumed.next().await.id, third_seq.to_string());
        assert_eq!(
            resumed.next_within(Duration::from_millis(800)).await,
            None,
            "nothing more"
        );
    }

    // A token's stream sees everyone's too.
    let token = create_token(&app, "Streamer").await;
    let caller = streaming_client(false);
    let bearer = format!("Bearer {token}");
    let mut stream =
        SseReader::new(open_stream(&caller, &app, "", &[("Authorization", bearer.as_str())]).await);
    let seq = publish(&app, &[("bob", CalendarPresence::Away)]).await[0];
    assert_eq!(stream.next().await, expected(&app, seq).await);

    // A resume point that is not an event id.
    let response = open_stream(&admin, &app, "", &[("Last-Event-ID", "yesterday")]).await;
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"].is_string());
}

#[tokio::test]
async fn an_end_users_stream_carries_only_their_own_changes() {
    let app = app_with_users().await;
    let alice = streaming_signed_in(&app, "alice", "amber-lantern-pw-1").await;
    let mut stream = SseReader::new(open_stream(&alice, &app, "", &[]).await);
    let seqs = publish(
        &app,
        &[
            ("bob", CalendarPresence::InAMeeting),
            ("ALICE", CalendarPresence::Away),
            ("bob", CalendarPresence::Available),
            ("alice", CalendarPresence::Available),
        ],
    )
    .await;
    let first = stream.next().await;
    assert_eq!(first.id, seqs[1].to_string());
    assert_eq!(first.data["userid"], "alice");
    let second = stream.next().await;
    assert_eq!(second.id, seqs[3].to_string());
    assert_eq!(stream.next_within(Duration::from_millis(800)).await, None);
    // Resuming from before everything still yields only hers.
    let mut resumed = SseReader::new(open_stream(&alice, &app, "?last_event_id=0", &[]).await);
    assert_eq!(resumed.next().await.id, seqs[1].to_string());
    assert_eq!(resumed.next().await.id, seqs[3].to_string());

    // Signing out ends her open streams (checked every 15 s).
    let response = alice
        .post(app.url("/logout"))
        .header("Origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert!(
        ends_within(&app, &mut stream, Duration::from_secs(25)).await,
        "the stream outlived the sign-out"
    );
}

/// Whether the stream ends within `wait`, publishing meanwhile so that it
/// keeps polling.
async fn ends_within(app: &TestApp, stream: &mut SseReader, wait: Duration) -> bool {
    tokio::time::timeout(wait, async {
        loop {
            publish(app, &[("alice", CalendarPresence::Away)]).await;
            let chunk = tokio::time::timeout(Duration::from_secs(1), stream.response.chunk()).await;
            if let Ok(Ok(None) | Err(_)) = chunk {
                return;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_revoked_tokens_stream_ends() {
    let app = app_with_users().await;
    let token = create_token(&app, "Short-lived").await;
    let caller = streaming_client(false);
    let bearer = format!("Bearer {token}");
    let mut stream =
        SseReader::new(open_stream(&caller, &app, "", &[("Authorization", bearer.as_str())]).await);
    // A session's stream beside it, which must outlive the checks.
    let admin = streaming_signed_in(&app, support::ADMIN, support::ADMIN_PASSWORD).await;
    let mut session_stream = SseReader::new(open_stream(&admin, &app, "", &[]).await);
    let session_opened = tokio::time::Instant::now();
    let id = token_id(&app, "Short-lived").await;
    let response = app
        .post_form(&format!("/system/api-tokens/{id}/revoke"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    // The stream checks its caller every 15 s: expect the end within that
    // and a margin.
    assert!(
        ends_within(&app, &mut stream, Duration::from_secs(25)).await,
        "the stream did not end after revocation"
    );
    // Past its own check (15 s after it opened), the session's stream still
    // carries changes; it skips what `ends_within` published meanwhile.
    tokio::time::sleep_until(session_opened + Duration::from_secs(16)).await;
    let seq = publish(&app, &[("bob", CalendarPresence::InAMeeting)]).await[0];
    let mut last = None;
    while let Some(event) = session_stream.next_within(EVENT_WAIT).await {
        let done = event.id == seq.to_string();
        last = Some(event);
        if done {
            break;
        }
    }
    assert_eq!(
        last.map(|e| e.id),
        Some(seq.to_string()),
        "the session's stream ended with the token's"
    );
}

#[tokio::test]
async fn streams_are_capped_per_process_and_freed_on_disconnect() {
    let app = app_with_users().await;
    let permits = app.state.streams.0.clone();
    let total = permits.available_permits();
    // Leave room for one stream only.
    let _held = permits
        .clone()
        .try_acquire_many_owned(u32::try_from(total - 1).unwrap())
        .expect("permits");
    let admin = streaming_signed_in(&app, support::ADMIN, support::ADMIN_PASSWORD).await;
    let first = SseReader::new(open_stream(&admin, &app, "", &[]).await);
    assert_eq!(permits.available_permits(), 0);
    let refused = open_stream(&admin, &app, "", &[]).await;
    assert_eq!(refused.status().as_u16(), 503);
    let body: Value = refused.json().await.expect("JSON");
    assert!(body["error"].is_string());

    // The client goes away: its stream ends and frees its place.
    drop(first);
    let freed = tokio::time::timeout(Duration::from_secs(20), async {
        while permits.available_permits() == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(freed.is_ok(), "the stream of a gone client was not ended");
    let again = open_stream(&admin, &app, "", &[]).await;
    assert_eq!(again.status().as_u16(), 200);
}

/// One tail of the log for every stream (issue 20): two hundred streams
/// follow the process's feed (not a query each), and a change reaches every
/// one of them.
#[tokio::test]
async fn many_streams_follow_one_feed_and_each_gets_every_change() {
    let app = app_with_users().await;
    let admin = streaming_signed_in(&app, support::ADMIN, support::ADMIN_PASSWORD).await;
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(SseReader::new(open_stream(&admin, &app, "", &[]).await));
    }
    assert_eq!(app.state.feed.streams(), 200);
    let seq = publish(&app, &[("alice", CalendarPresence::InAMeeting)]).await[0];
    let want = expected(&app, seq).await;
    for stream in &mut streams {
        let got = stream.next_within(Duration::from_secs(5)).await;
        assert_eq!(got.as_ref(), Some(&want));
    }
}

/// A reader that stops reading does not hold the others up: once it is
/// further behind than the feed keeps (beyond what its connection buffers:
/// a small receive buffer here, so the test need not outrun megabytes), its
/// stream ends with an `overflow` event saying to resume with
/// Last-Event-ID, while a reader that keeps up gets every event; resuming
/// from the slow stream's last event loses nothing.
#[tokio::test]
async fn a_stream_that_falls_too_far_behind_is_closed_with_a_last_event() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const EVENTS: usize = 80_000;
    let app = app_with_users().await;
    let token = create_token(&app, "Slow reader").await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut slow = socket.connect(app.addr).await.unwrap();
    slow.write_all(
        format!(
            "GET /api/v1/presence/stream HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Accept: text/event-stream\r\nConnection: close\r\n\r\n",
            app.addr
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let admin = streaming_signed_in(&app, support::ADMIN, support::ADMIN_PASSWORD).await;
    let mut fast = SseReader::new(open_stream(&admin, &app, "", &[]).await);
    // Both streams are open (the slow one's answer head has arrived).
    let mut head = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut head))
        .await
        .expect("the slow stream answers")
        .unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).starts_with("HTTP/1.1 200"));
    let reader = tokio::spawn(async move {
        let mut last = 0i64;
        let mut count = 0usize;
        while count < EVENTS {
            let Some(event) = fast.next_within(Duration::from_secs(30)).await else {
                break;
            };
            assert_eq!(event.event, "presence");
            last = event.id.parse().expect("id");
            count += 1;
        }
        (count, last)
    });
    let states = [CalendarPresence::InAMeeting, CalendarPresence::Available];
    let mut newest = 0;
    for chunk in 0..(EVENTS / 10_000) {
        let batch: Vec<Publication> = (0..10_000)
            .map(|i| {
                let since = 1_800_000_000 + (chunk * 10_000 + i) as i64;
                publication("alice", states[i % 2], since)
            })
            .collect();
        newest = *presence::publish(&app.state.pool, &batch, 1_800_000_000)
            .await
            .expect("publish")
            .last()
            .expect("seq");
    }
    let (count, last) = tokio::time::timeout(Duration::from_secs(120), reader)
        .await
        .expect("the fast reader kept up")
        .unwrap();
    assert_eq!(
        (count, last),
        (EVENTS, newest),
        "the fast reader got every event"
    );

    // The slow reader reads now, to the end of its stream (bounded).
    let mut body = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        // Closed after its last word (the request asked so); a silence of
        // 5 s ends the reading too.
        let wait = deadline.min(tokio::time::Instant::now() + Duration::from_secs(5));
        match tokio::time::timeout_at(wait, slow.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => body.extend_from_slice(&buffer[..n]),
            Ok(Err(e)) => panic!("reading the slow stream: {e}"),
        }
        if body.len() > 64 * 1024 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let overflow = text.find("event: overflow").expect("an overflow event");
    assert!(
        text[overflow..].contains("Last-Event-ID"),
        "{}",
        &text[overflow..]
    );
    let ids: Vec<i64> = text[..overflow]
        .lines()
        .filter_map(|l| l.strip_prefix("id: ")?.trim().parse().ok())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");
    let seen = *ids.last().expect("some events before the last word");
    assert!(seen < newest, "it fell behind");
    assert!(
        !text[overflow..].contains("event: presence"),
        "nothing after the last word"
    );
    // Resumed from its last event: the rest, from the log.
    let resumed_from = seen.to_string();
    let mut resumed = SseReader::new(
        open_stream(
            &admin,
            &app,
            "",
            &[("Last-Event-ID", resumed_from.as_str())],
        )
        .await,
    );
    assert_eq!(resumed.next().await.id, (seen + 1).to_string());
}

/// Streams are bounded per client address too: one client cannot take the
/// process's 10,000; the address's places come back as its streams close.
#[tokio::test]
async fn streams_are_bounded_per_client_address() {
    use presence_gateway::state::{StreamPermits, StreamRefusal};
    let app = app_with_users().await;
    let loopback: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let admin = streaming_signed_in(&app, support::ADMIN, support::ADMIN_PASSWORD).await;
    let first = SseReader::new(open_stream(&admin, &app, "", &[]).await);
    assert_eq!(app.state.streams.open_from(loopback), 1);
    // The rest of this address's places, held as streams would hold them.
    let held: Vec<_> = (1..StreamPermits::PER_ADDRESS)
        .map(|_| {
            app.state
                .streams
                .try_acquire(Some(loopback))
                .expect("a place")
        })
        .collect();
    assert_eq!(
        app.state.streams.try_acquire(Some(loopback)).err(),
        Some(StreamRefusal::Address)
    );
    let refused = open_stream(&admin, &app, "", &[]).await;
    assert_eq!(refused.status().as_u16(), 429);
    let body: Value = refused.json().await.expect("JSON");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("this address")),
        "{body}"
    );
    // Another address still gets one.
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    assert!(app.state.streams.try_acquire(Some(other)).is_ok());
    drop(held);
    assert_eq!(app.state.streams.open_from(loopback), 1);
    let again = open_stream(&admin, &app, "", &[]).await;
    assert_eq!(again.status().as_u16(), 200);
    drop(first);
}
