//! Sign-in, sessions, throttling, roles and the password change (SY-1, SY-3).

use crate::support::{ADMIN, ADMIN_PASSWORD, TestApp, location};
use presence_gateway::secrets::INITIAL_ADMIN_PASSWORD_FILE;
use std::os::unix::fs::PermissionsExt;

fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("pg_session="))
        .map(str::to_owned)
}

fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .unwrap_or_default()
        .trim_start_matches("pg_session=")
        .to_owned()
}

#[tokio::test]
async fn admin_from_environment_signs_in_and_lands_on_console() {
    let app = TestApp::spawn().await;
    let response = app.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/");
    let cookie = session_cookie(&response).expect("session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    // Plain HTTP on loopback: a Secure cookie would never come back.
    assert!(!cookie.contains("Secure"), "{cookie}");
    let (status, body) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(body.contains("Presence Gateway Administration"));
    assert!(body.contains("Signed in as"));
    // No generated password when one was given.
    assert!(!app.dir.path().join(INITIAL_ADMIN_PASSWORD_FILE).exists());
}

#[tokio::test]
async fn generated_password_must_be_changed_at_first_sign_in() {
    let app = TestApp::spawn_with(None).await;
    let file = app.dir.path().join(INITIAL_ADMIN_PASSWORD_FILE);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let generated = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert_eq!(generated.len(), 20);

    let response = app.sign_in(ADMIN, &generated).await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/account/password");
    // Every console page insists on the change first.
    let response = app.get("/system/nodes").await;
    assert_eq!(location(&response), "/account/password");
    let (_, body) = app.get_text("/account/password").await;
    assert!(body.contains("You must choose a new password"));

    // Refusals are shown beside the fields, and nothing changes.
    let response = app
        .post_form(
            "/account/password",
            &[("current", "wrong"), ("new", "short"), ("confirm", "short")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 422);
    let body = response.text().await.unwrap();
    assert!(body.contains("The current password is incorrect."));
    assert!(body.contains("Use at least 12 characters."));
    let response = app
        .post_form(
            "/account/password",
            &[
                ("current", &generated),
                ("new", "brand-new-pass"),
                ("confirm", "brand-new-pasz"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 422);
    assert!(response.text().await.unwrap().contains("do not match"));

    let response = app
        .post_form(
            "/account/password",
            &[
                ("current", &generated),
                ("new", "brand-new-pass"),
                ("confirm", "brand-new-pass"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/");
    let (status, body) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(
        body.contains("Your password has been changed."),
        "flash shown"
    );
    // The generated password is gone from disk and no longer works.
    assert!(!file.exists());
    let fresh = crate::support::client();
    let response = fresh
        .post(app.url("/login"))
        .form(&[("user_id", ADMIN), ("password", generated.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let response = fresh
        .post(app.url("/login"))
        .form(&[("user_id", ADMIN), ("password", "brand-new-pass")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/");
}

#[tokio::test]
async fn wrong_password_and_unknown_user_get_the_same_answer() {
    let app = TestApp::spawn().await;
    let wrong = app.sign_in(ADMIN, "not-the-password").await;
    assert_eq!(wrong.status().as_u16(), 401);
    let wrong = wrong.text().await.unwrap();
    let unknown = app.sign_in("nobody", "not-the-password").await;
    assert_eq!(unknown.status().as_u16(), 401);
    let unknown = unknown.text().await.unwrap();
    assert!(wrong.contains("The User ID or password is incorrect."));
    // Same page apart from the echoed user ID.
    assert_eq!(
        wrong.replace("value=\"admin\"", ""),
        unknown.replace("value=\"nobody\"", "")
    );
    // The typed user ID is kept, the password never echoed.
    assert!(!wrong.contains("not-the-password"));
    let empty = app.sign_in("", "").await;
    assert_eq!(empty.status().as_u16(), 422);
    assert!(
        empty
            .text()
            .await
            .unwrap()
            .contains("Enter your User ID and password.")
    );
}

#[tokio::test]
async fn five_failures_lock_the_user_id_for_fifteen_minutes() {
    let app = TestApp::spawn().await;
    for attempt in 1..=4 {
        let response = app.sign_in(ADMIN, "guess").await;
        assert_eq!(response.status().as_u16(), 401, "attempt {attempt}");
    }
    let fifth = app.sign_in("ADMIN ", "guess").await; // same ID, other spelling
    assert_eq!(fifth.status().as_u16(), 429);
    assert!(
        fifth
            .text()
            .await
            .unwrap()
            .contains("refused for 15 minutes")
    );
    // Even the right password is refused now.
    let response = app.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(response.status().as_u16(), 429);
    let body = response.text().await.unwrap();
    assert!(body.contains("Too many failed sign-ins for this User ID"));
    assert!(body.contains("Try again in 15 minutes."), "{body}");
    // Another user ID is not affected.
    app.create_end_user("erin", "ember-lantern-pw").await;
    let response = app.sign_in("erin", "ember-lantern-pw").await;
    assert_eq!(location(&response), "/user-options");

    app.clock.advance(time::Duration::minutes(14));
    let response = app.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(response.status().as_u16(), 429);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Try again in 1 minute.")
    );
    app.clock.advance(time::Duration::minutes(1));
    let response = app.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(response.status().as_u16(), 303);
}

/// Guesses sent in parallel are counted before any is verified: of 49 at
/// once (the right password among them), at most five are judged, and a
/// success does not clear a lockout that failures judged beside it set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_guesses_are_counted_before_they_are_verified() {
    let app = TestApp::spawn().await;
    let mut guesses = tokio::task::JoinSet::new();
    for n in 0..49 {
        let client = app.other_client();
        let url = app.url("/login");
        let origin = app.base.clone();
        let password = if n == 48 {
            ADMIN_PASSWORD.to_owned()
        } else {
            format!("guess-{n}")
        };
        guesses.spawn(async move {
            let response = client
                .post(url)
                .header("Origin", origin)
                .header("Sec-Fetch-Site", "same-origin")
                .form(&[("user_id", ADMIN), ("password", &password), ("next", "")])
                .send()
                .await
                .expect("sign-in");
            response.status().as_u16()
        });
    }
    let mut answers = std::collections::BTreeMap::<u16, usize>::new();
    while let Some(status) = guesses.join_next().await {
        *answers.entry(status.expect("task")).or_default() += 1;
    }
    let judged = answers.get(&401).copied().unwrap_or(0) + answers.get(&303).copied().unwrap_or(0);
    assert!(
        judged <= 5,
        "more than five guesses were judged: {answers:?}"
    );
    assert!(answers.get(&429).copied().unwrap_or(0) >= 44, "{answers:?}");
    // Five wrong guesses judged: locked, even for the right password.
    if answers.get(&401) == Some(&5) {
        let response = app.sign_in(ADMIN, ADMIN_PASSWORD).await;
        assert_eq!(response.status().as_u16(), 429, "{answers:?}");
    }
}

/// A success judged while failures beside it locked the ID is refused, and
/// the lockout stays.
#[tokio::test]
async fn a_success_never_clears_a_lockout_set_beside_it() {
    use presence_gateway::store::throttle::{self, Admission};
    let app = TestApp::spawn().await;
    let pool = &app.state.pool;
    let now = app.state.now();
    let admit = |key: &'static str| async move {
        match throttle::admit(pool, key, now).await.unwrap() {
            Admission::Admitted(attempt) => attempt,
            Admission::Locked(until) => panic!("locked until {until}"),
        }
    };
    // Four failures, then two attempts in flight: the right one and a fifth
    // wrong one. The sixth cannot even start.
    for _ in 0..4 {
        let attempt = admit("mallory").await;
        assert_eq!(
            throttle::failed(pool, attempt, "mallory", now)
                .await
                .unwrap(),
            None
        );
    }
    let right = admit("mallory").await;
    assert!(matches!(
        throttle::admit(pool, "mallory", now).await.unwrap(),
        Admission::Locked(_)
    ));
    // The right one succeeds: its failures are forgotten.
    assert_eq!(
        throttle::succeeded(pool, right, "mallory", now)
            .await
            .unwrap(),
        Ok(())
    );
    // Now with a lockout set while a right password is being verified.
    let right = admit("trudy").await;
    for _ in 0..4 {
        let attempt = admit("trudy").await;
        assert_eq!(
            throttle::failed(pool, attempt, "trudy", now).await.unwrap(),
            None
        );
    }
    // The allowance is full (four failures and one pending).
    assert!(matches!(
        throttle::admit(pool, "trudy", now).await.unwrap(),
        Admission::Locked(_)
    ));
    // An administrator's lockout (or one from another node) lands meanwhile.
    sqlx::query("INSERT INTO login_lockouts (user_key, until) VALUES ('trudy', $1)")
        .bind(now + 900)
        .execute(pool)
        .await
        .unwrap();
    assert_eq!(
        throttle::succeeded(pool, right, "trudy", now)
            .await
            .unwrap(),
        Err(now + 900)
    );
    assert_eq!(
        throttle::admit(pool, "trudy", now + 1).await.unwrap(),
        Admission::Locked(now + 900)
    );
}

#[tokio::test]
async fn failures_spread_beyond_fifteen_minutes_do_not_lock() {
    let app = TestApp::spawn().await;
    for _ in 0..4 {
        assert_eq!(app.sign_in("ghost", "guess").await.status().as_u16(), 401);
    }
    app.clock.advance(time::Duration::minutes(16));
    for _ in 0..4 {
        assert_eq!(app.sign_in("ghost", "guess").await.status().as_u16(), 401);
    }
    // The fifth within the window locks an ID that does not even exist.
    assert_eq!(app.sign_in("ghost", "guess").await.status().as_u16(), 429);
}

#[tokio::test]
async fn sign_in_follows_next_only_on_this_site() {
    let app = TestApp::spawn().await;
    let response = app.get("/system/nodes").await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/login?next=%2Fsystem%2Fnodes");
    let (_, body) = app.get_text("/login?next=%2Fsystem%2Fnodes").await;
    assert!(body.contains("value=\"/system/nodes\""));

    let response = app
        .post_form(
            "/login",
            &[
                ("user_id", ADMIN),
                ("password", ADMIN_PASSWORD),
                ("next", "/system/nodes"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/system/nodes");

    for evil in [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
    ] {
        let response = app
            .post_form(
                "/login",
                &[
                    ("user_id", ADMIN),
                    ("password", ADMIN_PASSWORD),
                    ("next", evil),
                ],
            )
            .await;
        assert_eq!(location(&response), "/", "next={evil}");
    }
}

#[tokio::test]
async fn session_id_is_renewed_at_sign_in_and_dies_at_sign_out() {
    let app = TestApp::spawn().await;
    let first = cookie_value(&session_cookie(&app.sign_in(ADMIN, ADMIN_PASSWORD).await).unwrap());
    let second = cookie_value(&session_cookie(&app.sign_in(ADMIN, ADMIN_PASSWORD).await).unwrap());
    assert_ne!(first, second, "a new id at every sign-in");
    // The earlier id no longer opens anything.
    let stale = crate::support::bare_client();
    let response = stale
        .get(app.url("/"))
        .header("Cookie", format!("pg_session={first}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert!(location(&response).starts_with("/login"));

    // Sign-out is a POST; a GET does not sign out.
    let response = app.get("/logout").await;
    assert_eq!(response.status().as_u16(), 405);
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    let response = app.post_form("/logout", &[]).await;
    assert_eq!(location(&response), "/login?signed_out=1");
    let (_, body) = app.get_text("/login?signed_out=1").await;
    assert!(body.contains("You have signed out."));
    let response = stale
        .get(app.url("/"))
        .header("Cookie", format!("pg_session={second}"))
        .send()
        .await
        .unwrap();
    assert!(location(&response).starts_with("/login"));
}

#[tokio::test]
async fn expired_session_sends_to_sign_in_with_a_message() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    // Active within the idle limit: still signed in.
    app.clock.advance(time::Duration::minutes(29));
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    app.clock.advance(time::Duration::minutes(29));
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    // Idle for more than 30 minutes: ended.
    app.clock.advance(time::Duration::minutes(31));
    let response = app.get("/system/nodes").await;
    assert_eq!(response.status().as_u16(), 303);
    let target = location(&response);
    assert_eq!(target, "/login?next=%2Fsystem%2Fnodes&ended=1");
    let (_, body) = app.get_text(&target).await;
    assert!(body.contains("Your session has ended. Sign in again to continue."));
}

/// A request for `/` with `cookie` on `app`, from a browser with no jar.
async fn get_with_cookie(app: &TestApp, cookie: &str) -> reqwest::Response {
    crate::support::bare_client()
        .get(app.url("/"))
        .header("Cookie", format!("pg_session={cookie}"))
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn sign_out_on_one_node_ends_the_session_on_every_node() {
    let a = TestApp::spawn().await;
    let b = a.second_node("node-b").await;
    let signed_in = a.sign_in(ADMIN, ADMIN_PASSWORD).await;
    let cookie = cookie_value(&session_cookie(&signed_in).expect("session cookie"));
    // Node B reads the session once, so its in-memory cache holds it.
    assert_eq!(get_with_cookie(&b, &cookie).await.status().as_u16(), 200);
    // What a request on B still in flight during the sign-out writes back
    // when it ends: the session record as B held it.
    sqlx::query("CREATE TABLE held AS SELECT * FROM tower_sessions")
        .execute(&a.state.pool)
        .await
        .expect("hold the session record");

    let response = a.post_form("/logout", &[]).await;
    assert_eq!(location(&response), "/login?signed_out=1");
    for sql in [
        "DELETE FROM tower_sessions WHERE id IN (SELECT id FROM held)",
        "INSERT INTO tower_sessions SELECT * FROM held",
    ] {
        sqlx::query(sql)
            .execute(&a.state.pool)
            .await
            .expect("write the record back");
    }

    // Refused on B at once, and a later request on B (stale enough to
    // re-save the session) brings nothing back, on A or on B.
    for app in [&b, &a] {
        a.clock.advance(time::Duration::minutes(2));
        let response = get_with_cookie(app, &cookie).await;
        assert_eq!(response.status().as_u16(), 303);
        assert_eq!(location(&response), "/login?ended=1");
    }
    a.clock.advance(time::Duration::minutes(2));
    assert_eq!(get_with_cookie(&b, &cookie).await.status().as_u16(), 303);
    assert_eq!(get_with_cookie(&a, &cookie).await.status().as_u16(), 303);
}

#[tokio::test]
async fn a_busy_session_still_ends_after_twelve_hours() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    // A page every 20 minutes for 11 hours 40 minutes: never idle.
    busy(&app, 35).await;
    // Twelve hours after sign-in the session ends, however busy.
    app.clock.advance(time::Duration::minutes(20));
    let response = app.get("/system/nodes").await;
    assert_eq!(response.status().as_u16(), 303);
    let target = location(&response);
    assert_eq!(target, "/login?next=%2Fsystem%2Fnodes&ended=1");
    let (_, body) = app.get_text(&target).await;
    assert!(body.contains("Your session has ended. Sign in again to continue."));
}

#[tokio::test]
async fn idle_session_is_resaved_at_most_once_a_minute() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let data = || async {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT data FROM tower_sessions")
            .fetch_one(&app.state.pool)
            .await
            .unwrap()
    };
    let before = data().await;
    app.clock.advance(time::Duration::seconds(30));
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    assert_eq!(data().await, before, "no write within the minute");
    app.clock.advance(time::Duration::seconds(31));
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    assert_ne!(
        data().await,
        before,
        "re-saved once stale, sliding the expiry"
    );
}

#[tokio::test]
async fn password_change_ends_the_other_sessions() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let other = app.other_client();
    let response = other
        .post(app.url("/login"))
        .form(&[("user_id", ADMIN), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/");
    assert_eq!(
        other
            .get(app.url("/"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    let response = app
        .post_form(
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("new", "second-pass-99"),
                ("confirm", "second-pass-99"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    // This browser stays signed in; the other one is signed out.
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    let response = other.get(app.url("/")).send().await.unwrap();
    assert_eq!(location(&response), "/login?ended=1");
}

#[tokio::test]
async fn roles_keep_to_their_pages() {
    let app = TestApp::spawn().await;
    // Anonymous: console and User Options send to sign-in, the API answers 401 JSON.
    assert_eq!(location(&app.get("/").await), "/login");
    assert_eq!(
        location(&app.get("/user-options").await),
        "/login?next=%2Fuser-options"
    );
    for path in ["/api/v1/session", "/api/v1/presence/erin", "/api/"] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 401, "{path}");
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let json: serde_json::Value = response.json().await.unwrap();
        assert!(json["error"].as_str().unwrap().contains("Sign in"));
    }

    // An end user lands on User Options and is refused the console.
    app.create_end_user("erin", "ember-lantern-pw").await;
    let response = app.sign_in("erin", "ember-lantern-pw").await;
    assert_eq!(location(&response), "/user-options");
    let (status, body) = app.get_text("/user-options").await;
    assert_eq!(status, 200);
    assert!(body.contains("User Options"));
    assert!(
        !body.contains("/system/nodes"),
        "no console links for end users"
    );
    // The site's root sends them to their own page; the console refuses.
    let home = app.get("/").await;
    assert_eq!(home.status().as_u16(), 303);
    assert_eq!(location(&home), "/user-options");
    for path in ["/system/nodes", "/presence/gateways"] {
        let (status, body) = app.get_text(path).await;
        assert_eq!(status, 403, "{path}");
        assert!(body.contains("Access denied"));
        assert!(body.contains("The administration console is for administrators"));
    }
    let json: serde_json::Value = app.get("/api/v1/session").await.json().await.unwrap();
    assert_eq!(json["user_id"], "erin");
    assert_eq!(json["role"], "end_user");

    // An administrator is refused User Options.
    app.sign_in_admin().await;
    let (status, body) = app.get_text("/user-options").await;
    assert_eq!(status, 403);
    assert!(body.contains("User Options are for end users"));
}

#[tokio::test]
async fn cross_site_posts_are_refused_and_change_nothing() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let change = [
        ("current", ADMIN_PASSWORD),
        ("new", "hijacked-pass"),
        ("confirm", "hijacked-pass"),
    ];
    let attacks = [
        ("Origin", "http://evil.example"),
        ("Sec-Fetch-Site", "cross-site"),
    ];
    for (header, value) in attacks {
        let response = app
            .client
            .post(app.url("/account/password"))
            .header(header, value)
            .form(&change)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{header}: {value}");
        let body = response.text().await.unwrap();
        assert!(body.contains("came from another site and was refused"));
        let response = app
            .client
            .post(app.url("/logout"))
            .header(header, value)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 403);
    }
    // Still signed in, password unchanged.
    assert_eq!(app.get("/").await.status().as_u16(), 200);
    let fresh = crate::support::client();
    let response = fresh
        .post(app.url("/login"))
        .form(&[("user_id", ADMIN), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/");
    // A cross-site sign-in attempt is refused too (login CSRF).
    let response = fresh
        .post(app.url("/login"))
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("user_id", ADMIN), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
}

/// SY-5: nothing behind a session is kept by a cache (pages and API answers
/// say `no-store`), static files stay cacheable, and plain loopback HTTP
/// carries no HSTS (HTTPS is in process.rs).
#[tokio::test]
async fn signed_in_pages_and_api_answers_say_no_store_and_plain_http_has_no_hsts() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let cache_control = |response: &reqwest::Response| {
        response
            .headers()
            .get("cache-control")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    for path in ["/", "/presence/gateways", "/system/certificates", "/bulk"] {
        let response = app.get(path).await;
        assert_eq!(response.status().as_u16(), 200, "{path}");
        assert_eq!(cache_control(&response), "no-store", "{path}");
        assert!(
            response
                .headers()
                .get("strict-transport-security")
                .is_none(),
            "{path}: no HSTS over plain HTTP"
        );
    }
    let response = app.get("/api/v1/presence/alice").await;
    // No such user: an API answer all the same, and JSON like every one.
    assert_eq!(response.status().as_u16(), 404);
    assert_eq!(cache_control(&response), "no-store", "an API answer");
    let response = app.get(presence_gateway::web::paths::STATIC_CSS).await;
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(cache_control(&response), "public, max-age=3600");
}

/// ASVS 2.1: the change-password form names the rule a new password fails,
/// beside the New Password field.
#[tokio::test]
async fn account_password_form_names_the_rule_that_failed() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let cases = [
        ("eleven-char", "Use at least 12 characters."),
        (
            "QwErTy123456",
            "This password is one of the 10,000 most common; choose another.",
        ),
        (
            "my-ADMIN-is-long",
            "The password must not contain the user ID.",
        ),
    ];
    for (new, message) in cases {
        let (status, body) = app
            .post_text(
                "/account/password",
                &[("current", ADMIN_PASSWORD), ("new", new), ("confirm", new)],
            )
            .await;
        assert_eq!(status, 422, "{new}");
        assert_eq!(
            crate::support::field_error(&body, "new").as_deref(),
            Some(message),
            "{new}"
        );
    }
    // Spaces are allowed, and 128 characters are accepted.
    let long = format!("correct horse battery staple {}", "z".repeat(99));
    assert_eq!(long.chars().count(), 128);
    let response = app
        .post_form(
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("new", &long),
                ("confirm", &long),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
}

async fn change_with_current(app: &TestApp, current: &str) -> (u16, String) {
    app.post_text(
        "/account/password",
        &[
            ("current", current),
            ("new", "another-long-secret"),
            ("confirm", "another-long-secret"),
        ],
    )
    .await
}

/// ASVS 2.1: wrong current passwords on the change-password form are
/// guesses like failed sign-ins: five within 15 minutes lock the ID, here
/// and at sign-in.
#[tokio::test]
async fn wrong_current_passwords_lock_the_user_id_like_sign_in() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    // One failed sign-in plus four wrong current passwords: the same count.
    assert_eq!(
        app.other_client()
            .post(app.url("/login"))
            .form(&[("user_id", ADMIN), ("password", "guess")])
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        401
    );
    for n in 1..=3 {
        let (status, body) = change_with_current(&app, "wrong-current-pass").await;
        assert_eq!(status, 422, "attempt {n}");
        assert!(body.contains("The current password is incorrect."), "{n}");
    }
    let (status, body) = change_with_current(&app, "wrong-current-pass").await;
    assert_eq!(status, 429);
    assert!(
        crate::support::field_error(&body, "current")
            .unwrap_or_default()
            .contains("Too many failed sign-ins for this User ID"),
        "{body}"
    );
    // Locked: even the right current password is refused, and nothing changes.
    let (status, body) = change_with_current(&app, ADMIN_PASSWORD).await;
    assert_eq!(status, 429);
    assert!(body.contains("Try again in 15 minutes."), "{body}");
    // Sign-in is locked too, from another browser, even with the right password.
    let response = app
        .other_client()
        .post(app.url("/login"))
        .header("Origin", &app.base)
        .form(&[("user_id", ADMIN), ("password", ADMIN_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 429);
    app.clock.advance(time::Duration::minutes(15));
    let response = app.sign_in(ADMIN, ADMIN_PASSWORD).await;
    assert_eq!(
        response.status().as_u16(),
        303,
        "the old password still works"
    );
}

/// The first administrator's password from the environment follows the same
/// rule: a weak one stops the start with the rule's message.
#[tokio::test]
async fn first_admin_password_from_the_environment_follows_the_rule() {
    for (given, message) in [
        ("short-pw", "Use at least 12 characters."),
        ("LeaveMeAlone", "one of the 10,000 most common"),
        ("the-Admin-password", "must not contain the user ID"),
    ] {
        let data = crate::support::private_tempdir().unwrap();
        let settings = crate::support::test_settings(data.path(), Some(given));
        let clock = std::sync::Arc::new(presence_gateway::clock::ManualClock::new(
            time::OffsetDateTime::now_utc(),
        ));
        let error = match presence_gateway::cmd::serve::prepare(settings, clock).await {
            Ok(_) => panic!("{given} accepted"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains("PRESENCE_GATEWAY_ADMIN_PASSWORD"), "{error}");
        assert!(error.contains(message), "{given}: {error}");
    }
}

/// No stored User ID is longer than 64 characters: a longer one is answered
/// as a wrong password before it is counted, logged or echoed, so large IDs
/// cannot grow the database (ASVS 11.1).
#[tokio::test]
async fn an_over_long_user_id_is_refused_before_it_is_counted() {
    let app = TestApp::spawn().await;
    // As near a megabyte as the request body limit lets through.
    let huge = "a".repeat(presence_gateway::web::BODY_LIMIT - 100);
    let response = app.sign_in(&huge, "guess").await;
    assert_eq!(response.status().as_u16(), 401);
    let body = response.text().await.unwrap();
    assert!(body.contains("The User ID or password is incorrect."));
    assert!(body.len() < 100_000, "the ID is not echoed: {}", body.len());
    assert_eq!(app.count("SELECT COUNT(*) FROM login_failures").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM login_lockouts").await, 0);

    // The limit is the User ID's own: 65 characters are refused uncounted,
    // 64 are counted like any other ID.
    let response = app.sign_in(&"b".repeat(65), "guess").await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM login_failures").await, 0);
    let response = app.sign_in(&"c".repeat(64), "guess").await;
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(app.count("SELECT COUNT(*) FROM login_failures").await, 1);
}

/// Failures older than the window are purged for every ID when a new one is
/// recorded, so IDs tried once do not stay in the database for ever.
#[tokio::test]
async fn failures_older_than_the_window_are_purged_for_every_id() {
    let app = TestApp::spawn().await;
    for id in ["once-a", "once-b"] {
        assert_eq!(app.sign_in(id, "guess").await.status().as_u16(), 401);
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM login_failures").await, 2);
    app.clock.advance(time::Duration::minutes(16));
    assert_eq!(app.sign_in("later", "guess").await.status().as_u16(), 401);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM login_failures WHERE user_key LIKE 'once-%'")
            .await,
        0
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM login_failures").await, 1);
}

/// A page every 20 minutes, `times` times: never idle.
async fn busy(app: &TestApp, times: usize) {
    for _ in 0..times {
        app.clock.advance(time::Duration::minutes(20));
        assert_eq!(app.get("/").await.status().as_u16(), 200);
    }
}

#[tokio::test]
async fn changing_the_password_does_not_extend_the_session() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    busy(&app, 18).await;
    let response = app
        .post_form(
            "/account/password",
            &[
                ("current", ADMIN_PASSWORD),
                ("new", "second-pass-99"),
                ("confirm", "second-pass-99"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    busy(&app, 17).await;
    // Twelve hours after the sign-in, not after the password change.
    app.clock.advance(time::Duration::minutes(20));
    assert_eq!(location(&app.get("/").await), "/login?ended=1");
}
