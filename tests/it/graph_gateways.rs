//! Microsoft 365 - Graph gateways over a real port (GR-1, GR-2): Add New
//! with its fields, the client secret sealed and never rendered back, each
//! message beside its field, GW-3 extended (no mix), change type in place
//! EWS <-> Microsoft 365 keeping every user's calendar setting, and delete
//! switching calendar presence off (GW-6), with restart and audit entries.

use presence_gateway::domain::gateway::GatewayKind;
use presence_gateway::domain::user::UserId;
use presence_gateway::store;

use crate::gateways::{add, with};
use crate::support::{TestApp, admin_app, field_error};

const SECRET: &str = "Qx8~graph-client-SECRET.value_1";
const NEW_SECRET: &str = "Rotated~graph-SECRET.value_2";
const CLIENT_ID: &str = "0a1b2c3d-0000-4000-8000-00000000abcd";

/// A Microsoft 365 Add New form with every field valid, on the Custom cloud
/// (as against exchange-sim).
fn graph(description: &str) -> Vec<(&str, &str)> {
    vec![
        ("type", "graph"),
        ("description", description),
        ("tenant", "Contoso.onmicrosoft.com"),
        ("client_id", CLIENT_ID),
        ("client_secret", SECRET),
        ("confirm_client_secret", SECRET),
        ("cloud", "custom"),
        ("signin_url", "https://login.example.com/"),
        ("graph_url", "https://graph.example.com"),
        ("test_mailbox", "room.101@contoso.com"),
    ]
}

fn ews(description: &str) -> Vec<(&str, &str)> {
    vec![
        ("type", "ews"),
        ("description", description),
        ("server", "ex1.example.com"),
        ("account_name", "svc-presence@example.com"),
        ("password", "Ews-Secret-Pa55!"),
        ("confirm", "Ews-Secret-Pa55!"),
        ("port", "443"),
        ("test_mailbox", "room.101@example.com"),
    ]
}

