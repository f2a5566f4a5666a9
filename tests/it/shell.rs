//! The console shell: headers, menus without dead links, the restart banner,
//! health, and clear pages for bad input (SY-1, SV-3 shell).

use crate::support::{TestApp, location};
use presence_gateway::store;
use presence_gateway::store::changes::Restart;

fn hrefs(html: &str) -> Vec<String> {
    html.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    for path in [
        "/login",
        "/",
        "/healthz",
        "/no-such-page",
        "/static/app.css",
    ] {
        let response = app.get(path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert!(csp.contains("default-src 'self'"), "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        let referrer = headers["referrer-policy"].to_str().unwrap();
        assert!(!referrer.is_empty() && referrer != "no-referrer", "{path}");
    }
}

#[tokio::test]
async fn menus_link_only_to_pages_that_exist() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (_, home) = app.get_text("/").await;
    assert!(home.contains("presence-gateway"), "product name");
    assert!(home.contains("Signed in as"));
    assert!(home.contains(">System<"));
    assert!(home.contains("Cluster Nodes"));
    let mut checked = 0;
    for page in ["/", "/system/nodes", "/account/password"] {
        let (status, html) = app.get_text(page).await;
        assert_eq!(status, 200, "{page}");
        for href in hrefs(&html) {
            let status = app.get(&href).await.status().as_u16();
            assert_eq!(
                status, 200,
                "{page} links to {href}, which answers {status}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "links were found and followed ({checked})");
}

#[tokio::test]
async fn cluster_nodes_lists_this_node() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (status, body) = app.get_text("/system/nodes").await;
    assert_eq!(status, 200);
    assert!(body.contains("test-node"));
    assert!(body.contains("this node"));
}

#[tokio::test]
async fn restart_banner_lists_pending_changes_until_the_engine_catches_up() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let (_, body) = app.get_text("/").await;
    assert!(!body.contains("Presence Engine restart needed"));

    let pool = &app.state.pool;
    let mut tx = store::begin_write(pool).await.unwrap();
    let now = app.state.now();
    let first = store::changes::record(
        &mut tx,
        "Added gateway exch1",
        "admin",
        Restart::Required,
        now,
    )
    .await
    .unwrap();
    let second = store::changes::record(
        &mut tx,
        "EWS Status Frequency 30",
        "ops",
        Restart::Recommended,
        now,
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(second, first + 1);

    for page in ["/", "/system/nodes", "/account/password"] {
        let (_, body) = app.get_text(page).await;
        assert!(body.contains("Presence Engine restart needed"), "{page}");
        assert!(body.contains("Added gateway exch1"));
        assert!(body.contains("by admin"));
        assert!(body.contains("restart required"));
        assert!(body.contains("EWS Status Frequency 30"));
        assert!(body.contains("restart recommended"));
        assert!(body.contains("test-node"));
    }
    let (_, home) = app.get_text("/").await;
    assert!(
        home.contains(&format!("<dd>{second}</dd>")),
        "generation shown"
    );

    // A deactivated node is left out.
    sqlx::query("UPDATE nodes SET activated = 0")
        .execute(pool)
        .await
        .unwrap();
    assert!(!app.get_text("/").await.1.contains("restart needed"));
    sqlx::query("UPDATE nodes SET activated = 1")
        .execute(pool)
        .await
        .unwrap();
    // The engine starting on the newest generation clears it.
    sqlx::query("UPDATE nodes SET engine_generation = $1")
        .bind(second)
        .execute(pool)
        .await
        .unwrap();
    assert!(!app.get_text("/").await.1.contains("restart needed"));
}

#[tokio::test]
async fn a_long_run_of_changes_is_counted_and_the_newest_are_listed() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let mut tx = store::begin_write(&app.state.pool).await.unwrap();
    for i in 1..=12 {
        let summary = format!("Change number {i:02}");
        store::changes::record(&mut tx, &summary, "admin", Restart::Required, 0)
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    let (_, body) = app.get_text("/").await;
    assert!(body.contains("These 12 changes take effect"));
    for i in 8..=12 {
        assert!(
            body.contains(&format!("Change number {i:02}")),
            "newest {i}"
        );
    }
    assert!(
        !body.contains("Change number 07"),
        "older ones are counted, not listed"
    );
    assert!(body.contains("and 7 earlier changes"));
    assert!(body.contains(r#"<a href="/system/audit-log">Audit Log</a>"#));
}

#[tokio::test]
async fn end_users_never_see_the_restart_banner() {
    let app = TestApp::spawn().await;
    let mut tx = store::begin_write(&app.state.pool).await.unwrap();
    store::changes::record(&mut tx, "Added gateway", "admin", Restart::Required, 0)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    app.create_end_user("erin", "ember-lantern-pw").await;
    app.sign_in("erin", "ember-lantern-pw").await;
    let (status, body) = app.get_text("/user-options").await;
    assert_eq!(status, 200);
    assert!(!body.contains("restart needed"));
}

#[tokio::test]
async fn healthz_answers_with_the_database() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_text("/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    app.state.pool.close().await;
    let (status, _) = app.get_text("/healthz").await;
    assert_eq!(status, 503);
}

#[tokio::test]
async fn bad_requests_get_clear_pages() {
    let app = TestApp::spawn().await;
    let (status, body) = app.get_text("/no/such/page").await;
    assert_eq!(status, 404);
    assert!(body.contains("There is no page at this address."));

    // Over the body limit.
    let big = "x".repeat(2 * 1024 * 1024);
    let response = app
        .client
        .post(app.url("/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(format!("user_id=admin&password={big}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("larger than this page accepts")
    );

    // Not a form at all.
    let response = app
        .client
        .post(app.url("/login"))
        .header("Content-Type", "text/plain")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 415);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("format this page does not accept")
    );

    // A form whose fields cannot be read.
    let response = app
        .client
        .post(app.url("/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("user_id=a&user_id=b&password=%")
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    assert!((400..500).contains(&status), "{status}");
    let body = response.text().await.unwrap();
    assert!(body.contains("<h1>"), "an HTML page: {body}");

    // A wrong method.
    let response = app.client.delete(app.url("/login")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("does not accept that kind of request")
    );

    // Anonymous access to a console page is a redirect, never a blank page.
    let response = app.get("/system/nodes").await;
    assert_eq!(response.status().as_u16(), 303);
    assert!(location(&response).starts_with("/login"));
}
