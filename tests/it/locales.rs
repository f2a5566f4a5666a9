//! System > Locale Installation over a real port (LO-1): the cluster view,
//! install and uninstall per node with a restart record, and the rules.

use crate::support::{TestApp, location};
use crate::user_options::{ERIN, ERIN_PASSWORD, get_text, post, signed_in};

const PAGE: &str = "/system/locales";

/// The table row of one locale, as HTML.
fn row(body: &str, tag: &str) -> String {
    body.split(&format!(r#"<tr id="locale-{tag}">"#))
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for {tag}"))
        .to_owned()
}

/// The cells of a row: one per node, then "Missing on", then Users.
fn cells(row: &str) -> Vec<String> {
    row.split("<td")
        .skip(1)
        .map(|cell| {
            let inner = cell.split_once('>').map_or("", |(_, rest)| rest);
            let inner = inner.split("</td>").next().unwrap_or_default();
            strip_tags(inner)
        })
        .collect()
}

fn strip_tags(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

async fn change(app: &TestApp, node: &str, tag: &str, action: &str) -> (u16, String) {
    let response = app
        .post_form(PAGE, &[("node", node), ("locale", tag), ("action", action)])
        .await;
    let status = response.status().as_u16();
    if status == 303 {
        assert_eq!(location(&response), PAGE);
    }
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn the_cluster_view_shows_which_node_lacks_a_locale() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    app.add_node("node-b").await;
    app.create_end_user(ERIN, ERIN_PASSWORD).await;
    let erin = signed_in(&app, ERIN, ERIN_PASSWORD).await;

    let (status, body) = app.get_text(PAGE).await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"<th scope="col">node-b</th>"#));
    assert!(body.contains(r#"<th scope="col">test-node</th>"#));
    // English is built in: installed everywhere, the only user's locale.
    assert_eq!(
        cells(&row(&body, "en-US")),
        ["Installed", "Installed", "none", "2"]
    );
    assert_eq!(
        cells(&row(&body, "de-DE")),
        ["Not installed", "Not installed", "node-b, test-node", "0"]
    );
    assert!(!body.contains("restart needed"));

    let (status, _) = change(&app, "test-node", "de-DE", "install").await;
    assert_eq!(status, 303);
    let (_, body) = app.get_text(PAGE).await;
    assert!(body.contains(
        "German (Deutsch) installed on test-node. The Presence Engine on test-node must restart"
    ));
    // Columns are in node order: node-b, then test-node.
    assert_eq!(
        cells(&row(&body, "de-DE")),
        ["Not installed", "Installed", "node-b", "0"]
    );

    // The restart banner, for administrators, on every console page.
    let (_, home) = app.get_text("/").await;
    assert!(home.contains("Presence Engine restart needed"), "{home}");
    assert!(home.contains("Locale German (Deutsch) installed on test-node"));
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM config_changes WHERE restart = 'required'
               AND summary = 'Locale German (Deutsch) installed on test-node' AND actor = 'admin'"
        )
        .await,
        1
    );
    assert_eq!(
        app.count(
            "SELECT COUNT(*) FROM audit_log
             WHERE action = 'locale installed' AND target = 'de-DE on test-node'"
        )
        .await,
        1
    );

    // Not yet choosable: node-b lacks it.
    let (_, page) = get_text(&app, &erin, "/user-options").await;
    assert!(!page.contains(r#"<option value="de-DE""#));

    let (status, _) = change(&app, "node-b", "de-DE", "install").await;
    assert_eq!(status, 303);
    let (_, body) = app.get_text(PAGE).await;
    assert_eq!(
        cells(&row(&body, "de-DE")),
        ["Installed", "Installed", "none", "0"]
    );
    let (_, page) = get_text(&app, &erin, "/user-options").await;
    assert!(page.contains(r#"<option value="de-DE">"#));
    let response = post(&app, &erin, "/user-options/locale", &[("locale", "de-DE")]).await;
    assert_eq!(response.status().as_u16(), 303);

    // A locale a user has stays installed on every node.
    let (status, body) = change(&app, "node-b", "de-DE", "uninstall").await;
    assert_eq!(status, 422);
    assert!(
        body.contains(
            "German (Deutsch) is the User Locale of 1 user: a user locale must stay installed \
             on every node."
        ),
        "{body}"
    );
    let (_, body) = app.get_text(PAGE).await;
    assert_eq!(
        cells(&row(&body, "de-DE")),
        ["Installed", "Installed", "none", "1"]
    );

    // Once nobody has it, it can go, with its own restart record.
    let response = post(&app, &erin, "/user-options/locale", &[("locale", "en-US")]).await;
    assert_eq!(response.status().as_u16(), 303);
    let changes = app.count("SELECT COUNT(*) FROM config_changes").await;
    let (status, _) = change(&app, "node-b", "de-DE", "uninstall").await;
    assert_eq!(status, 303);
    assert_eq!(
        app.count("SELECT COUNT(*) FROM config_changes").await,
        changes + 1
    );
    let (_, home) = app.get_text("/").await;
    assert!(home.contains("Locale German (Deutsch) uninstalled from node-b"));
    let (_, body) = app.get_text(PAGE).await;
    assert_eq!(
        cells(&row(&body, "de-DE")),
        ["Not installed", "Installed", "node-b", "0"]
    );
}

#[tokio::test]
async fn install_and_uninstall_refuse_what_makes_no_sense() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let before = app.count("SELECT COUNT(*) FROM config_changes").await;

    let (status, body) = change(&app, "test-node", "en-US", "install").await;
    assert_eq!(status, 422);
    assert!(body.contains("English (United States) is built in"));
    let (status, body) = change(&app, "test-node", "en-US", "uninstall").await;
    assert_eq!(status, 422);
    assert!(body.contains("is built in"));
    let (status, body) = change(&app, "no-such-node", "de-DE", "install").await;
    assert_eq!(status, 422);
    assert!(body.contains("No node named no-such-node is registered."));
    let (status, body) = change(&app, "test-node", "xx-XX", "install").await;
    assert_eq!(status, 422);
    assert!(body.contains("is not a locale this product knows"));
    let (status, body) = change(&app, "test-node", "de-DE", "").await;
    assert_eq!(status, 422);
    assert!(body.contains("Choose Install or Uninstall."));
    let (status, body) = change(&app, "", "de-DE", "install").await;
    assert_eq!(status, 422);
    assert!(body.contains("Choose a node."));
    let (status, body) = change(&app, "test-node", "de-DE", "uninstall").await;
    assert_eq!(status, 422);
    assert!(body.contains("German (Deutsch) is not installed on test-node."));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM config_changes").await,
        before
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM node_locales").await, 0);

    let (status, _) = change(&app, "test-node", "de-DE", "install").await;
    assert_eq!(status, 303);
    let (status, body) = change(&app, "test-node", "de-DE", "install").await;
    assert_eq!(status, 422);
    assert!(body.contains("German (Deutsch) is already installed on test-node."));
    assert_eq!(
        app.count("SELECT COUNT(*) FROM config_changes").await,
        before + 1
    );

    // Cross-site requests are refused; end users never see the page.
    let response = app
        .client
        .post(app.url(PAGE))
        .header("Origin", "http://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[
            ("node", "test-node"),
            ("locale", "fr-FR"),
            ("action", "install"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM node_locales").await, 1);
    app.create_end_user(ERIN, ERIN_PASSWORD).await;
    let erin = signed_in(&app, ERIN, ERIN_PASSWORD).await;
    let (status, _) = get_text(&app, &erin, PAGE).await;
    assert_eq!(status, 403);
    let response = post(
        &app,
        &erin,
        PAGE,
        &[
            ("node", "test-node"),
            ("locale", "fr-FR"),
            ("action", "install"),
        ],
    )
    .await;
    assert_eq!(response.status().as_u16(), 403);
    assert_eq!(app.count("SELECT COUNT(*) FROM node_locales").await, 1);
}

/// LO-3: the troubleshooter opens a WebDAV test mailbox's calendar under
/// the folder name of that mailbox's user's locale.
#[tokio::test]
async fn test_mailboxes_carry_their_users_locales() {
    let app = TestApp::spawn().await;
    app.sign_in_admin().await;
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "webdav"),
                ("description", "Legacy"),
                ("server", "10.0.0.9"),
                ("account_name", "CORP\\svc"),
                ("password", "exchange-pass"),
                ("confirm", "exchange-pass"),
                ("port", "443"),
                ("test_mailbox", "Hans@Example.com"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303, "{}", location(&response));
    let id = app.create_end_user("hans", "harbor-lantern-pw-1").await;
    sqlx::query("UPDATE users SET mailbox = 'hans@example.com', locale = 'de-DE' WHERE id = $1")
        .bind(id)
        .execute(&app.state.pool)
        .await
        .expect("mailbox");
    let locales = presence_gateway::store::users::test_mailbox_locales(&app.state.pool)
        .await
        .expect("locales");
    let tag = locales
        .get("hans@example.com")
        .expect("the test mailbox's user");
    assert_eq!(
        presence_gateway::exchange::webdav::calendar_folder(tag),
        "Kalender"
    );
}