async fn seed(app: &TestApp, prefix: &str, count: usize, calendar_on: bool) {
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

async fn calendar_on(app: &TestApp) -> i64 {
    crate::support::seed::count_calendar_enabled(&app.state.pool)
        .await
        .unwrap()
}

async fn open_secret(app: &TestApp, kind: GatewayKind) -> (String, String) {
    let stored = store::gateways::credentials(&app.state.pool, kind)
        .await
        .unwrap()
        .expect("credentials");
    assert!(
        !stored
            .password_ciphertext
            .windows(SECRET.len())
            .any(|w| w == SECRET.as_bytes() || w == NEW_SECRET.as_bytes()),
        "sealed, not plaintext"
    );
    let plain = app
        .state
        .cipher
        .open_password(&stored.password_nonce, &stored.password_ciphertext)
        .unwrap();
    (stored.account_name, plain)
}

#[tokio::test]
async fn adding_a_microsoft_365_gateway_stores_its_fields_and_seals_the_secret() {
    let app = admin_app().await;
    let (_, choose) = app.get_text("/presence/gateways/new").await;
    assert!(choose.contains("Microsoft 365 - Graph"));
    assert!(choose.contains("Exchange Online"));
    let (status, empty) = app.get_text("/presence/gateways/new?type=graph").await;
    assert_eq!(status, 200);
    for label in [
        "Tenant",
        "Application (client) ID",
        "Client Secret",
        "Confirm Client Secret",
        "Cloud",
        "US Government GCC High",
        "US Government DoD",
        "Sign-in URL",
        "Graph URL",
        "Test Mailbox",
    ] {
        assert!(empty.contains(label), "{label}");
    }

    let generation = store::changes::current_generation(&app.state.pool)
        .await
        .unwrap();
    let id = add(&app, &graph("Exchange Online")).await;
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.kind, "graph");
    assert_eq!(row.tenant.as_deref(), Some("contoso.onmicrosoft.com"));
    assert_eq!(row.cloud.as_deref(), Some("custom"));
    assert_eq!(row.signin_url.as_deref(), Some("https://login.example.com"));
    assert_eq!(row.graph_url.as_deref(), Some("https://graph.example.com"));
    assert_eq!(row.server, "graph.example.com");
    assert_eq!(row.port, 443);
    assert_eq!(row.test_mailbox.as_deref(), Some("room.101@contoso.com"));
    assert_eq!(
        open_secret(&app, GatewayKind::Graph).await,
        (CLIENT_ID.to_owned(), SECRET.to_owned())
    );
    assert_eq!(
        store::changes::current_generation(&app.state.pool)
            .await
            .unwrap(),
        generation + 1
    );

    let (status, page) = app.get_text(&format!("/presence/gateways/{id}")).await;
    assert_eq!(status, 200);
    assert!(page.contains("Add successful."));
    assert!(page.contains("Presence Engine restart needed"), "GW-7");
    assert!(page.contains("Added Microsoft 365 - Graph gateway Exchange Online"));
    assert!(page.contains(r#"value="contoso.onmicrosoft.com""#));
    assert!(page.contains(&format!(r#"value="{CLIENT_ID}""#)));
    assert!(page.contains("A client secret is stored"));
    assert!(!page.contains(SECRET), "the secret is never rendered");

    let (_, list) = app.get_text("/presence/gateways").await;
    assert!(list.contains("Microsoft 365 - Graph"));
    assert!(list.contains("graph.example.com"));

    // Edit with the secret fields empty keeps the stored one; a national
    // cloud sets both URLs and the list's host.
    let edit = with(
        with(
            with(graph("Exchange Online"), "client_secret", ""),
            "confirm_client_secret",
            "",
        ),
        "cloud",
        "usgovdod",
    );
    let response = app
        .post_form(&format!("/presence/gateways/{id}"), &edit)
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.cloud.as_deref(), Some("usgovdod"));
    assert_eq!(
        row.signin_url.as_deref(),
        Some("https://login.microsoftonline.us")
    );
    assert_eq!(
        row.graph_url.as_deref(),
        Some("https://dod-graph.microsoft.us")
    );
    assert_eq!(row.server, "dod-graph.microsoft.us");
    assert_eq!(open_secret(&app, GatewayKind::Graph).await.1, SECRET);

    let rotate = with(
        with(graph("Exchange Online"), "client_secret", NEW_SECRET),
        "confirm_client_secret",
        NEW_SECRET,
    );
    app.post_form(&format!("/presence/gateways/{id}"), &rotate)
        .await;
    assert_eq!(open_secret(&app, GatewayKind::Graph).await.1, NEW_SECRET);

    let (_, audit) = app.get_text("/system/audit-log").await;
    assert!(audit.contains("gateway added: Exchange Online"));
    assert!(audit.contains("gateway updated: Exchange Online"));
    assert!(audit.contains("(unchanged)") && audit.contains("(changed)"));
    assert!(audit.contains("client secret"));
    assert!(!audit.contains(SECRET) && !audit.contains(NEW_SECRET));
}

#[tokio::test]
async fn each_microsoft_365_refusal_is_beside_its_field() {
    let app = admin_app().await;
    let form = with(
        with(
            with(
                with(graph("Bad"), "tenant", "common"),
                "client_id",
                "not-a-guid",
            ),
            "confirm_client_secret",
            "something else",
        ),
        "signin_url",
        "",
    );
    let form = with(form, "graph_url", "http://graph.example.com");
    let (status, page) = app.post_text("/presence/gateways/new", &form).await;
    assert_eq!(status, 422);
    let tenant = field_error(&page, "tenant").expect("tenant error");
    assert!(
        tenant.contains("GUID") && tenant.contains("domain"),
        "{tenant}"
    );
    let client = field_error(&page, "client_id").expect("client id error");
    assert!(client.contains("GUID"), "{client}");
    let secret = field_error(&page, "client_secret").expect("secret error");
    assert!(secret.contains("do not match"), "{secret}");
    let signin = field_error(&page, "signin_url").expect("sign-in URL error");
    assert!(signin.contains("Enter the Sign-in URL"), "{signin}");
    let graph_url = field_error(&page, "graph_url").expect("Graph URL error");
    assert!(graph_url.contains("must use https"), "{graph_url}");
    assert!(page.contains(r#"value="not-a-guid""#), "kept as typed");
    assert!(!page.contains(SECRET));

    // No secret on Add New: asked for.
    let form = with(
        with(graph("Bad"), "client_secret", ""),
        "confirm_client_secret",
        "",
    );
    let (status, page) = app.post_text("/presence/gateways/new", &form).await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "client_secret")
            .unwrap_or_default()
            .contains("Enter the client secret")
    );

    // The URLs are read only for Custom: Global takes its own.
    let global = with(
        with(with(graph("Good"), "cloud", "global"), "signin_url", ""),
        "graph_url",
        "http://ignored.example.com",
    );
    let id = add(&app, &global).await;
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.graph_url.as_deref(),
        Some("https://graph.microsoft.com")
    );
    assert_eq!(
        row.signin_url.as_deref(),
        Some("https://login.microsoftonline.com")
    );
    assert_eq!(store::gateways::count(&app.state.pool).await.unwrap(), 1);
}

#[tokio::test]
async fn gr2_microsoft_365_is_never_mixed_with_exchange_gateways() {
    let app = admin_app().await;
    let ews_id = add(&app, &ews("On premises")).await;
    let (status, page) = app.get_text("/presence/gateways/new?type=graph").await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "type")
            .unwrap_or_default()
            .contains("A Microsoft 365 gateway must be the only gateway"),
        "{page}"
    );
    let (status, page) = app
        .post_text("/presence/gateways/new", &graph("Online"))
        .await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "kind")
            .unwrap_or_default()
            .contains("Microsoft 365 and Exchange gateways cannot be mixed"),
        "{page}"
    );

    app.post_form(&format!("/presence/gateways/{ews_id}/delete"), &[])
        .await;
    add(&app, &graph("Online")).await;
    for (kind, form) in [
        ("ews", ews("Second")),
        (
            "webdav",
            with(
                with(ews("Second"), "type", "webdav"),
                "account_name",
                "CORP\\receiveas",
            ),
        ),
    ] {
        let (status, page) = app.post_text("/presence/gateways/new", &form).await;
        assert_eq!(status, 422, "{kind}");
        assert!(
            field_error(&page, "kind")
                .unwrap_or_default()
                .contains("while a Microsoft 365 gateway exists"),
            "{kind}: {page}"
        );
    }
    let (status, page) = app
        .post_text("/presence/gateways/new", &graph("Twice"))
        .await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "kind")
            .unwrap_or_default()
            .contains("must be the only gateway")
    );
    assert_eq!(store::gateways::count(&app.state.pool).await.unwrap(), 1);
}

