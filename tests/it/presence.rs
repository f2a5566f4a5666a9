//! Published calendar presence in the store (EN-5): current rows and the
//! ordered event log a stream resumes from.

use presence_gateway::domain::presence::CalendarPresence;
use presence_gateway::store::presence::{self, Publication};

use crate::support::TestApp;

fn publication(user: &str, state: CalendarPresence, since: i64) -> Publication {
    Publication {
        user_id: user.to_owned(),
        presence: state,
        since,
        until: Some(since + 1800),
        gateway: Some("Exchange 1".to_owned()),
        reason: None,
    }
}

#[tokio::test]
async fn a_batch_writes_current_rows_and_the_log_in_order() {
    let app = TestApp::spawn().await;
    let pool = &app.state.pool;
    app.create_end_user("alice", "amber-lantern-pw-1").await;
    app.create_end_user("bob", "basalt-lantern-pw-12").await;
    assert_eq!(presence::last_seq(pool).await.unwrap(), 0);
    assert_eq!(presence::current(pool, "alice").await.unwrap(), None);

    let seqs = presence::publish(
        pool,
        &[
            publication("alice", CalendarPresence::InAMeeting, 1000),
            publication("ghost", CalendarPresence::Away, 1000),
            publication("BOB", CalendarPresence::Available, 1000),
        ],
        1010,
    )
    .await
    .unwrap();
    // The user that does not exist is skipped.
    assert_eq!(seqs.len(), 2);
    assert!(seqs[0] < seqs[1]);
    let alice = presence::current(pool, "ALICE")
        .await
        .unwrap()
        .expect("alice");
    assert_eq!(alice.presence, CalendarPresence::InAMeeting);
    assert_eq!(alice.until, Some(2800));
    assert_eq!(alice.gateway.as_deref(), Some("Exchange 1"));

    let mut unknown = publication("alice", CalendarPresence::Unknown, 1100);
    unknown.until = None;
    unknown.reason = Some("ErrorMailRecipientNotFound".to_owned());
    presence::publish(pool, &[unknown], 1100).await.unwrap();
    let alice = presence::current(pool, "alice")
        .await
        .unwrap()
        .expect("alice");
    assert_eq!(alice.presence, CalendarPresence::Unknown);
    assert_eq!(alice.reason.as_deref(), Some("ErrorMailRecipientNotFound"));

    // The log: everything after a sequence number, or one user's.
    let all = presence::events_after(pool, 0, None, 100).await.unwrap();
    let states: Vec<(&str, CalendarPresence)> = all
        .iter()
        .map(|e| (e.user_id.as_str(), e.presence))
        .collect();
    assert_eq!(
        states,
        vec![
            ("alice", CalendarPresence::InAMeeting),
            ("bob", CalendarPresence::Available),
            ("alice", CalendarPresence::Unknown),
        ]
    );
    let after = presence::events_after(pool, all[0].seq, None, 100)
        .await
        .unwrap();
    assert_eq!(after.len(), 2);
    let hers = presence::events_after(pool, 0, Some("Alice"), 100)
        .await
        .unwrap();
    assert_eq!(hers.len(), 2);
    assert_eq!(
        presence::events_after(pool, 0, None, 1)
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(presence::last_seq(pool).await.unwrap(), all[2].seq);

    // A deleted user's current row goes with them; the log keeps what was
    // published.
    sqlx::query("DELETE FROM users WHERE user_id = 'bob'")
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(presence::current(pool, "bob").await.unwrap(), None);
    assert_eq!(
        presence::events_after(pool, 0, Some("bob"), 10)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// A client of its own, signed in as alice.
async fn signed_in_alice(app: &TestApp) -> reqwest::Client {
    let alice = app.other_client();
    let response = alice
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[
            ("user_id", "alice"),
            ("password", "amber-lantern-pw-1"),
            ("next", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    alice
}

async fn json_of(client: &reqwest::Client, app: &TestApp, path: &str) -> (u16, serde_json::Value) {
    let response = client.get(app.url(path)).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON"))
}

/// `GET /api/v1/presence/{userid}` answers EN-5's object: 401 to anonymous
/// callers, an end user's own presence only (others are 404), anyone's to
/// an administrator; `unknown` while calendar presence is off.
#[tokio::test]
async fn the_presence_api_answers_en5_json_to_whom_it_may() {
    let app = TestApp::spawn().await;
    let pool = &app.state.pool;
    app.create_end_user("alice", "amber-lantern-pw-1").await;
    app.create_end_user("bob", "basalt-lantern-pw-12").await;

    let anonymous = crate::support::bare_client();
    let (status, body) = json_of(&anonymous, &app, "/api/v1/presence/alice").await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"].is_string());

    let alice = signed_in_alice(&app).await;
    let (status, body) = json_of(&alice, &app, "/api/v1/presence/alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["userid"], "alice");
    assert_eq!(body["calendar_presence"], "unknown");
    assert!(
        body["since"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{body}"
    );
    assert!(
        body["until"].is_null() && body["gateway"].is_null(),
        "{body}"
    );
    let mut keys: Vec<&String> = body.as_object().unwrap().keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["calendar_presence", "gateway", "since", "until", "userid"]
    );
    // Someone else's: as if it did not exist.
    let (status, _) = json_of(&alice, &app, "/api/v1/presence/bob").await;
    assert_eq!(status, 404);

    // Calendar presence on and a meeting published: an administrator sees it.
    sqlx::query(
        "UPDATE users SET calendar_enabled = 1, node = 'test-node' WHERE user_id = 'alice'",
    )
    .execute(pool)
    .await
    .unwrap();
    let (_, body) = json_of(&alice, &app, "/api/v1/presence/ALICE").await;
    assert_eq!(body["calendar_presence"], "unknown", "nothing read yet");
    presence::publish(
        pool,
        &[publication(
            "alice",
            CalendarPresence::InAMeeting,
            1_800_000_000,
        )],
        1_800_000_005,
    )
    .await
    .unwrap();
    app.sign_in_admin().await;
    let (status, body) = json_of(&app.client, &app, "/api/v1/presence/alice").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({
            "userid": "alice",
            "calendar_presence": "in_a_meeting",
            "since": "2027-01-15T08:00:00Z",
            "until": "2027-01-15T08:30:00Z",
            "gateway": "Exchange 1",
        })
    );
    let (status, _) = json_of(&app.client, &app, "/api/v1/presence/nobody").await;
    assert_eq!(status, 404);
    // Switched off again: unknown, whatever was published.
    sqlx::query("UPDATE users SET calendar_enabled = 0 WHERE user_id = 'alice'")
        .execute(pool)
        .await
        .unwrap();
    let (_, body) = json_of(&app.client, &app, "/api/v1/presence/alice").await;
    assert_eq!(body["calendar_presence"], "unknown");
}

/// The End User page and User Options show what was published, and until
/// when, once a gateway exists and the user's calendar presence is on.
#[tokio::test]
async fn pages_show_the_published_presence() {
    let app = crate::support::admin_app().await;
    let pool = &app.state.pool;
    let id = app.create_end_user("alice", "amber-lantern-pw-1").await;
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "ews"),
                ("description", "Exchange 1"),
                ("server", "ex1.example.com"),
                ("account_name", "svc@example.com"),
                ("password", "service-password"),
                ("confirm", "service-password"),
                ("port", "443"),
                ("test_mailbox", ""),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    sqlx::query(
        "UPDATE users SET calendar_enabled = 1, node = 'test-node' WHERE user_id = 'alice'",
    )
    .execute(pool)
    .await
    .unwrap();
    let (_, page) = app.get_text(&format!("/users/end-users/{id}")).await;
    assert!(page.contains("Not available yet"), "{page}");
    presence::publish(
        pool,
        &[publication(
            "alice",
            CalendarPresence::InAMeeting,
            1_800_000_000,
        )],
        1_800_000_005,
    )
    .await
    .unwrap();
    let (_, page) = app.get_text(&format!("/users/end-users/{id}")).await;
    assert!(
        page.contains("In a meeting until 2027-01-15 08:30 UTC"),
        "{page}"
    );

    let alice = signed_in_alice(&app).await;
    let page = alice
        .get(app.url("/user-options"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("Calendar presence: In a meeting"), "{page}");
}
