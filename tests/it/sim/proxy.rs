//! The Outbound Proxy (GR-3) over loopback: a small CONNECT proxy that
//! counts its tunnels stands between the Microsoft 365 troubleshooter and
//! exchange-sim's Graph face. Through it when configured, past it when No
//! Proxy For names the host, a plain verdict when it wants credentials;
//! and the System > Settings fields that configure it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use presence_gateway::domain::gateway::ServerLocation;
use presence_gateway::domain::proxy::{NoProxy, Proxy, ProxyCredentials, ProxyServer};
use presence_gateway::exchange::graph::Cloud;
use presence_gateway::troubleshoot::graph::{GraphTarget, run};
use presence_gateway::troubleshoot::{Status, VERIFIED};
use rustls::pki_types::CertificateDer;
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{PASSWORD, PASSWORD_ENV, SimProcess};

const TENANT: &str = "8f2c6a1e-4b7d-4e9a-9c3f-2d5e7a1b0c64";
const CLIENT: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";
/// `Basic` of `svc-proxy:Pr0xy pass`.
const PROXY_USER: &str = "svc-proxy";
const PROXY_PASSWORD: &str = "Pr0xy pass";

/// A CONNECT proxy on loopback: counts the tunnels it opened and, when
/// given one, requires this `Proxy-Authorization` value.
struct TestProxy {
    port: u16,
    tunnels: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestProxy {
    async fn start(require: Option<String>) -> TestProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("address").port();
        let tunnels = Arc::new(AtomicUsize::new(0));
        let counted = tunnels.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counted = counted.clone();
                let require = require.clone();
                tokio::spawn(async move {
                    // Bounded: a stuck test must not hang the suite.
                    let _ = tokio::time::timeout(
                        Duration::from_secs(30),
                        tunnel(client, require, counted),
                    )
                    .await;
                });
            }
        });
        TestProxy {
            port,
            tunnels,
            task,
        }
    }

    fn tunnels(&self) -> usize {
        self.tunnels.load(Ordering::SeqCst)
    }

    fn server(&self) -> ProxyServer {
        ProxyServer {
            host: ServerLocation::parse("127.0.0.1").expect("ip"),
            port: self.port,
        }
    }
}

async fn tunnel(mut client: TcpStream, require: Option<String>, tunnels: Arc<AtomicUsize>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 8192 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let request = lines.next().unwrap_or_default().to_owned();
    let mut parts = request.split(' ');
    let (Some("CONNECT"), Some(authority)) = (parts.next(), parts.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    if let Some(expected) = require {
        let given = lines.find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("proxy-authorization"))
                .map(|(_, v)| v.trim().to_owned())
        });
        if given.as_deref() != Some(expected.as_str()) {
            let _ = client
                .write_all(
                    b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic \
                      realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
                )
                .await;
            return;
        }
    }
    let Ok(mut upstream) = TcpStream::connect(authority).await else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            .await;
        return;
    };
    tunnels.fetch_add(1, Ordering::SeqCst);
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_err()
    {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn trust(sim: &SimProcess) -> Vec<CertificateDer<'static>> {
    let pem = std::fs::read(sim.dir.path().join("ca.pem")).expect("ca.pem");
    rustls_pemfile::certs(&mut pem.as_slice())
        .map(|c| c.expect("certificate"))
        .collect()
}

fn target(sim: &SimProcess, proxy: Option<Proxy>) -> GraphTarget {
    let base = format!("https://localhost:{}", sim.port());
    GraphTarget {
        cloud: Cloud::Custom {
            signin: base.clone(),
            graph: base,
        },
        tenant: TENANT.to_owned(),
        client_id: CLIENT.to_owned(),
        secret: Some(SecretString::from(PASSWORD.to_owned())),
        mailbox: None,
        trust: trust(sim),
        proxy,
        timeout: Duration::from_secs(5),
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
    }
}

fn start_sim() -> SimProcess {
    SimProcess::start(&["--graph-secret-env", PASSWORD_ENV])
}

