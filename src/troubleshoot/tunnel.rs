//! A tunnel through an HTTP CONNECT proxy (GR-3): the request, and the
//! proxy's answer read a byte at a time, so nothing the destination sends
//! after it is swallowed before the TLS handshake reads it.

use base64::Engine as _;
use secrecy::ExposeSecret;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::domain::gateway::ServerLocation;
use crate::domain::proxy::ProxyCredentials;

/// A proxy's answer head is a status line and a few headers: anything
/// longer is not an HTTP proxy.
const MAX_HEAD: usize = 8 * 1024;

/// `host:port` as CONNECT names it (IPv6 in brackets).
pub fn authority(host: &ServerLocation, port: u16) -> String {
    match host {
        ServerLocation::Ip(std::net::IpAddr::V6(ip)) => format!("[{ip}]:{port}"),
        other => format!("{other}:{port}"),
    }
}

/// Asks the proxy on `stream` for a tunnel to `host:port`. Err is the
/// troubleshooter's sentence. The caller bounds the time.
pub async fn open(
    stream: &mut TcpStream,
    host: &ServerLocation,
    port: u16,
    credentials: Option<&ProxyCredentials>,
) -> Result<(), String> {
    let authority = authority(host, port);
    let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(c) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            c.user,
            c.password.expose_secret()
        ));
        request.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("The proxy closed the connection before the tunnel request: {e}."))?;
    let head = read_head(stream).await?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    let reason = parts.next().unwrap_or_default().trim();
    let Some(code) = code.filter(|_| version.starts_with("HTTP/1.")) else {
        return Err(format!(
            "The proxy's answer to CONNECT is not HTTP ({:?}): is this an HTTP proxy?",
            status_line.chars().take(60).collect::<String>()
        ));
    };
    if (200..300).contains(&code) {
        return Ok(());
    }
    Err(refused(code, reason, &authority, credentials.is_some()))
}

/// The sentence for a refused tunnel, saying what to change.
fn refused(code: u16, reason: &str, authority: &str, with_credentials: bool) -> String {
    let status = if reason.is_empty() {
        code.to_string()
    } else {
        format!("{code} {reason}")
    };
    let advice = match code {
        407 if with_credentials => {
            "check Proxy User and Proxy Password on System > Settings".to_owned()
        }
        407 => "the proxy asks for credentials: enter Proxy User and Proxy Password on System > \
                Settings"
            .to_owned(),
        403 => {
            format!("the proxy's rules do not allow {authority}: ask its administrator to allow it")
        }
        502..=504 => format!("the proxy could not reach {authority}"),
        _ => format!("the proxy did not open a tunnel to {authority}"),
    };
    format!("The proxy refused the tunnel: {status} — {advice}.")
}

/// Reads up to the blank line ending the answer's head, and no further.
async fn read_head(stream: &mut TcpStream) -> Result<String, String> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD {
            return Err(format!(
                "The proxy's answer to CONNECT is longer than {} KiB: is this an HTTP proxy?",
                MAX_HEAD / 1024
            ));
        }
        match stream.read(&mut byte).await {
            Ok(0) => {
                return Err(
                    "The proxy closed the connection without answering the tunnel request."
                        .to_owned(),
                );
            }
            Ok(_) => head.push(byte[0]),
            Err(e) => return Err(format!("The proxy's answer could not be read: {e}.")),
        }
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_say_what_to_change() {
        let r = refused(407, "Proxy Authentication Required", "h:443", false);
        assert_eq!(
            r,
            "The proxy refused the tunnel: 407 Proxy Authentication Required — the proxy asks \
             for credentials: enter Proxy User and Proxy Password on System > Settings."
        );
        assert!(refused(407, "", "h:443", true).contains("check Proxy User and Proxy Password"));
        assert!(refused(403, "Forbidden", "h:443", false).contains("do not allow h:443"));
        assert!(refused(502, "Bad Gateway", "h:443", false).contains("could not reach h:443"));
    }
}
