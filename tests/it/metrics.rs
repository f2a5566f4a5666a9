//! EN-8: `GET /metrics` in the Prometheus text format, over a real port;
//! the figures move when the engine publishes a meeting, and only a
//! loopback caller or an API token may read them.

use std::time::Duration;

use crate::presence_engine::{Rig, rfc3339};

/// The value of the sample `name{labels}` (labels exactly as rendered), if
/// the page has it.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test]
async fn the_figures_move_when_a_meeting_is_published() {
    let rig = Rig::new(&[]).await;
    rig.add_gateway("Metrics Sim", rig.sim.port()).await;
    rig.add_user("mona", "mona@example.com").await;
    let now = rig.app.state.now();
    let start = now.div_euclid(60) * 60;
    rig.script(&[("mona@example.com", start, start + 1800, "Busy")])
        .await;
    let client = crate::support::bare_client();
    let scrape = || async {
        let response = client
            .get(rig.app.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status().as_u16(), 200);
        let kind = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        assert!(kind.starts_with("text/plain; version=0.0.4"), "{kind}");
        response.text().await.expect("body")
    };
    let before = scrape().await;
    let transitions = "presence_gateway_transitions_total{node=\"test-node\"}";
    let transitions_before = sample(&before, transitions).unwrap_or(0.0);
    let _engine = rig.start_engine().await;
    // Learned late (the meeting began this minute): published at once.
    let seen = rig.wait_presence("mona", "in_a_meeting", 10).await;
    assert_eq!(seen["since"], rfc3339(start));
    let mut page = String::new();
    for _ in 0..50 {
        page = scrape().await;
        if sample(&page, transitions).unwrap_or(0.0) > transitions_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gateway = "node=\"test-node\",gateway=\"Metrics Sim\"";
    assert!(
        sample(
            &page,
            &format!("presence_gateway_exchange_requests_total{{{gateway}}}")
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        sample(
            &page,
            &format!("presence_gateway_exchange_answer_seconds_count{{{gateway}}}")
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        page.contains(&format!(
            "presence_gateway_exchange_answer_seconds_bucket{{{gateway},le=\"0.005\"}}"
        )),
        "a histogram: {page}"
    );
    assert!(
        sample(&page, transitions).unwrap_or(0.0) > transitions_before,
        "{page}"
    );
    assert!(
        page.contains(
            "presence_gateway_publication_lag_seconds_bucket{node=\"test-node\",le=\"0\"}"
        ),
        "{page}"
    );
    assert_eq!(
        sample(
            &page,
            "presence_gateway_calendar_users{node=\"test-node\",state=\"in_a_meeting\"}"
        ),
        Some(1.0),
        "{page}"
    );
    assert!(page.contains("presence_gateway_streams{node=\"test-node\"}"));
    // No user ID or mailbox anywhere on the page.
    assert!(!page.contains("mona"), "{page}");
}

#[tokio::test]
async fn a_token_reads_the_figures_and_a_bad_one_is_refused() {
    let app = crate::support::admin_app().await;
    let token = crate::api::create_token(&app, "Prometheus").await;
    let client = crate::support::bare_client();
    let with = |value: String| {
        client
            .get(app.url("/metrics"))
            .header("Authorization", value)
            .send()
    };
    let ok = with(format!("Bearer {token}")).await.expect("GET");
    assert_eq!(ok.status().as_u16(), 200);
    assert!(
        ok.text()
            .await
            .unwrap()
            .contains("presence_gateway_streams")
    );
    // A request that sends a token is judged by it, even from loopback.
    let bad = with("Bearer pgw_not-a-token".to_owned())
        .await
        .expect("GET");
    assert_eq!(bad.status().as_u16(), 401);
}

/// From off loopback (here an in-process request whose peer is a
/// documentation address: tests reach only loopback over the network),
/// an anonymous caller is refused, and a forwarded-for header claiming
/// loopback changes nothing; a token still reads.
#[tokio::test]
async fn an_anonymous_caller_from_off_loopback_is_refused() {
    use tower::ServiceExt;
    let app = crate::support::admin_app().await;
    let token = crate::api::create_token(&app, "Remote Prometheus").await;
    let router = presence_gateway::web::app(app.state.clone());
    let remote: std::net::SocketAddr = "192.0.2.10:40000".parse().unwrap();
    let request = |authorization: Option<String>| {
        let mut builder = axum::http::Request::get("/metrics")
            .header("Host", "gateway.example.com")
            .header("X-Forwarded-For", "127.0.0.1");
        if let Some(value) = authorization {
            builder = builder.header("Authorization", value);
        }
        let mut request = builder.body(axum::body::Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(presence_gateway::net::Peer(remote));
        request
    };
    let refused = router.clone().oneshot(request(None)).await.unwrap();
    assert_eq!(refused.status().as_u16(), 401);
    let read = router
        .oneshot(request(Some(format!("Bearer {token}"))))
        .await
        .unwrap();
    assert_eq!(read.status().as_u16(), 200);
}
