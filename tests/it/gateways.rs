//! Presence > Gateways over a real port: Find and List, Add New, the rules
//! GW-3 to GW-8, change type, delete with the bulk switch, and SY-4.

use std::time::{Duration, Instant};

use presence_gateway::domain::user::UserId;
use presence_gateway::store;

use crate::support::{ADMIN_PASSWORD, ServeProcess, TestApp, admin_app, binary, location};

const EWS_PASSWORD: &str = "Ews-Secret-Pa55!";
const NEW_PASSWORD: &str = "Rotated-Secret-77#";

/// An EWS Add New form with every field valid.
pub(crate) fn ews<'a>(description: &'a str, server: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("type", "ews"),
        ("description", description),
        ("server", server),
        ("account_name", "svc-presence@example.com"),
        ("password", EWS_PASSWORD),
        ("confirm", EWS_PASSWORD),
        ("port", "443"),
        ("test_mailbox", "room.101@example.com"),
    ]
}

/// The Add New form for a further EWS gateway, keeping the shared password.
fn ews_shared<'a>(description: &'a str, server: &'a str) -> Vec<(&'a str, &'a str)> {
    with(
        with(ews(description, server), "password", ""),
        "confirm",
        "",
    )
}

pub(crate) fn with<'a>(
    mut form: Vec<(&'a str, &'a str)>,
    field: &'a str,
    value: &'a str,
) -> Vec<(&'a str, &'a str)> {
    for entry in form.iter_mut() {
        if entry.0 == field {
            entry.1 = value;
        }
    }
    form
}

/// Adds a gateway and returns its id, from the redirect to its page.
pub(crate) async fn add(app: &TestApp, form: &[(&str, &str)]) -> i64 {
    let response = app.post_form("/presence/gateways/new", form).await;
    let status = response.status().as_u16();
    let target = location(&response);
    assert_eq!(
        status,
        303,
        "add: {}",
        response.text().await.unwrap_or_default()
    );
    target
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("gateway id in the redirect")
}

async fn seed_users(app: &TestApp, count: usize, calendar_on: bool) {
    let ids: Vec<UserId> = (0..count)
        .map(|i| UserId::parse(&format!("user{i:05}")).expect("user id"))
        .collect();
    let created = crate::support::seed::create_many_end_users(
        &app.state.pool,
        &ids,
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        calendar_on,
        app.state.now(),
    )
    .await
    .expect("seed users");
    assert_eq!(created, count as u64);
}

