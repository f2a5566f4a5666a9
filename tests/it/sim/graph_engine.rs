//! The engine's Microsoft 365 reader (GR-4..GR-6) against exchange-sim's
//! Graph face over a real port: tokens cached and shared, getSchedule read
//! in UTC into the same results as EWS's, the path mailbox rotated and
//! throttling honoured per mailbox, sign-in failures explained.

use std::sync::Arc;
use std::time::{Duration, Instant};

use presence_gateway::clock::{Clock, ManualClock, SharedClock};
use presence_gateway::engine::ews::Answer;
use presence_gateway::engine::graph::{GraphEndpoint, read};
use presence_gateway::exchange::graph::Cloud;
use rustls::pki_types::CertificateDer;
use secrecy::SecretString;

use super::{PASSWORD, PASSWORD_ENV, SimProcess};

const TENANT: &str = "8f2c6a1e-4b7d-4e9a-9c3f-2d5e7a1b0c64";
const CLIENT: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";
const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";
/// 2030-01-15T00:00:00Z and a day later.
const DAY: (i64, i64) = (1_894_665_600, 1_894_752_000);

fn trust(sim: &SimProcess) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(sim.dir.path().join("ca.pem")).expect("ca.pem");
    rustls_pemfile::certs(&mut pem.as_slice())
        .map(|c| c.expect("certificate"))
        .collect()
}

fn endpoint(sim: &SimProcess, secret: &str, clock: SharedClock) -> GraphEndpoint {
    let base = format!("https://localhost:{}", sim.port());
    GraphEndpoint::new(
        1,
        "Exchange Online".to_owned(),
        Cloud::Custom {
            signin: base.clone(),
            graph: base,
        },
        TENANT.to_owned(),
        CLIENT.to_owned(),
        SecretString::from(secret.to_owned()),
        trust(sim),
        None,
        Duration::from_secs(5),
        clock,
    )
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(time::OffsetDateTime::now_utc()))
}

fn start(extra: &[&str]) -> SimProcess {
    let mut args = vec!["--graph-secret-env", PASSWORD_ENV];
    args.extend_from_slice(extra);
    SimProcess::start(&args)
}

#[tokio::test]
async fn graph_engine_reads_a_scripted_meeting_in_utc() {
    let sim = start(&[]);
    sim.control(
        "POST",
        "/sim/calendars",
        &format!(
            "{ALICE},2030-01-15T10:00:00Z,2030-01-15T11:00:00Z,Busy\n\
             {ALICE},2030-01-15T10:30:00Z,2030-01-15T12:00:00Z,Tentative\n\
             {BOB},2030-01-15T09:00:00Z,2030-01-15T17:00:00Z,OOF\n"
        ),
    )
    .await;
    let clock = clock();
    let graph = endpoint(&sim, PASSWORD, clock.clone());
    let asked = vec![
        ALICE.to_owned(),
        "nobody@example.com".to_owned(),
        BOB.to_owned(),
    ];
    let Answer::Read(results) = read(&graph, &asked, DAY.0, DAY.1, clock.unix()).await else {
        panic!("getSchedule read nothing");
    };
    assert_eq!(results.len(), 3);
    let alice = results[0].as_ref().expect("alice read");
    // Both overlapping items, in UTC: 10:00-11:00 busy, 10:30-12:00 tentative.
    let spans: Vec<(i64, i64, String)> = alice
        .iter()
        .map(|s| (s.start - DAY.0, s.end - DAY.0, format!("{:?}", s.busy)))
        .collect();
    assert_eq!(
        spans,
        vec![
            (36_000, 39_600, "Busy".to_owned()),
            (37_800, 43_200, "Tentative".to_owned())
        ]
    );
    assert_eq!(
        results[1].as_ref().unwrap_err().code,
        "ErrorMailRecipientNotFound"
    );
    assert_eq!(results[2].as_ref().expect("bob")[0].start, DAY.0 + 9 * 3600);
}

