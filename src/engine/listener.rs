//! The engine's notification-port listeners: TCP (HTTP, EWS push
//! notifications) and UDP (HTTPU, WebDAV), on the same port. Binding both is
//! what makes a start fail when another program holds the port.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// Largest notification accepted; EWS notifications are a few KiB.
const BODY_LIMIT: usize = 256 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const STOP_GRACE: Duration = Duration::from_secs(3);

use super::push::{Heard, Registry};
use crate::exchange::{graph, push};
use crate::net::Limits;

pub struct Listener {
    shutdown: oneshot::Sender<()>,
    http: JoinHandle<()>,
    udp: JoinHandle<()>,
}

impl Listener {
    /// Binds `port` for TCP and UDP, or says why not: on the Notification
    /// Host's address when it is an address of this machine (nothing else
    /// need reach an unauthenticated port), else on every IPv4 address (a
    /// host name, or an address translated on the way in). EWS notifications
    /// are judged against `registry`; those it holds go to the engine
    /// through `heard`. Connections are served within `limits`.
    pub async fn bind(
        host: &str,
        port: u16,
        limits: Limits,
        registry: Arc<Registry>,
        heard: mpsc::Sender<Heard>,
    ) -> Result<Listener, String> {
        let every = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
        let (tcp, addr) = match host.parse::<IpAddr>() {
            Ok(ip) => match TcpListener::bind((ip, port)).await {
                Ok(tcp) => (tcp, SocketAddr::from((ip, port))),
                Err(e) if e.kind() == std::io::ErrorKind::AddrNotAvailable => {
                    tracing::debug!(%ip, "Notification Host is not an address of this machine");
                    let tcp = TcpListener::bind(every)
                        .await
                        .map_err(|e| held(port, "TCP", &e))?;
                    (tcp, every)
                }
                Err(e) => return Err(held(port, "TCP", &e)),
            },
            Err(_) => {
                let tcp = TcpListener::bind(every)
                    .await
                    .map_err(|e| held(port, "TCP", &e))?;
                (tcp, every)
            }
        };
        let udp = UdpSocket::bind(addr)
            .await
            .map_err(|e| held(port, "UDP", &e))?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = Router::new()
            .fallback(move |request: Request<Body>| {
                let registry = registry.clone();
                let heard = heard.clone();
                async move { acknowledge(&registry, &heard, request).await }
            })
            .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
            .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                REQUEST_TIMEOUT,
            ));
        let http = tokio::spawn(async move {
            let stopped = async {
                let _ = stopped.await;
            };
            if let Err(e) = crate::net::serve(tcp, None, app, limits, stopped).await {
                tracing::warn!(error = %e, "notification listener stopped");
            }
        });
        let udp = tokio::spawn(async move {
            // HTTPU notifications are single datagrams; nothing to answer.
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match udp.recv_from(&mut buf).await {
                    Ok((n, peer)) => tracing::debug!(%peer, bytes = n, "HTTPU notification"),
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTPU receive failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Listener {
            shutdown,
            http,
            udp,
        })
    }

    /// Closes both sockets; returns once the port is free again.
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        self.udp.abort();
        let _ = self.udp.await;
        let mut http = self.http;
        if tokio::time::timeout(STOP_GRACE, &mut http).await.is_err() {
            http.abort();
            let _ = http.await;
        }
    }
}

fn held(port: u16, protocol: &str, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        format!(
            "Microsoft Exchange Notification Port {port} is in use by another program \
             ({protocol}): free it or choose another port in Service Parameters."
        )
    } else {
        format!("cannot listen on Microsoft Exchange Notification Port {port} ({protocol}): {e}")
    }
}

/// Microsoft 365 (GR-5): Graph's validation request (a `validationToken`
/// to echo as text/plain, at once: Graph waits 10 s), or notifications,
/// answered 202 whatever they hold, so a forger learns nothing.
fn graph_notified(
    registry: &Registry,
    heard: &mpsc::Sender<Heard>,
    query: &str,
    body: &[u8],
) -> Response {
    if let Some(token) = graph::validation_token(query) {
        return (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            token,
        )
            .into_response();
    }
    match graph::parse_notifications(body) {
        Ok(notifications) => {
            super::push::notified_graph(registry, heard, &notifications);
            StatusCode::ACCEPTED.into_response()
        }
        Err(e) => {
            tracing::debug!(error = %e, "not a Microsoft Graph notification");
            (
                StatusCode::BAD_REQUEST,
                "not a Microsoft Graph notification\n",
            )
                .into_response()
        }
    }
}

/// Answers a notification: `OK` for a subscription the engine holds, after
/// handing it to the engine; `Unsubscribe` for any other, so Exchange stops
/// posting what nobody reads.
async fn acknowledge(
    registry: &Registry,
    heard: &mpsc::Sender<Heard>,
    request: Request<Body>,
) -> Response {
    if request.method() != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let Ok(body) = to_bytes(request.into_body(), BODY_LIMIT).await else {
        return StatusCode::PAYLOAD_TOO_LARGE.into_response();
    };
    // A reverse proxy may forward the Notification URL's own path prefix
    // (https://host/pg/graph/notify) or strip it: either is Graph's.
    if path.ends_with(graph::NOTIFY_PATH) || path.ends_with(graph::LIFECYCLE_PATH) {
        return graph_notified(registry, heard, &query, &body);
    }
    let notifications = match push::parse_notification(&body) {
        Ok(notifications) => notifications,
        Err(e) => {
            tracing::debug!(path, error = %e, "not an EWS notification");
            return (StatusCode::BAD_REQUEST, "not an EWS SendNotification\n").into_response();
        }
    };
    let keep = super::push::notified(registry, heard, &path, &notifications);
    if keep == push::Keep::Unsubscribe {
        tracing::debug!(path, "notification for no subscription held: Unsubscribe");
    }
    (
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        push::answer(keep),
    )
        .into_response()
}