fn detail(report: &presence_gateway::troubleshoot::Report, id: &str) -> String {
    report
        .checks
        .iter()
        .find(|c| c.id == id)
        .map(|c| c.detail.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn proxy_carries_the_microsoft_365_troubleshooter_unless_no_proxy_names_the_host() {
    let sim = start_sim();
    let proxy = TestProxy::start(None).await;
    let through = |no_proxy: &str| Proxy {
        server: proxy.server(),
        credentials: None,
        no_proxy: NoProxy::parse(no_proxy).expect("list"),
    };

    // Through the proxy: the names and chain judged are the destination's.
    let report = run(&target(&sim, Some(through("")))).await;
    assert_eq!(report.verdict, VERIFIED, "{}", report.to_text());
    assert!(proxy.tunnels() > 0);
    assert!(
        detail(&report, "tcp").contains("through the outbound proxy"),
        "{}",
        report.to_text()
    );
    assert!(
        detail(&report, "dns").contains("the outbound proxy resolves localhost itself"),
        "{}",
        report.to_text()
    );
    assert_eq!(report.matched_name.as_deref(), Some("localhost"));

    // No Proxy For names the host: straight to it, the tunnels unchanged.
    let before = proxy.tunnels();
    for list in ["localhost", ".localhost", "example.com, *"] {
        let report = run(&target(&sim, Some(through(list)))).await;
        assert_eq!(report.verdict, VERIFIED, "{list}: {}", report.to_text());
        assert!(!detail(&report, "tcp").contains("proxy"), "{list}");
    }
    assert_eq!(proxy.tunnels(), before);
}

#[tokio::test]
async fn proxy_wanting_credentials_fails_the_tcp_check_plainly() {
    let sim = start_sim();
    let proxy = TestProxy::start(Some(basic(PROXY_USER, PROXY_PASSWORD))).await;
    let with = |credentials: Option<(&str, &str)>| Proxy {
        server: proxy.server(),
        credentials: credentials.map(|(user, password)| ProxyCredentials {
            user: user.to_owned(),
            password: SecretString::from(password.to_owned()),
        }),
        no_proxy: NoProxy::default(),
    };

    let report = run(&target(&sim, Some(with(None)))).await;
    assert!(!report.ok);
    let tcp = report.checks.iter().find(|c| c.id == "tcp").expect("tcp");
    assert_eq!(tcp.status, Status::Fail);
    assert!(
        tcp.detail.starts_with(
            "The proxy refused the tunnel: 407 Proxy Authentication Required — the proxy asks \
             for credentials"
        ),
        "{}",
        tcp.detail
    );
    // Nothing was judged or sent past a refused tunnel.
    for id in ["tls", "chain", "auth"] {
        let c = report.checks.iter().find(|c| c.id == id).expect(id);
        assert_eq!(c.status, Status::Skip, "{id}");
    }

    let report = run(&target(&sim, Some(with(Some((PROXY_USER, "wrong")))))).await;
    assert!(detail(&report, "tcp").contains("check Proxy User and Proxy Password"));
    assert_eq!(proxy.tunnels(), 0);

    let report = run(&target(
        &sim,
        Some(with(Some((PROXY_USER, PROXY_PASSWORD)))),
    ))
    .await;
    assert_eq!(report.verdict, VERIFIED, "{}", report.to_text());
    assert!(proxy.tunnels() > 0);
}

/// System > Settings: the fields validated beside themselves, the password
/// never rendered back nor audited, and the console's troubleshooter then
/// reaching a Microsoft 365 gateway through the saved proxy.
#[tokio::test]
async fn proxy_settings_page_saves_validates_and_is_used_by_the_console() {
    let app = crate::support::admin_app().await;
    let field_error = crate::support::field_error;
    let page = app.get_text("/system/settings").await.1;
    for label in [
        "Outbound Proxy",
        "Proxy User",
        "Proxy Password",
        "No Proxy For",
    ] {
        assert!(page.contains(label), "{label}");
    }

    // Invalid fields: each message beside its field, nothing stored.
    let (status, page) = app
        .post_text(
            "/system/settings",
            &[
                ("section", "proxy"),
                ("action", "save"),
                ("proxy_url", "https://proxy.example.com"),
                ("proxy_user", "a:b"),
                ("proxy_password", "x"),
                ("no_proxy", "a*b.com"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "proxy_url").is_some_and(|e| e.contains("http://")));
    assert!(field_error(&page, "proxy_user").is_some_and(|e| e.contains("colon")));
    assert!(field_error(&page, "no_proxy").is_some_and(|e| e.contains("wildcard")));
    assert!(!page.contains("value=\"x\""));
    assert_eq!(app.count("SELECT COUNT(*) FROM outbound_proxy").await, 0);
    let (status, page) = app
        .post_text(
            "/system/settings",
            &[
                ("section", "proxy"),
                ("action", "save"),
                ("proxy_url", "http://proxy.example.com"),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "proxy_url").is_some_and(|e| e.contains("port")));
    // A user needs a password.
    let (status, page) = app
        .post_text(
            "/system/settings",
            &[
                ("section", "proxy"),
                ("action", "save"),
                ("proxy_url", "http://127.0.0.1:9"),
                ("proxy_user", PROXY_USER),
            ],
        )
        .await;
    assert_eq!(status, 422);
    assert!(field_error(&page, "proxy_password").is_some(), "{page}");

    // The proxy saved: the password sealed, never shown, never audited.
    let sim = SimProcess::start(&[
        "--graph-secret-env",
        PASSWORD_ENV,
        "--graph-domain",
        "contoso.onmicrosoft.com",
        "--graph-client-id",
        CLIENT,
    ]);
    let proxy = TestProxy::start(Some(basic(PROXY_USER, PROXY_PASSWORD))).await;
    let url = format!("http://127.0.0.1:{}", proxy.port);
    let save = |password: &'static str, no_proxy: &'static str| {
        let url = url.clone();
        let app = &app;
        async move {
            let response = app
                .post_form(
                    "/system/settings",
                    &[
                        ("section", "proxy"),
                        ("action", "save"),
                        ("proxy_url", &url),
                        ("proxy_user", PROXY_USER),
                        ("proxy_password", password),
                        ("no_proxy", no_proxy),
                    ],
                )
                .await;
            assert_eq!(response.status().as_u16(), 303);
        }
    };
    save(PROXY_PASSWORD, "intranet.example.com").await;
    let page = app.get_text("/system/settings").await.1;
    assert!(page.contains(&url));
    assert!(page.contains("A password is stored"));
    assert!(!page.contains(PROXY_PASSWORD));
    let audit: Vec<String> = sqlx::query_scalar(
        "SELECT COALESCE(before_json, '') || COALESCE(after_json, '') FROM audit_log
         WHERE target = 'Outbound Proxy'",
    )
    .fetch_all(&app.state.pool)
    .await
    .expect("audit");
    assert_eq!(audit.len(), 1);
    assert!(audit[0].contains("[redacted]") && !audit[0].contains(PROXY_PASSWORD));
    // An empty password keeps the stored one.
    save("", "intranet.example.com, other.example.com").await;

    // The console's troubleshooter on a Microsoft 365 gateway goes through it.
    let pem = std::fs::read(sim.dir.path().join("ca.pem")).expect("ca.pem");
    for der in rustls_pemfile::certs(&mut pem.as_slice()) {
        let der = der.expect("PEM");
        let info = presence_gateway::tls::certinfo::parse(&der).expect("certificate");
        presence_gateway::store::trust::insert(&app.state.pool, &der, &info, "admin", 0)
            .await
            .expect("trust");
    }
    let base = format!("https://localhost:{}", sim.port());
    let response = app
        .post_form(
            "/presence/gateways/new",
            &[
                ("type", "graph"),
                ("description", "Exchange Online"),
                ("tenant", "contoso.onmicrosoft.com"),
                ("client_id", CLIENT),
                ("client_secret", PASSWORD),
                ("confirm_client_secret", PASSWORD),
                ("cloud", "custom"),
                ("signin_url", &base),
                ("graph_url", &base),
                ("test_mailbox", ""),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let id = crate::support::location(&response)
        .rsplit('/')
        .next()
        .and_then(|id| id.parse::<i64>().ok())
        .expect("gateway id");
    let (status, panel) = app
        .post_text(&format!("/presence/gateways/{id}/troubleshoot"), &[])
        .await;
    assert_eq!(status, 200);
    assert!(panel.contains("through the outbound proxy"), "{panel}");
    assert!(proxy.tunnels() > 0);
    assert!(panel.contains(VERIFIED), "{panel}");

    // Cleared: straight to Microsoft 365 again.
    let response = app
        .post_form(
            "/system/settings",
            &[("section", "proxy"), ("action", "clear")],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    let before = proxy.tunnels();
    let (_, panel) = app
        .post_text(&format!("/presence/gateways/{id}/troubleshoot"), &[])
        .await;
    assert!(!panel.contains("through the outbound proxy"), "{panel}");
    assert_eq!(proxy.tunnels(), before);
}

/// GR-3 in the engine: with an Outbound Proxy saved, the engine's token
/// requests and getSchedule reads to Microsoft 365 go through its tunnels.
#[tokio::test]
async fn proxy_carries_the_engines_microsoft_365_reads() {
    use crate::presence_engine::{GRAPH_ARGS, Rig};
    let proxy = TestProxy::start(None).await;
    let rig = Rig::new(GRAPH_ARGS).await;
    rig.add_graph_gateway("Online").await;
    rig.add_user("alice", "alice@example.com").await;
    rig.script_empty("alice@example.com").await;
    let proxy_url = format!("http://127.0.0.1:{}", proxy.port);
    let response = rig
        .app
        .post_form(
            "/system/settings",
            &[
                ("section", "proxy"),
                ("action", "save"),
                ("proxy_url", &proxy_url),
                ("proxy_user", ""),
                ("proxy_password", ""),
                ("no_proxy", ""),
            ],
        )
        .await;
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(proxy.tunnels(), 0);
    let _engine = rig.start_engine().await;
    rig.wait_first_read().await;
    rig.advance_to(rig.app.state.now() + 60);
    let seen = rig.wait_presence_moving("alice", "available", 10).await;
    assert_eq!(seen["gateway"], "Online");
    assert!(
        proxy.tunnels() >= 1,
        "the engine's requests went around the proxy"
    );
}