#[tokio::test]
async fn console_guards_and_the_empty_list() {
    let app = TestApp::spawn().await;
    let response = app.get("/presence/gateways").await;
    assert_eq!(response.status().as_u16(), 303);
    assert!(location(&response).starts_with("/login"));

    app.create_end_user("erin", "ember-lantern-pw-1").await;
    app.sign_in("erin", "ember-lantern-pw-1").await;
    assert_eq!(app.get("/presence/gateways").await.status().as_u16(), 403);
    let refused = app
        .post_form("/presence/gateways/new", &ews("X", "ex.example.com"))
        .await;
    assert_eq!(refused.status().as_u16(), 403);
    assert!(
        store::gateways::list(&app.state.pool, None)
            .await
            .unwrap()
            .is_empty()
    );

    let app = admin_app().await;
    let (status, home) = app.get_text("/").await;
    assert_eq!(status, 200);
    assert!(
        home.contains(r#"href="/presence/gateways""#),
        "menu links Gateways"
    );
    assert!(
        home.contains(r#"href="/system/audit-log""#),
        "menu links Audit Log"
    );
    let (status, page) = app.get_text("/presence/gateways").await;
    assert_eq!(status, 200);
    assert!(page.contains("Find and List Presence Gateways"));
    assert!(page.contains("No presence gateway is configured yet"));
    assert!(page.contains(r#"href="/presence/gateways/new""#));
}

#[tokio::test]
async fn add_new_chooses_the_type_first_with_the_spec_labels() {
    let app = admin_app().await;
    let (status, chooser) = app.get_text("/presence/gateways/new").await;
    assert_eq!(status, 200);
    assert!(chooser.contains("<legend>Presence Gateway Type</legend>"));
    assert!(chooser.contains("Exchange - WebDAV"));
    assert!(chooser.contains("Exchange - EWS Server"));

    let (status, form) = app.get_text("/presence/gateways/new?type=ews").await;
    assert_eq!(status, 200);
    for (id, label) in [
        ("description", "Description"),
        ("server", "Presence Gateway"),
        ("account_name", "Account Name"),
        ("password", "Account Password"),
        ("confirm", "Confirm Password"),
        ("port", "Port"),
        ("test_mailbox", "Test Mailbox"),
    ] {
        let wanted = format!(r#"<label for="{id}">{label}</label>"#);
        assert!(form.contains(&wanted), "label {label}");
        assert!(form.contains(&format!(r#"id="{id}""#)), "field {id}");
    }
    assert!(
        form.contains("Subject CN"),
        "server help names the certificate"
    );
    assert!(form.contains(r#"value="443""#), "port defaults to 443");

    let (status, page) = app.get_text("/presence/gateways/new?type=lotus").await;
    assert_eq!(status, 422);
    assert!(page.contains("Choose a Presence Gateway Type."));
}

#[tokio::test]
async fn adding_an_ews_gateway_lists_it_and_asks_for_a_restart() {
    let app = admin_app().await;
    let generation = store::changes::current_generation(&app.state.pool)
        .await
        .unwrap();
    let id = add(&app, &ews("Main Exchange", "ex1.example.com")).await;

    let (status, page) = app.get_text(&format!("/presence/gateways/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Add successful."));
    assert!(page.contains(r#"value="Main Exchange""#));
    assert!(page.contains(r#"value="svc-presence@example.com""#));
    assert!(
        page.contains("Presence Engine restart needed"),
        "banner (GW-7)"
    );
    assert!(page.contains("Added Exchange - EWS Server gateway Main Exchange"));
    assert!(
        !page.contains(EWS_PASSWORD),
        "the password is never rendered"
    );

    let (_, list) = app.get_text("/presence/gateways").await;
    assert!(list.contains("Main Exchange"));
    assert!(list.contains("ex1.example.com"));
    assert!(list.contains("<td>443</td>"));
    assert!(list.contains("Exchange - EWS Server"));

    let after = store::changes::current_generation(&app.state.pool)
        .await
        .unwrap();
    assert_eq!(after, generation + 1, "one change, one generation");

    // Search by description and by server; no match says so.
    let (_, found) = app.get_text("/presence/gateways?search=main").await;
    assert!(found.contains("Main Exchange"));
    let (_, found) = app.get_text("/presence/gateways?search=EX1.EXAMPLE").await;
    assert!(found.contains("Main Exchange"));
    let (_, none) = app
        .get_text("/presence/gateways?search=nothing-like-it")
        .await;
    assert!(!none.contains("Main Exchange</a>"));
    assert!(none.contains("No gateway matches"));
}

#[tokio::test]
async fn each_refusal_is_a_message_beside_its_field_and_the_form_keeps_what_was_typed() {
    let app = admin_app().await;
    let long = "d".repeat(129);
    let cases: Vec<(&str, &str, &str)> = vec![
        ("description", "   ", "Enter a description"),
        ("description", &long, "at most 128 characters"),
        ("server", "", "Enter the Exchange server"),
        ("server", "https://ex1.example.com/ews", "not a URL"),
        ("server", "ex1.example.com:443", "without a port"),
        ("server", "ex 1.example.com", "cannot contain spaces"),
        ("server", "ex_1.example.com", "underscores"),
        ("server", "ex1..example.com", "empty"),
        ("server", "300.1.1.1", "not a valid IPv4"),
        ("account_name", "svc-presence", "user@domain"),
        ("account_name", "a@b@c", "domain\\user"),
        ("port", "0", "from 1 to 65535"),
        ("port", "65536", "from 1 to 65535"),
        ("port", "https", "from 1 to 65535"),
        ("test_mailbox", "room 101", "e-mail address"),
        ("confirm", "something-else", "do not match"),
        ("password", "", "do not match"),
    ];
    for (field, value, message) in cases {
        let form = with(ews("Kept Description", "kept.example.com"), field, value);
        let (status, page) = app.post_text("/presence/gateways/new", &form).await;
        assert_eq!(status, 422, "{field}={value:?}");
        assert!(
            page.contains(message),
            "{field}={value:?}: wanted {message:?}"
        );
        let error_field = if field == "confirm" {
            "password"
        } else {
            field
        };
        assert!(
            page.contains(&format!(r#"id="{error_field}-error""#)),
            "{field}: message beside the field"
        );
        if field != "description" {
            assert!(
                page.contains(r#"value="Kept Description""#),
                "{field}: form keeps input"
            );
        }
        assert!(
            !page.contains(EWS_PASSWORD),
            "{field}: passwords are not kept"
        );
    }
    // Both passwords empty on a first EWS gateway: there is nothing to keep.
    let form = ews_shared("X", "x.example.com");
    let (status, page) = app.post_text("/presence/gateways/new", &form).await;
    assert_eq!(status, 422);
    assert!(page.contains("Enter the account password"));

    // Nothing half-written.
    assert!(
        store::gateways::list(&app.state.pool, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store::changes::current_generation(&app.state.pool)
            .await
            .unwrap(),
        0
    );

    // Valid forms: an IPv6 literal, a WebDAV-style account for EWS.
    let form = with(
        ews("V6", "[2001:db8::10]"),
        "account_name",
        "CORP\\svc-presence",
    );
    let id = add(&app, &form).await;
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.server, "2001:db8::10");

    // A duplicate description, in any case, is refused beside the field.
    let (status, page) = app
        .post_text(
            "/presence/gateways/new",
            &ews_shared("v6", "other.example.com"),
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("Another gateway already has this description"));
}

#[tokio::test]
async fn a_port_other_than_443_saves_with_a_warning() {
    let app = admin_app().await;
    let id = add(
        &app,
        &with(ews("Alt port", "ex1.example.com"), "port", "8443"),
    )
    .await;
    let (_, page) = app.get_text(&format!("/presence/gateways/{id}")).await;
    assert!(page.contains("Add successful."));
    assert!(page.contains("flash-warning"));
    assert!(page.contains("Port 8443 saved"));
    assert!(page.contains("port 443 is recommended"));
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.port, 8443);
}

#[tokio::test]
async fn gw3_webdav_alone_or_any_number_of_ews() {
    let app = admin_app().await;
    add(&app, &ews("EWS one", "ex1.example.com")).await;
    add(&app, &ews_shared("EWS two", "ex2.example.com")).await;

    // The type chooser refuses WebDAV while EWS gateways exist.
    let (status, page) = app.get_text("/presence/gateways/new?type=webdav").await;
    assert_eq!(status, 422);
    assert!(
        page.contains("A WebDAV gateway must be the only gateway"),
        "{page}"
    );
    assert!(page.contains("2 gateways already exist"));

    // And so does the store, whatever the page.
    let webdav = [
        ("type", "webdav"),
        ("description", "Old Exchange"),
        ("server", "dav.example.com"),
        ("account_name", "CORP\\receiveas"),
        ("password", "dav-pass"),
        ("confirm", "dav-pass"),
        ("port", "443"),
        ("test_mailbox", ""),
    ];
    let (status, page) = app.post_text("/presence/gateways/new", &webdav).await;
    assert_eq!(status, 422);
    assert!(page.contains("A WebDAV gateway must be the only gateway"));
    assert_eq!(store::gateways::count(&app.state.pool).await.unwrap(), 2);

    // With a WebDAV gateway, EWS is refused. Its Test Mailbox may be the
    // mailbox alias, as WebDAV URLs take it.
    let app = admin_app().await;
    let mut webdav = webdav.to_vec();
    webdav.retain(|(name, _)| *name != "test_mailbox");
    webdav.push(("test_mailbox", "alice"));
    add(&app, &webdav).await;
    let (_, list) = app.get_text("/presence/gateways").await;
    assert!(list.contains("Old Exchange"), "{list}");
    let (status, page) = app.get_text("/presence/gateways/new?type=ews").await;
    assert_eq!(status, 422);
    assert!(page.contains("WebDAV and EWS gateways cannot be mixed"));
    let (status, page) = app
        .post_text("/presence/gateways/new", &ews("New", "ex.example.com"))
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("cannot be mixed"));
    let (status, _) = app
        .post_text(
            "/presence/gateways/new",
            &with(
                with(webdav.to_vec(), "description", "Second DAV"),
                "server",
                "dav2.example.com",
            ),
        )
        .await;
    assert_eq!(status, 422);
    assert_eq!(store::gateways::count(&app.state.pool).await.unwrap(), 1);
}

#[tokio::test]
async fn gw4_ews_gateways_share_one_set_of_credentials() {
    let app = admin_app().await;
    let first = add(&app, &ews("EWS one", "ex1.example.com")).await;

    // The second gateway's form comes pre-filled with the shared account.
    let (_, form) = app.get_text("/presence/gateways/new?type=ews").await;
    assert!(form.contains(r#"value="svc-presence@example.com""#));
    assert!(form.contains("Leave both password fields empty to keep it"));
    assert!(form.contains("shared by 1 EWS gateway"));
    let second = add(&app, &ews_shared("EWS two", "ex2.example.com")).await;
    let (_, page) = app.get_text(&format!("/presence/gateways/{second}")).await;
    assert!(page.contains("The shared EWS credentials are unchanged on all 2 gateways."));

    // Changing the credentials on one changes them on both, and says so.
    let edit = [
        ("type", "ews"),
        ("description", "EWS two"),
        ("server", "ex2.example.com"),
        ("account_name", "CORP\\presence-svc"),
        ("password", NEW_PASSWORD),
        ("confirm", NEW_PASSWORD),
        ("port", "443"),
        ("test_mailbox", ""),
    ];
    let response = app
        .post_form(&format!("/presence/gateways/{second}"), &edit)
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, page) = app.get_text(&format!("/presence/gateways/{second}")).await;
    assert!(
        page.contains("Update successful. The shared EWS credentials were updated on 2 gateways.")
    );
    let (_, page) = app.get_text(&format!("/presence/gateways/{first}")).await;
    assert!(
        page.contains(r#"value="CORP\presence-svc""#),
        "the first shows the new account"
    );

    let stored = store::gateways::credentials(
        &app.state.pool,
        presence_gateway::domain::gateway::GatewayKind::Ews,
    )
    .await
    .unwrap()
    .expect("credentials");
    assert_eq!(stored.account_name, "CORP\\presence-svc");
    let password = app
        .state
        .cipher
        .open_password(&stored.password_nonce, &stored.password_ciphertext)
        .unwrap();
    assert_eq!(password, NEW_PASSWORD);

    // An edit that leaves the passwords empty keeps the stored one.
    let keep = with(with(edit.to_vec(), "password", ""), "confirm", "");
    let keep = with(keep, "description", "EWS two renamed");
    assert_eq!(
        app.post_form(&format!("/presence/gateways/{second}"), &keep)
            .await
            .status()
            .as_u16(),
        303
    );
    let stored = store::gateways::credentials(
        &app.state.pool,
        presence_gateway::domain::gateway::GatewayKind::Ews,
    )
    .await
    .unwrap()
    .expect("credentials");
    let password = app
        .state
        .cipher
        .open_password(&stored.password_nonce, &stored.password_ciphertext)
        .unwrap();
    assert_eq!(password, NEW_PASSWORD);
}

#[tokio::test]
async fn gw6_deleting_the_last_gateway_switches_calendar_presence_off_for_45000_users() {
    let app = admin_app().await;
    seed_users(&app, 45_000, true).await;
    let first = add(&app, &ews("EWS one", "ex1.example.com")).await;
    let second = add(&app, &ews_shared("EWS two", "ex2.example.com")).await;

    // One of several EWS gateways: nobody is affected.
    let (status, page) = app
        .get_text(&format!("/presence/gateways/{first}/delete"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("Other EWS gateways remain"));
    let response = app
        .post_form(&format!("/presence/gateways/{first}/delete"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(location(&response), "/presence/gateways");
    assert_eq!(
        crate::support::seed::count_calendar_enabled(&app.state.pool)
            .await
            .unwrap(),
        45_000
    );

    // The last one: the page gives the number beforehand.
    let (_, page) = app
        .get_text(&format!("/presence/gateways/{second}/delete"))
        .await;
    assert!(page.contains("last EWS gateway"));
    assert!(
        page.contains("45000 users</strong> will lose calendar presence"),
        "{page}"
    );
    let response = app
        .post_form(&format!("/presence/gateways/{second}/delete"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, list) = app.get_text("/presence/gateways").await;
    assert!(list.contains("Calendar presence was switched off for 45000 users."));
    assert_eq!(
        crate::support::seed::count_calendar_enabled(&app.state.pool)
            .await
            .unwrap(),
        0
    );
    assert_eq!(store::gateways::count(&app.state.pool).await.unwrap(), 0);
    // The shared credentials went with the last gateway.
    assert_eq!(
        store::secrets::count_encrypted(&app.state.pool)
            .await
            .unwrap(),
        0
    );

    // Deleting what is gone is a 404, not a second switch.
    let response = app
        .post_form(&format!("/presence/gateways/{second}/delete"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 404);
}

#[tokio::test]
async fn gw6_deleting_the_webdav_gateway_tells_how_many_users_lose_calendar_presence() {
    let app = admin_app().await;
    seed_users(&app, 3, true).await;
    seed_users_named(&app, "off", 2, false).await;
    let id = add(
        &app,
        &[
            ("type", "webdav"),
            ("description", "Old Exchange"),
            ("server", "10.0.0.5"),
            ("account_name", "receiveas"),
            ("password", "dav-pass"),
            ("confirm", "dav-pass"),
            ("port", "443"),
            ("test_mailbox", ""),
        ],
    )
    .await;
    let (_, page) = app
        .get_text(&format!("/presence/gateways/{id}/delete"))
        .await;
    assert!(page.contains("This is the WebDAV gateway"));
    assert!(page.contains("3 users</strong> will lose"));
    app.post_form(&format!("/presence/gateways/{id}/delete"), &[])
        .await;
    assert_eq!(
        crate::support::seed::count_calendar_enabled(&app.state.pool)
            .await
            .unwrap(),
        0
    );
}

async fn seed_users_named(app: &TestApp, prefix: &str, count: usize, calendar_on: bool) {
    let ids: Vec<UserId> = (0..count)
        .map(|i| UserId::parse(&format!("{prefix}{i}")).expect("user id"))
        .collect();
    crate::support::seed::create_many_end_users(
        &app.state.pool,
        &ids,
        "x",
        calendar_on,
        app.state.now(),
    )
    .await
    .expect("seed");
}

#[tokio::test]
async fn gw5_change_type_in_place_keeps_users_calendar_setting() {
    let app = admin_app().await;
    seed_users(&app, 4, true).await;
    let id = add(
        &app,
        &[
            ("type", "webdav"),
            ("description", "Upgrade me"),
            ("server", "ex.example.com"),
            ("account_name", "CORP\\receiveas"),
            ("password", "dav-pass"),
            ("confirm", "dav-pass"),
            ("port", "443"),
            ("test_mailbox", ""),
        ],
    )
    .await;
    let (status, page) = app.get_text(&format!("/presence/gateways/{id}/type")).await;
    assert_eq!(status, 200);
    assert!(page.contains("from Exchange - WebDAV to Exchange - EWS Server"));
    assert!(
        page.contains(r#"value="CORP\receiveas""#),
        "a down-level name is valid for EWS too"
    );

    // A bare user name is not an EWS account.
    let (status, page) = app
        .post_text(
            &format!("/presence/gateways/{id}/type"),
            &[
                ("account_name", "receiveas"),
                ("password", ""),
                ("confirm", ""),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(page.contains("user@domain"));

    let response = app
        .post_form(
            &format!("/presence/gateways/{id}/type"),
            &[
                ("account_name", "svc@example.com"),
                ("password", ""),
                ("confirm", ""),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.kind, "ews");
    assert_eq!(
        crate::support::seed::count_calendar_enabled(&app.state.pool)
            .await
            .unwrap(),
        4
    );
    let (_, page) = app.get_text(&format!("/presence/gateways/{id}")).await;
    assert!(page.contains("Type changed to Exchange - EWS Server"));
    assert!(
        page.contains("Changed gateway Upgrade me from Exchange - WebDAV to Exchange - EWS Server")
    );
    // The password moved with the type.
    let stored = store::gateways::credentials(
        &app.state.pool,
        presence_gateway::domain::gateway::GatewayKind::Ews,
    )
    .await
    .unwrap()
    .expect("moved credentials");
    assert_eq!(
        app.state
            .cipher
            .open_password(&stored.password_nonce, &stored.password_ciphertext)
            .unwrap(),
        "dav-pass"
    );

    // With two gateways the type cannot change.
    add(&app, &ews_shared("Second", "ex2.example.com")).await;
    let (_, page) = app.get_text(&format!("/presence/gateways/{id}/type")).await;
    assert!(page.contains("only be changed while this is the only gateway; there are 2"));
    let (status, _) = app
        .post_text(
            &format!("/presence/gateways/{id}/type"),
            &[
                ("account_name", "CORP\\x"),
                ("password", ""),
                ("confirm", ""),
            ],
        )
        .await;
    assert_eq!(status, 422);
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.kind, "ews");
}

#[tokio::test]
async fn gw7_every_change_is_recorded_for_restart_and_in_the_audit_log_without_secrets() {
    let app = admin_app().await;
    let id = add(&app, &ews("Audited", "ex1.example.com")).await;
    let edit = with(
        with(
            with(ews("Audited", "ex9.example.com"), "password", NEW_PASSWORD),
            "confirm",
            NEW_PASSWORD,
        ),
        "port",
        "443",
    );
    app.post_form(&format!("/presence/gateways/{id}"), &edit)
        .await;
    app.post_form(&format!("/presence/gateways/{id}/delete"), &[])
        .await;
    assert_eq!(
        store::changes::current_generation(&app.state.pool)
            .await
            .unwrap(),
        3
    );
    let pending = store::changes::pending(&app.state.pool, 100).await.unwrap();
    assert_eq!(
        pending.changes.len(),
        3,
        "entries accumulate until a restart"
    );
    assert!(pending.changes.iter().all(|c| c.actor == "admin"));

    let (status, page) = app.get_text("/system/audit-log").await;
    assert_eq!(status, 200);
    assert!(page.contains("gateway added: Audited"));
    assert!(page.contains("gateway updated: Audited"));
    assert!(page.contains("gateway deleted: Audited"));
    assert!(
        page.contains("ex1.example.com") && page.contains("ex9.example.com"),
        "before and after"
    );
    assert!(
        page.contains("(changed)"),
        "a password change is noted, not shown"
    );
    assert!(!page.contains(EWS_PASSWORD) && !page.contains(NEW_PASSWORD));
}

#[tokio::test]
async fn gw8_the_database_file_holds_no_password() {
    let app = admin_app().await;
    let id = add(&app, &ews("Secretive", "ex1.example.com")).await;
    let edit = with(
        with(
            ews("Secretive", "ex1.example.com"),
            "password",
            NEW_PASSWORD,
        ),
        "confirm",
        NEW_PASSWORD,
    );
    app.post_form(&format!("/presence/gateways/{id}"), &edit)
        .await;
    let bytes = match &app.state.settings.database {
        store::Location::Postgres(_) => postgres_contents(&app).await,
        store::Location::Sqlite(_) => {
            let bytes = sqlite_files(&app);
            assert!(bytes.len() > 4096, "found the database files");
            bytes
        }
    };
    for secret in [EWS_PASSWORD, NEW_PASSWORD] {
        let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        for form in [secret.as_bytes(), hex.as_bytes()] {
            assert!(
                !bytes.windows(form.len()).any(|w| w == form),
                "{secret} in the database"
            );
        }
    }
    // The account name is not secret and is there; the check above is real.
    let account = b"svc-presence@example.com";
    assert!(bytes.windows(account.len()).any(|w| w == account));
}

/// Every row of every table of a PostgreSQL store as text (blobs in hex).
async fn postgres_contents(app: &TestApp) -> Vec<u8> {
    let mut bytes = Vec::new();
    for table in store::copy::TABLES.iter().chain(&["tower_sessions"]) {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("SELECT CAST(t AS TEXT) FROM {table} t"))
                .fetch_all(&app.state.pool)
                .await
                .unwrap();
        for row in rows {
            bytes.extend(row.into_bytes());
        }
    }
    bytes
}

/// The SQLite database and its write-ahead log as they lie on disk.
fn sqlite_files(app: &TestApp) -> Vec<u8> {
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(app.dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains(".db") || name.contains("sqlite") {
            bytes.extend(std::fs::read(&path).unwrap());
        }
    }
    bytes
}

/// Prepares a data directory as `serve` would and stores one EWS gateway
/// with its encrypted password, straight through the store.
async fn data_dir_with_secret(path: &std::path::Path, with_secret: bool) {
    use presence_gateway::domain::gateway::*;
    let settings = crate::support::test_settings(path, Some(ADMIN_PASSWORD));
    let clock = std::sync::Arc::new(presence_gateway::clock::ManualClock::new(
        time::OffsetDateTime::now_utc(),
    ));
    let state = presence_gateway::cmd::serve::prepare(settings, clock)
        .await
        .expect("prepare")
        .state;
    if with_secret {
        let input = store::gateways::GatewayInput {
            kind: GatewayKind::Ews,
            description: Description::parse("Keyed").unwrap(),
            server: ServerLocation::parse("ex1.example.com").unwrap(),
            port: Port::parse("443").unwrap(),
            test_mailbox: None,
            account: AccountName::parse(GatewayKind::Ews, "svc@example.com").unwrap(),
            password: Some(state.cipher.seal_password(EWS_PASSWORD).unwrap()),
            graph: None,
        };
        store::gateways::create(&state.pool, &input, "admin", state.now())
            .await
            .expect("create");
    }
    state.pool.close().await;
}

#[tokio::test]
async fn sy4_refuses_to_start_when_the_key_is_missing_or_wrong() {
    let dir = crate::support::private_tempdir().unwrap();
    let path = dir.path();
    data_dir_with_secret(path, true).await;
    let key = path.join("secrets.key");
    let original = std::fs::read(&key).unwrap();

    // Missing key: the binary refuses, says what to restore, exits non-zero.
    std::fs::rename(&key, path.join("secrets.key.bak")).unwrap();
    let (status, stderr) = run_serve_expecting_exit(path);
    assert!(!status.success());
    assert!(stderr.contains("secrets key"), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    assert!(stderr.contains("restore the key file"), "{stderr}");
    assert!(!key.exists(), "no new key was made");

    // A different key: refused too, and left as it was.
    std::fs::write(&key, [9u8; 32]).unwrap();
    // Private, as a restored key must be: an open one is refused for that.
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let (status, stderr) = run_serve_expecting_exit(path);
    assert!(!status.success());
    assert!(stderr.contains("is not the key"), "{stderr}");
    assert_eq!(std::fs::read(&key).unwrap(), [9u8; 32]);

    // The right key back: it starts.
    std::fs::write(&key, &original).unwrap();
    let process = ServeProcess::start(path, &["--listen", "127.0.0.1:0"], &[]);
    assert!(process.terminate().success());
}

/// Runs `serve` on a data directory that must make it refuse; waits at most 30 s.
fn run_serve_expecting_exit(data_dir: &std::path::Path) -> (std::process::ExitStatus, String) {
    let mut child = std::process::Command::new(binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("PRESENCE_GATEWAY_ADMIN_PASSWORD")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the service started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stderr)
}

#[tokio::test]
async fn sy4_a_new_key_is_adopted_while_no_secret_depends_on_the_old_one() {
    let dir = crate::support::private_tempdir().unwrap();
    data_dir_with_secret(dir.path(), false).await;
    let key = dir.path().join("secrets.key");
    std::fs::remove_file(&key).unwrap();
    // No secrets stored: a missing key is simply made again.
    data_dir_with_secret(dir.path(), true).await;
    assert!(key.exists());
}

/// A WebDAV gateway's Test Mailbox may be an alias; EWS impersonates by
/// address, so Change Type to EWS clears an alias (and says so) and keeps
/// an address.
#[tokio::test]
async fn change_type_to_ews_clears_an_alias_test_mailbox() {
    for (mailbox, kept) in [("alice", false), ("alice@example.com", true)] {
        let app = admin_app().await;
        let id = add(
            &app,
            &[
                ("type", "webdav"),
                ("description", "Old Exchange"),
                ("server", "ex.example.com"),
                ("account_name", "CORP\\receiveas"),
                ("password", "dav-pass"),
                ("confirm", "dav-pass"),
                ("port", "443"),
                ("test_mailbox", mailbox),
            ],
        )
        .await;
        let response = app
            .post_form(
                &format!("/presence/gateways/{id}/type"),
                &[
                    ("account_name", "svc@example.com"),
                    ("password", ""),
                    ("confirm", ""),
                ],
            )
            .await;
        assert_eq!(response.status().as_u16(), 303);
        let row = store::gateways::find(&app.state.pool, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.kind, "ews");
        let (_, page) = app.get_text(&format!("/presence/gateways/{id}")).await;
        if kept {
            assert_eq!(row.test_mailbox.as_deref(), Some(mailbox));
            assert!(!page.contains("was cleared"), "{page}");
        } else {
            assert_eq!(row.test_mailbox, None);
            assert!(
                page.contains("The Test Mailbox alice was cleared"),
                "{page}"
            );
        }
    }
}
