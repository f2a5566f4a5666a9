//! Slow and silent clients (SY-5): connections that never finish their
//! request head, or sit idle after an answer, are closed; a flood of them
//! cannot shut `/healthz` out of the console or Exchange out of the
//! notification listener; and the listener binds only the Notification
//! Host's address when that address is this machine's.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use presence_gateway::net::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::engine::{free_port, set_param, wait_state};
use crate::support::{ADMIN_PASSWORD, TestApp, bare_client, private_tempdir};

const CAP: usize = 64;
const FLOOD: usize = 200;
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

fn narrow() -> Limits {
    Limits {
        max_connections: CAP,
        header_timeout: HEADER_TIMEOUT,
        grace: Duration::from_secs(1),
    }
}

/// `count` connections to `addr`, each having sent half a request head.
async fn silent_connections(addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("half a head");
        held.push(stream);
    }
    held
}

/// Whether the server has closed `stream`: a read that ends (or fails)
/// within `wait`. Nothing is ever answered to half a head.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(_)) => panic!("an answer to half a request head"),
        Err(_) => false,
    }
}

async fn healthz(addr: SocketAddr) -> u16 {
    let response = tokio::time::timeout(
        Duration::from_secs(5),
        bare_client().get(format!("http://{addr}/healthz")).send(),
    )
    .await
    .expect("/healthz answers within 5 s")
    .expect("/healthz");
    response.status().as_u16()
}

/// Floods `addr` with silent connections and checks what SY-5 promises.
async fn flood_is_survived(addr: SocketAddr, health: Option<SocketAddr>) {
    let started = Instant::now();
    let mut flood = silent_connections(addr, FLOOD).await;
    // While the flood holds every place, real clients still get in: each
    // new connection takes the longest-idle one's place.
    if let Some(health) = health {
        assert_eq!(healthz(health).await, 200);
    }
    let mut fresh = silent_connections(addr, 1).await;
    // The oldest were closed at once to make room, well before any timeout.
    let early = started.elapsed();
    if early + Duration::from_millis(500) < HEADER_TIMEOUT {
        let mut evicted = 0;
        for stream in flood.iter_mut().take(FLOOD - CAP) {
            if closed_within(stream, Duration::from_millis(20)).await {
                evicted += 1;
            }
        }
        assert_eq!(
            evicted,
            FLOOD - CAP,
            "the oldest silent connections are closed"
        );
    }
    // And every silent connection, the newest too, is closed by the header
    // timeout.
    for stream in flood.iter_mut().chain(fresh.iter_mut()) {
        assert!(
            closed_within(stream, HEADER_TIMEOUT + Duration::from_secs(3)).await,
            "a silent connection outlived the header timeout"
        );
    }
}

#[tokio::test]
async fn silent_connections_cannot_shut_the_console_out() {
    let dir = private_tempdir().expect("temp dir");
    let app = TestApp::spawn_limited(dir, Some(ADMIN_PASSWORD), narrow()).await;
    flood_is_survived(app.addr, Some(app.addr)).await;
    assert_eq!(healthz(app.addr).await, 200);
}

#[tokio::test]
async fn an_idle_kept_connection_is_closed_after_the_timeout() {
    let dir = private_tempdir().expect("temp dir");
    let app = TestApp::spawn_limited(dir, Some(ADMIN_PASSWORD), narrow()).await;
    let mut stream = TcpStream::connect(app.addr).await.expect("connect");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&answer).contains("\r\n\r\n") {
        assert!(Instant::now() < deadline, "no answer to /healthz");
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("answer in time")
            .expect("read");
        assert!(n > 0, "closed before answering");
        answer.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    // Kept alive, then idle: closed once the timeout passes, not before.
    let idle = Instant::now();
    let mut rest = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(
            HEADER_TIMEOUT + Duration::from_secs(3),
            stream.read(&mut rest),
        )
        .await
        {
            // The rest of the body, if it came in a second read.
            Ok(Ok(n)) if n > 0 => continue,
            Ok(_) => break true,
            Err(_) => break false,
        }
    };
    assert!(closed, "an idle kept connection stayed open");
    assert!(idle.elapsed() >= HEADER_TIMEOUT - Duration::from_millis(200));
}

#[tokio::test]
async fn the_notification_listener_survives_silent_connections_on_its_own_address() {
    let dir = private_tempdir().expect("temp dir");
    let mut app = TestApp::spawn_in(dir, Some(ADMIN_PASSWORD)).await;
    let node = app.state.settings.node_name.clone();
    let port = free_port();
    set_param(
        &app.state.pool,
        &node,
        "notification_port",
        &port.to_string(),
    )
    .await;
    set_param(&app.state.pool, &node, "notification_host", "127.0.0.1").await;
    app.state.listener_limits = narrow();
    let _engine =
        crate::engine::Engine(presence_gateway::engine::spawn(app.state.engine_context()));
    wait_state(&app.state.pool, &node, "running").await;

    // Bound to the Notification Host's address only: another loopback
    // address of this machine finds nothing listening.
    let elsewhere = SocketAddr::from(([127, 0, 0, 2], port));
    assert!(
        TcpStream::connect(elsewhere).await.is_err(),
        "the notification port answers on an address other than the Notification Host"
    );
    let listener = SocketAddr::from(([127, 0, 0, 1], port));
    flood_is_survived(listener, None).await;
    // Still answering afterwards: a notification for no subscription.
    let answer = bare_client()
        .post(format!("http://{listener}/ews/unknown"))
        .body("not a notification")
        .send()
        .await
        .expect("the listener answers after the flood");
    assert_eq!(answer.status().as_u16(), 400);
}