#[tokio::test]
async fn gr2_change_type_ews_to_microsoft_365_and_back_keeps_calendar_settings() {
    let app = admin_app().await;
    seed(&app, "on", 3, true).await;
    seed(&app, "off", 2, false).await;
    let id = add(&app, &ews("Moving")).await;

    // EWS can become WebDAV or Microsoft 365: the page asks which.
    let (status, page) = app.get_text(&format!("/presence/gateways/{id}/type")).await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"value="graph""#) && page.contains(r#"value="webdav""#));
    let (status, page) = app
        .get_text(&format!("/presence/gateways/{id}/type?to=graph"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("from Exchange - EWS Server to Microsoft 365 - Graph"));
    assert!(page.contains("Application (client) ID"));

    let url = format!("/presence/gateways/{id}/type");
    let mut form: Vec<(&str, &str)> = graph("ignored")
        .into_iter()
        .filter(|(k, _)| !["type", "description", "test_mailbox"].contains(k))
        .collect();
    form.push(("to", "graph"));
    // The EWS password never becomes the client secret.
    let no_secret = with(
        with(form.clone(), "client_secret", ""),
        "confirm_client_secret",
        "",
    );
    let (status, page) = app.post_text(&url, &no_secret).await;
    assert_eq!(status, 422);
    assert!(
        field_error(&page, "client_secret")
            .unwrap_or_default()
            .contains("Enter the client secret")
    );
    let (status, page) = app
        .post_text(&url, &with(form.clone(), "tenant", "x"))
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "tenant").is_some());

    let response = app.post_form(&url, &form).await;
    assert_eq!(response.status().as_u16(), 303);
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.kind, "graph");
    assert_eq!(row.server, "graph.example.com");
    assert_eq!(row.tenant.as_deref(), Some("contoso.onmicrosoft.com"));
    assert_eq!(row.test_mailbox.as_deref(), Some("room.101@example.com"));
    assert_eq!(calendar_on(&app).await, 3, "users keep their setting");
    assert_eq!(
        app.count("SELECT COUNT(*) FROM users WHERE calendar_enabled = 0 AND substr(user_id, 1, 3) = 'off'")
            .await,
        2
    );
    assert_eq!(
        open_secret(&app, GatewayKind::Graph).await,
        (CLIENT_ID.to_owned(), SECRET.to_owned())
    );
    assert!(
        store::gateways::credentials(&app.state.pool, GatewayKind::Ews)
            .await
            .unwrap()
            .is_none()
    );
    let (_, page) = app.get_text(&format!("/presence/gateways/{id}")).await;
    assert!(page.contains("Type changed to Microsoft 365 - Graph"));
    assert!(page.contains("Presence Engine restart needed"));
    assert!(!page.contains(SECRET));

    // Back to EWS: Microsoft 365 has no Exchange server nor password to
    // carry over, so both are asked for.
    let (_, page) = app.get_text(&url).await;
    assert!(page.contains("from Microsoft 365 - Graph to Exchange - EWS Server"));
    let (status, page) = app
        .post_text(
            &url,
            &[
                ("to", "ews"),
                ("server", ""),
                ("port", "443"),
                ("account_name", "svc@example.com"),
                ("password", ""),
                ("confirm", ""),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "server").is_some(), "{page}");
    assert!(field_error(&page, "password").is_some(), "{page}");
    let response = app
        .post_form(
            &url,
            &[
                ("to", "ews"),
                ("server", "ex2.example.com"),
                ("port", "443"),
                ("account_name", "svc@example.com"),
                ("password", "Back-To-Ews-1"),
                ("confirm", "Back-To-Ews-1"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.kind, "ews");
    assert_eq!(row.server, "ex2.example.com");
    assert_eq!(row.tenant, None);
    assert_eq!(row.cloud, None);
    assert_eq!(calendar_on(&app).await, 3, "users keep their setting");
    assert!(
        store::gateways::credentials(&app.state.pool, GatewayKind::Graph)
            .await
            .unwrap()
            .is_none()
    );
    let (_, audit) = app.get_text("/system/audit-log").await;
    assert!(audit.contains("gateway type changed: Moving"));
    assert!(!audit.contains(SECRET) && !audit.contains("Back-To-Ews-1"));
}

#[tokio::test]
async fn gw6_deleting_the_microsoft_365_gateway_switches_calendar_presence_off() {
    let app = admin_app().await;
    seed(&app, "u", 5, true).await;
    let id = add(&app, &graph("Online")).await;
    let generation = store::changes::current_generation(&app.state.pool)
        .await
        .unwrap();
    let (status, page) = app
        .get_text(&format!("/presence/gateways/{id}/delete"))
        .await;
    assert_eq!(status, 200);
    assert!(page.contains("Microsoft 365 gateway"));
    assert!(
        page.contains("5 users</strong> will lose calendar presence"),
        "{page}"
    );
    let response = app
        .post_form(&format!("/presence/gateways/{id}/delete"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let (_, list) = app.get_text("/presence/gateways").await;
    assert!(list.contains("Calendar presence was switched off for 5 users."));
    assert!(list.contains("Presence Engine restart needed"));
    assert_eq!(calendar_on(&app).await, 0);
    assert_eq!(
        store::secrets::count_encrypted(&app.state.pool)
            .await
            .unwrap(),
        0,
        "the client secret went with the gateway"
    );
    assert_eq!(
        store::changes::current_generation(&app.state.pool)
            .await
            .unwrap(),
        generation + 1
    );
    let (_, audit) = app.get_text("/system/audit-log").await;
    assert!(audit.contains("gateway deleted: Online"));
}

#[tokio::test]
async fn the_migration_keeps_every_existing_gateway_and_credential() {
    use sqlx::Connection;
    const GRAPH_MIGRATION: i64 = 20261203000016;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect("sqlite::memory:")
        .await
        .unwrap();
    let migrations = store::SQLITE_MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration());
    let (before, after): (Vec<_>, Vec<_>) = migrations.partition(|m| m.version < GRAPH_MIGRATION);
    for m in before {
        sqlx::raw_sql(&m.sql).execute(&mut conn).await.unwrap();
    }
    sqlx::raw_sql(
        "INSERT INTO gateways (id, kind, description, server, port, test_mailbox, last_verdict,
                               last_checked_at, created_at, updated_at, verdict_seq)
         VALUES (7, 'ews', 'Kept', 'ex1.example.com', 8443, 'room@example.com', 'Verified',
                 5, 1, 2, 9);
         INSERT INTO exchange_credentials VALUES ('ews', 'svc@example.com', x'01', x'02', 3);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let graph = after
        .iter()
        .find(|m| m.version == GRAPH_MIGRATION)
        .expect("the Graph migration");
    sqlx::raw_sql(&graph.sql).execute(&mut conn).await.unwrap();

    let row: (
        i64,
        String,
        String,
        String,
        i64,
        String,
        String,
        i64,
        i64,
        i64,
        i64,
    ) = sqlx::query_as(
        "SELECT id, kind, description, server, port, test_mailbox, last_verdict,
                    last_checked_at, created_at, updated_at, verdict_seq FROM gateways",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        row,
        (
            7,
            "ews".into(),
            "Kept".into(),
            "ex1.example.com".into(),
            8443,
            "room@example.com".into(),
            "Verified".into(),
            5,
            1,
            2,
            9
        )
    );
    let credentials: (String, String) =
        sqlx::query_as("SELECT kind, account_name FROM exchange_credentials")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(credentials, ("ews".into(), "svc@example.com".into()));
    // Descriptions stay unique regardless of case; 'graph' is now a kind,
    // with all four of its columns.
    assert!(
        sqlx::raw_sql(
            "INSERT INTO gateways (kind, description, server, port, created_at, updated_at)
             VALUES ('ews', 'KEPT', 'x', 443, 1, 1)"
        )
        .execute(&mut conn)
        .await
        .is_err()
    );
    assert!(
        sqlx::raw_sql(
            "INSERT INTO gateways (kind, description, server, port, created_at, updated_at)
             VALUES ('graph', 'Half', 'x', 443, 1, 1)"
        )
        .execute(&mut conn)
        .await
        .is_err(),
        "a Graph row needs its tenant, cloud and URLs"
    );
    sqlx::raw_sql(
        "INSERT INTO gateways (kind, description, server, port, created_at, updated_at, tenant,
                               cloud, signin_url, graph_url)
         VALUES ('graph', 'Online', 'graph.microsoft.com', 443, 1, 1, 'contoso.com', 'global',
                 'https://login.microsoftonline.com', 'https://graph.microsoft.com');
         INSERT INTO exchange_credentials VALUES ('graph', 'id', x'01', x'02', 3);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
}