#[tokio::test]
async fn graph_engine_renews_its_token_once_for_fifty_concurrent_reads() {
    let sim = start(&["--latency-ms", "20"]);
    let clock = clock();
    let graph = Arc::new(endpoint(&sim, PASSWORD, clock.clone()));
    let batch: Vec<String> = (0..20).map(|i| format!("user{i}@example.com")).collect();
    let mut reads = Vec::new();
    for _ in 0..50 {
        let graph = graph.clone();
        let batch = batch.clone();
        let now = clock.unix();
        reads.push(tokio::spawn(async move {
            read(&graph, &batch, DAY.0, DAY.1, now).await
        }));
    }
    for handle in reads {
        match handle.await.expect("read") {
            Answer::Read(results) => assert_eq!(results.len(), 20),
            other => panic!("{other:?}"),
        }
    }
    let stats = sim.stats().await;
    let g = &stats["graph"];
    assert_eq!(g["token_requests"], 1, "{g}");
    assert_eq!(g["get_schedule_requests"], 50, "{g}");
    // The path mailbox rotated through the batch, never more than 4 at once.
    let by_path = g["max_concurrency"].as_object().expect("per path");
    assert!(by_path.len() > 1, "{g}");
    assert!(
        by_path.values().all(|n| n.as_u64().unwrap_or(99) <= 4),
        "{g}"
    );

    // 5 minutes before expiry (3599 s) the token is renewed, once.
    clock.advance(time::Duration::seconds(3599 - 300));
    assert!(matches!(
        read(&graph, &batch, DAY.0, DAY.1, clock.unix()).await,
        Answer::Read(_)
    ));
    assert_eq!(sim.stats().await["graph"]["token_requests"], 2);
}

