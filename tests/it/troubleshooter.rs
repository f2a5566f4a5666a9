//! The Troubleshooter panel on the gateway page and for all gateways at once
//! (TS-6), against the real exchange-sim, with the stored configuration.

use presence_gateway::store;

use crate::sim::{ACCOUNT, PASSWORD, PASSWORD_ENV, SimProcess};
use crate::support::{TestApp, admin_app, location};

async fn trust_pem(app: &TestApp, pem: &[u8]) {
    for der in rustls_pemfile::certs(&mut &pem[..]) {
        let der = der.expect("PEM");
        let info = presence_gateway::tls::certinfo::parse(&der).expect("certificate");
        store::trust::insert(&app.state.pool, &der, &info, "admin", app.state.now())
            .await
            .expect("trust");
    }
}

async fn add_gateway(app: &TestApp, description: &str, server: &str, port: &str) -> i64 {
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "ews"),
                ("description", description),
                ("server", server),
                ("account_name", ACCOUNT),
                ("password", PASSWORD),
                ("confirm", PASSWORD),
                ("port", port),
                ("test_mailbox", "user@example.com"),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303, "add gateway");
    location(&response)
        .rsplit('/')
        .next()
        .and_then(|id| id.parse().ok())
        .expect("id")
}

#[tokio::test]
async fn the_panel_runs_the_seven_checks_with_the_stored_configuration() {
    let sim = SimProcess::start(&["--account", ACCOUNT, "--password-env", PASSWORD_ENV]);
    let port = sim.port().to_string();
    let app = admin_app().await;
    let id = add_gateway(&app, "Sim", "127.0.0.1", &port).await;

    let (_, page) = app.get_text(&format!("/presence/gateways/{id}")).await;
    assert!(page.contains("<h2 id=\"troubleshooter-title\">Troubleshooter</h2>"));
    assert!(page.contains("Run Troubleshooter"));

    // Nothing trusted yet: the chain is missing its anchor; no credentials go.
    let response = app
        .post_form(&format!("/presence/gateways/{id}/troubleshoot"), &[])
        .await;
    assert_eq!(response.status().as_u16(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Failed - Certificate Missing From Chain"),
        "{page}"
    );
    for label in [
        "DNS",
        "TCP connection",
        "TLS handshake",
        "Certificate chain",
        "Certificate validity",
        "Name match",
        "Exchange authentication",
    ] {
        assert!(
            page.contains(&format!("<th scope=\"row\">{label}</th>")),
            "{label}"
        );
    }
    assert!(page.contains("only sent to a server whose chain"));
    assert!(!page.contains(PASSWORD), "the password is never rendered");

    // With the simulator's CA trusted: Verified, and the verdict is stored.
    trust_pem(&app, &std::fs::read(sim.dir.path().join("ca.pem")).unwrap()).await;
    let page = app
        .post_form(&format!("/presence/gateways/{id}/troubleshoot"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(page.contains("<strong>Verified</strong>"), "{page}");
    assert!(page.contains("verdict verdict-ok"));
    assert!(page.contains("Certificate chain (revocation is not checked)"));
    assert!(page.contains(">trusted</span>"));
    assert!(
        page.contains("GetFolder of the calendar of user@example.com (impersonated) succeeded")
    );
    let row = store::gateways::find(&app.state.pool, id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_verdict.as_deref(), Some("Verified"));
    let (_, list) = app.get_text("/presence/gateways").await;
    assert!(
        list.contains("<td>Verified ("),
        "the list shows the last verdict: {list}"
    );

    // No restart is asked for by a troubleshooter run.
    let pending = store::changes::pending(&app.state.pool, 100).await.unwrap();
    assert_eq!(pending.changes.len(), 1, "only the gateway's addition");
}

#[tokio::test]
async fn all_gateways_are_checked_at_once() {
    let sim = SimProcess::start(&[
        "--account",
        ACCOUNT,
        "--password-env",
        PASSWORD_ENV,
        "--latency-ms",
        "200",
    ]);
    let port = sim.port().to_string();
    let app = admin_app().await;
    trust_pem(&app, &std::fs::read(sim.dir.path().join("ca.pem")).unwrap()).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let server = if i % 2 == 0 { "127.0.0.1" } else { "localhost" };
        ids.push(add_gateway(&app, &format!("EWS {i}"), server, &port).await);
    }
    // One pointing nowhere: its failure does not hold the others up.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let dead = add_gateway(&app, "Dead", "127.0.0.1", &closed).await;

    let (_, list) = app.get_text("/presence/gateways").await;
    assert!(list.contains("Run Troubleshooter on all gateways"));
    let response = app.post_form("/presence/gateways/troubleshoot", &[]).await;
    assert_eq!(response.status().as_u16(), 200);
    let page = response.text().await.unwrap();
    assert!(page.contains("5 gateways checked at once"), "{page}");
    assert_eq!(
        page.matches("<strong>Verified</strong>").count(),
        4,
        "{page}"
    );
    assert!(page.contains("<strong>Failed - Network Error</strong>"));
    for id in ids {
        let row = store::gateways::find(&app.state.pool, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.last_verdict.as_deref(), Some("Verified"));
    }
    let row = store::gateways::find(&app.state.pool, dead)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.last_verdict.as_deref(), Some("Failed - Network Error"));
}

#[tokio::test]
async fn end_users_cannot_run_the_troubleshooter() {
    let app = TestApp::spawn().await;
    app.create_end_user("erin", "ember-lantern-pw-1").await;
    app.sign_in("erin", "ember-lantern-pw-1").await;
    let response = app.post_form("/presence/gateways/troubleshoot", &[]).await;
    assert_eq!(response.status().as_u16(), 403);
    let response = app
        .post_form("/presence/gateways/1/troubleshoot", &[])
        .await;
    assert_eq!(response.status().as_u16(), 403);
}
