//! The Certificate Import Tool's fetch (TS-8): the chain a server presents on
//! host:port, captured with `CapturingVerifier` (which accepts any chain but
//! still checks the handshake signature, so the server proved it holds the
//! leaf's key). Nothing here judges the chain: the administrator does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::domain::gateway::ServerLocation;

use super::capture::CapturingVerifier;

/// How long one fetch may take in all: resolving, connecting, handshaking.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificates `host:port` presents, leaf first, or a message for the
/// administrator saying why none could be fetched. Bounded by `bound`.
pub async fn presented_chain(
    host: &ServerLocation,
    port: u16,
    bound: Duration,
) -> Result<Vec<CertificateDer<'static>>, String> {
    match tokio::time::timeout(bound, fetch(host, port)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(format!(
            "No TLS answer from {} within {} s: check the host, the port and any firewall \
             between this server and it.",
            shown(host, port),
            bound.as_secs_f32().ceil()
        )),
    }
}

fn shown(host: &ServerLocation, port: u16) -> String {
    match host {
        ServerLocation::Ip(ip) if ip.is_ipv6() => format!("[{ip}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

async fn fetch(host: &ServerLocation, port: u16) -> Result<Vec<CertificateDer<'static>>, String> {
    let addresses: Vec<SocketAddr> = match host {
        ServerLocation::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        ServerLocation::Name(name) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|e| format!("The name {name} could not be resolved ({e})."))?
            .collect(),
    };
    let mut failures = Vec::new();
    let mut tcp = None;
    for address in &addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => {
                tcp = Some(stream);
                break;
            }
            Err(e) => failures.push(format!("{address}: {}", super::capture::describe_io(&e))),
        }
    }
    let Some(tcp) = tcp else {
        return Err(if failures.is_empty() {
            format!("The name {host} resolved to no address.")
        } else {
            format!(
                "Could not connect to {}: {}.",
                shown(host, port),
                failures.join("; ")
            )
        });
    };

    let verifier = CapturingVerifier::new(super::provider());
    let config = super::capture::client_config(verifier.clone())?;
    let name = super::capture::server_name(host)?;
    let connector = TlsConnector::from(Arc::new(config));
    // A chain recorded by a handshake that then failed is not offered: the
    // server did not prove it holds the leaf's key.
    let stream = connector
        .connect(name, tcp)
        .await
        .map_err(|e| describe_tls_error(&e, host, port))?;
    drop(stream);
    let chain = verifier.chain();
    if chain.is_empty() {
        return Err(format!(
            "{} completed the handshake without presenting a certificate.",
            shown(host, port)
        ));
    }
    Ok(chain)
}

fn describe_tls_error(e: &std::io::Error, host: &ServerLocation, port: u16) -> String {
    let at = shown(host, port);
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidMessage(_)) => {
            format!("{at} does not speak TLS (its answer is not a TLS handshake).")
        }
        Some(rustls::Error::AlertReceived(rustls::AlertDescription::ProtocolVersion))
        | Some(rustls::Error::PeerIncompatible(_)) => format!(
            "{at} offers no TLS version this service speaks (only TLS 1.2 and 1.3 are \
             supported)."
        ),
        Some(other) => format!("The TLS handshake with {at} failed: {other}."),
        None => format!(
            "The TLS handshake with {at} failed: {}.",
            super::capture::describe_io(e)
        ),
    }
}
