//! User Options over a real port (US-2, US-3, LO-2): the calendar switch,
//! refused while no gateway exists; the user locale, only one installed on
//! every node; the page in the user's language; and no way to reach another
//! user's options.

use crate::support::{ADMIN, ADMIN_PASSWORD, TestApp, location};

pub const ERIN: &str = "erin";
pub const ERIN_PASSWORD: &str = "ember-lantern-pw-1";

/// A browser of its own, signed in as `user`.
pub async fn signed_in(app: &TestApp, user: &str, password: &str) -> reqwest::Client {
    let client = app.other_client();
    let response = post(
        app,
        &client,
        "/login",
        &[("user_id", user), ("password", password), ("next", "")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 303, "sign-in as {user}");
    client
}

/// A same-origin form POST from `client`.
pub async fn post(
    app: &TestApp,
    client: &reqwest::Client,
    path: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    client
        .post(app.url(path))
        .header("Origin", &app.base)
        .header("Sec-Fetch-Site", "same-origin")
        .form(form)
        .send()
        .await
        .expect("POST")
}

pub async fn get_text(app: &TestApp, client: &reqwest::Client, path: &str) -> (u16, String) {
    let response = client.get(app.url(path)).send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Adds an EWS gateway through Presence > Gateways, as an administrator.
pub async fn add_gateway(app: &TestApp) {
    let admin = signed_in(app, ADMIN, ADMIN_PASSWORD).await;
    let response = post(
        app,
        &admin,
        "/presence/gateways/new",
        &[
            ("type", "ews"),
            ("description", "Exchange 1"),
            ("server", "exch1.example.com"),
            ("account_name", "svc-presence@example.com"),
            ("password", "Ews-Secret-Pa55!"),
            ("confirm", "Ews-Secret-Pa55!"),
            ("port", "443"),
            ("test_mailbox", ""),
        ],
    )
    .await;
    assert_eq!(response.status().as_u16(), 303, "gateway added");
}

async fn user_row(app: &TestApp, user_id: &str) -> (bool, String) {
    let (calendar, locale): (presence_gateway::store::Flag, String) =
        sqlx::query_as("SELECT calendar_enabled, locale FROM users WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&app.state.pool)
            .await
            .expect("user row");
    (calendar.0, locale)
}

/// The `<option>`s of the User Locale select.
fn locale_options(body: &str) -> Vec<String> {
    let select = body
        .split(r#"<select id="locale""#)
        .nth(1)
        .and_then(|rest| rest.split("</select>").next())
        .expect("the User Locale select");
    select
        .split(r#"<option value=""#)
        .skip(1)
        .filter_map(|o| o.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn calendar_switch_is_refused_without_a_gateway_then_persists() {
    let app = TestApp::spawn().await;
    app.create_end_user(ERIN, ERIN_PASSWORD).await;
    let erin = signed_in(&app, ERIN, ERIN_PASSWORD).await;

    let (status, body) = get_text(&app, &erin, "/user-options").await;
    assert_eq!(status, 200);
    assert!(body.contains(r#"<html lang="en-US">"#), "{body}");
    for label in [
        "Preferences",
        "Calendar Settings",
        "<legend>Include Calendar information in my Presence Status</legend>",
        r#"<label for="calendar-on">On</label>"#,
        r#"<label for="calendar-off">Off</label>"#,
        "User Settings Configuration",
        r#"<label for="locale">User Locale</label>"#,
    ] {
        assert!(body.contains(label), "missing {label:?}");
    }
    let reason = "Calendar presence is unavailable: no presence gateway has been configured. \
                  Ask your administrator.";
    assert!(body.contains(reason));
    assert!(body.contains(r#"<fieldset class="field" disabled"#));
    assert!(body.contains(r#"id="save-calendar" disabled"#));
    assert!(body.contains("Calendar presence: not available, because no presence gateway"));

    // A POST anyway is refused and changes nothing.
    let response = post(&app, &erin, "/user-options/calendar", &[("calendar", "on")]).await;
    assert_eq!(response.status().as_u16(), 422);
    assert!(response.text().await.unwrap().contains(reason));
    assert!(!user_row(&app, ERIN).await.0);

    add_gateway(&app).await;
    let changes = app.count("SELECT COUNT(*) FROM config_changes").await;
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(!body.contains(reason));
    assert!(!body.contains("disabled"));
    assert!(body.contains(
        "Calendar presence: not available, because calendar information is switched off"
    ));

    let response = post(&app, &erin, "/user-options/calendar", &[("calendar", "on")]).await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/user-options");
    assert!(user_row(&app, ERIN).await.0);
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(body.contains("Update successful: calendar information is now included"));
    assert!(body.contains(r#"value="on" checked"#));
    assert!(body.contains(
        "Calendar presence: not available yet: the presence engine has not read your calendar."
    ));

    let response = post(
        &app,
        &erin,
        "/user-options/calendar",
        &[("calendar", "off")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 303);
    assert!(!user_row(&app, ERIN).await.0);
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(body.contains(r#"value="off" checked"#));

    // Neither value: a message beside the switch, nothing changed.
    let response = post(
        &app,
        &erin,
        "/user-options/calendar",
        &[("calendar", "maybe")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 422);
    assert!(response.text().await.unwrap().contains("Choose On or Off."));

    // Users' switches apply live: no restart is recorded (SV-3); the audit
    // log has both switches.
    assert_eq!(
        app.count("SELECT COUNT(*) FROM config_changes").await,
        changes
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM audit_log WHERE actor = 'erin' AND action LIKE 'calendar presence%'"
        )
        .await,
        2
    );
}

#[tokio::test]
async fn options_belong_to_the_signed_in_user_only() {
    let app = TestApp::spawn().await;
    app.create_end_user(ERIN, ERIN_PASSWORD).await;
    let frank_id = app.create_end_user("frank", "fjord-lantern-pw-1").await;
    add_gateway(&app).await;
    app.install_locale("test-node", "de-DE").await;
    let erin = signed_in(&app, ERIN, ERIN_PASSWORD).await;
    let frank = frank_id.to_string();

    // Guessed ids in the form are ignored: Erin's row changes, Frank's not.
    let response = post(
        &app,
        &erin,
        "/user-options/calendar",
        &[("calendar", "on"), ("id", &frank), ("user_id", "frank")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 303);
    assert!(user_row(&app, ERIN).await.0);
    assert_eq!(user_row(&app, "frank").await, (false, "en-US".to_owned()));

    let response = post(
        &app,
        &erin,
        "/user-options/locale",
        &[("id", &frank), ("locale", "de-DE"), ("user_id", "frank")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(user_row(&app, ERIN).await.1, "de-DE");
    assert_eq!(user_row(&app, "frank").await, (false, "en-US".to_owned()));

    // Ids in the address show Erin's page or nothing, never Frank's.
    for path in [
        format!("/user-options?id={frank_id}"),
        "/user-options?user_id=frank".to_owned(),
    ] {
        let (status, body) = get_text(&app, &erin, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(body.contains("(erin)"), "{path}");
        assert!(!body.contains("frank"), "{path}");
    }
    for path in [
        format!("/user-options/{frank_id}"),
        "/user-options/frank".to_owned(),
    ] {
        let (status, body) = get_text(&app, &erin, &path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!body.contains("frank"), "{path}");
    }
    let (status, _) = get_text(&app, &erin, "/user-options/calendar").await;
    assert_eq!(status, 405);

    // Cross-site POSTs are refused and change nothing.
    let response = erin
        .post(app.url("/user-options/calendar"))
        .header("Origin", "http://evil.example")
        .header("Sec-Fetch-Site", "cross-site")
        .form(&[("calendar", "off")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    assert!(user_row(&app, ERIN).await.0);

    // Administrators have no User Options of their own.
    let admin = signed_in(&app, ADMIN, ADMIN_PASSWORD).await;
    let response = post(
        &app,
        &admin,
        "/user-options/calendar",
        &[("calendar", "on")],
    )
    .await;
    assert_eq!(response.status().as_u16(), 403);
}

#[tokio::test]
async fn a_locale_is_choosable_only_when_installed_on_every_node() {
    let app = TestApp::spawn().await;
    app.create_end_user(ERIN, ERIN_PASSWORD).await;
    sqlx::query(
        "INSERT INTO nodes (name, address, started_at, last_heartbeat)
         VALUES ('node-b', '127.0.0.2:8080', 0, 0)",
    )
    .execute(&app.state.pool)
    .await
    .unwrap();
    let erin = signed_in(&app, ERIN, ERIN_PASSWORD).await;
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert_eq!(locale_options(&body), ["en-US"]);

    app.install_locale("test-node", "de-DE").await;
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert_eq!(locale_options(&body), ["en-US"]);
    let response = post(&app, &erin, "/user-options/locale", &[("locale", "de-DE")]).await;
    assert_eq!(response.status().as_u16(), 422);
    let body = response.text().await.unwrap();
    assert!(
        body.contains(
            "German (Deutsch) cannot be chosen: it is not installed on every server yet."
        ),
        "{body}"
    );
    assert_eq!(user_row(&app, ERIN).await.1, "en-US");

    app.install_locale("node-b", "de-DE").await;
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert_eq!(locale_options(&body), ["en-US", "de-DE"]);
    let response = post(&app, &erin, "/user-options/locale", &[("locale", "de-DE")]).await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(user_row(&app, ERIN).await.1, "de-DE");

    // Not a catalogue locale: refused beside the field.
    let response = post(&app, &erin, "/user-options/locale", &[("locale", "xx-XX")]).await;
    assert_eq!(response.status().as_u16(), 422);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Wählen Sie ein Benutzergebietsschema")
    );
    assert_eq!(user_row(&app, ERIN).await.1, "de-DE");
}

#[tokio::test]
async fn the_page_speaks_german_and_japanese_and_falls_back_to_english() {
    let app = TestApp::spawn().await;
    app.create_end_user(ERIN, ERIN_PASSWORD).await;
    for tag in ["de-DE", "ja-JP", "sv-SE"] {
        app.install_locale("test-node", tag).await;
    }
    let erin = signed_in(&app, ERIN, ERIN_PASSWORD).await;

    let response = post(&app, &erin, "/user-options/locale", &[("locale", "de-DE")]).await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(body.contains(r#"<html lang="de-DE">"#));
    assert!(body.contains("<title>Benutzeroptionen - presence-gateway</title>"));
    for text in [
        "Aktualisierung erfolgreich: Ihr Benutzergebietsschema ist jetzt German (Deutsch).",
        "<h2 id=\"preferences-title\">Einstellungen</h2>",
        "Kalendereinstellungen",
        "<legend>Kalenderinformationen in meinen Präsenzstatus aufnehmen</legend>",
        r#"<label for="calendar-on">Ein</label>"#,
        r#"<label for="locale">Benutzergebietsschema</label>"#,
        ">Speichern</button>",
        "Die Kalenderpräsenz ist nicht verfügbar",
        "Kalenderpräsenz: nicht verfügbar",
    ] {
        assert!(body.contains(text), "missing {text:?}");
    }
    assert!(!body.contains("Calendar Settings"));

    let response = post(&app, &erin, "/user-options/locale", &[("locale", "ja-JP")]).await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(body.contains(r#"<html lang="ja-JP">"#));
    for text in [
        "更新しました: ユーザロケールは Japanese (日本語) になりました。",
        "カレンダー設定",
        "<legend>プレゼンスステータスにカレンダー情報を含める</legend>",
        r#"<label for="locale">ユーザロケール</label>"#,
        ">保存</button>",
    ] {
        assert!(body.contains(text), "missing {text:?}");
    }

    // Swedish is installed but not translated: English, labelled so.
    let response = post(&app, &erin, "/user-options/locale", &[("locale", "sv-SE")]).await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(body.contains(r#"<html lang="en-US">"#));
    assert!(body.contains("Update successful: your User Locale is now Swedish (Svenska)."));
    assert!(body.contains("Calendar Settings"));
    assert!(body.contains(r#"<option value="sv-SE" selected>"#));

    // A translated locale not installed on this node (set behind the
    // console's back) is not used either.
    sqlx::query("UPDATE users SET locale = 'fr-FR' WHERE user_id = 'erin'")
        .execute(&app.state.pool)
        .await
        .unwrap();
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(body.contains(r#"<html lang="en-US">"#));
    assert!(body.contains("Calendar Settings"));
    assert!(body.contains(r#"<option value="fr-FR" selected>"#));
    app.install_locale("test-node", "fr-FR").await;
    let (_, body) = get_text(&app, &erin, "/user-options").await;
    assert!(body.contains(r#"<html lang="fr-FR">"#));
    assert!(body.contains("Paramètres du calendrier"));

    // Other pages keep their English `lang`.
    let (_, body) = get_text(&app, &erin, "/account/password").await;
    assert!(body.contains(r#"<html lang="en">"#));
}