#[tokio::test]
async fn graph_engine_honours_retry_after_for_that_mailbox_only() {
    let sim = start(&[]);
    let clock = clock();
    let graph = endpoint(&sim, PASSWORD, clock.clone());
    let (status, body) = sim
        .control(
            "POST",
            &format!("/sim/graph/faults?kind=throttle&mailbox={ALICE}&retry_after=30&count=1000"),
            "",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Alone in its batch: the read waits, for Retry-After.
    match read(&graph, &[ALICE.to_owned()], DAY.0, DAY.1, clock.unix()).await {
        Answer::Busy { back_off, .. } => {
            assert!(back_off > Duration::from_secs(20) && back_off <= Duration::from_secs(30))
        }
        other => panic!("{other:?}"),
    }
    assert!(graph.path_throttled(ALICE));
    let before = sim.stats().await["graph"]["get_schedule_by_mailbox"][ALICE].clone();
    assert_eq!(before, 1);
    // Beside another mailbox: read through that one's path at once, and
    // nothing more is sent through Alice's until Retry-After ends.
    let started = Instant::now();
    for _ in 0..5 {
        let batch = [ALICE.to_owned(), BOB.to_owned()];
        assert!(matches!(
            read(&graph, &batch, DAY.0, DAY.1, clock.unix()).await,
            Answer::Read(_)
        ));
    }
    assert!(started.elapsed() < Duration::from_secs(10));
    let g = &sim.stats().await["graph"];
    assert_eq!(g["get_schedule_by_mailbox"][ALICE], 1, "{g}");
    assert_eq!(g["get_schedule_by_mailbox"][BOB], 5, "{g}");
}

#[tokio::test]
async fn graph_engine_explains_a_wrong_secret_and_does_not_hammer() {
    let sim = start(&[]);
    let clock = clock();
    let graph = endpoint(&sim, "not the secret", clock.clone());
    for _ in 0..3 {
        match read(&graph, &[ALICE.to_owned()], DAY.0, DAY.1, clock.unix()).await {
            Answer::Failed(reason) => {
                assert!(reason.contains("client secret is wrong"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    // One sign-in attempt; the others wait out the pause.
    assert_eq!(sim.stats().await["graph"]["token_requests"], 1);
    assert_eq!(sim.stats().await["graph"]["get_schedule_requests"], 0);
}

/// The console's troubleshooter on a Microsoft 365 gateway (GR-7) against
/// exchange-sim playing the tenant: Verified, then a wrong secret, missing
/// consent and a Test Mailbox outside the application's scope, each saying
/// what to change in Entra ID.
#[tokio::test]
async fn graph_troubleshooter_verdicts_in_the_console() {
    const DOMAIN: &str = "contoso.onmicrosoft.com";
    let sim = start(&[
        "--graph-domain",
        DOMAIN,
        "--graph-client-id",
        CLIENT,
        "--graph-forbidden",
        "boss@contoso.com",
    ]);
    sim.control(
        "POST",
        "/sim/calendars",
        "room@contoso.com,2030-01-15T10:00:00Z,2030-01-15T11:00:00Z,Busy\nboss@contoso.com,,,\n",
    )
    .await;
    let app = crate::support::admin_app().await;
    let pem = std::fs::read(sim.dir.path().join("ca.pem")).expect("ca.pem");
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der.expect("PEM");
        let info = presence_gateway::tls::certinfo::parse(&der).expect("certificate");
        presence_gateway::store::trust::insert(
            &app.state.pool,
            &der,
            &info,
            "admin",
            app.state.now(),
        )
        .await
        .expect("trust");
    }
    let base = format!("https://localhost:{}", sim.port());
    let form = |secret: &'static str, mailbox: &'static str| {
        vec![
            ("type", "graph".to_owned()),
            ("description", "Exchange Online".to_owned()),
            ("tenant", DOMAIN.to_owned()),
            ("client_id", CLIENT.to_owned()),
            ("client_secret", secret.to_owned()),
            ("confirm_client_secret", secret.to_owned()),
            ("cloud", "custom".to_owned()),
            ("signin_url", base.clone()),
            ("graph_url", base.clone()),
            ("test_mailbox", mailbox.to_owned()),
        ]
    };
    let add = form("wrong-secret-value", "room@contoso.com");
    let add: Vec<(&str, &str)> = add.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let response = app.post_form("/presence/gateways/new", &add).await;
    assert_eq!(response.status().as_u16(), 303);
    let id = crate::support::location(&response)
        .rsplit('/')
        .next()
        .and_then(|id| id.parse::<i64>().ok())
        .expect("gateway id");
    let troubleshoot = || async {
        let (status, page) = app
            .post_text(&format!("/presence/gateways/{id}/troubleshoot"), &[])
            .await;
        assert_eq!(status, 200);
        page
    };
    let edit = |secret: &'static str, mailbox: &'static str| {
        let fields = form(secret, mailbox);
        let app = &app;
        async move {
            let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let response = app
                .post_form(&format!("/presence/gateways/{id}"), &fields)
                .await;
            assert_eq!(response.status().as_u16(), 303);
        }
    };

    // A wrong secret: the six checks pass against the sign-in host, and
    // auth says to copy the secret's Value.
    let page = troubleshoot().await;
    assert!(page.contains("AADSTS7000215"), "{page}");
    assert!(page.contains("Value"), "{page}");
    assert!(page.contains("Failed - Authentication Rejected"), "{page}");

    // The right one: Verified, with the Test Mailbox's schedule read.
    edit(PASSWORD, "room@contoso.com").await;
    let page = troubleshoot().await;
    assert!(page.contains("read room@contoso.com"), "{page}");
    let verdict: Option<String> =
        sqlx::query_scalar("SELECT last_verdict FROM gateways WHERE id = $1")
            .bind(id)
            .fetch_one(&app.state.pool)
            .await
            .expect("verdict");
    assert_eq!(verdict.as_deref(), Some("Verified"));

    // Consent missing (on demand): the advice names admin consent.
    let (status, body) = sim
        .control("POST", "/sim/graph/faults?kind=consent-missing", "")
        .await;
    assert_eq!(status, 200, "{body}");
    let page = troubleshoot().await;
    assert!(page.contains("AADSTS65001"), "{page}");
    assert!(page.contains("consent"), "{page}");

    // A Test Mailbox outside the application's RBAC scope: 403, with what
    // to grant and where.
    edit("", "boss@contoso.com").await;
    let page = troubleshoot().await;
    assert!(page.contains("Failed - Access Denied"), "{page}");
    assert!(page.contains("Calendars.Read"), "{page}");
    assert!(page.contains("RBAC for Applications"), "{page}");
}
