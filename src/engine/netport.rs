//! Whether a port is free on this host, for the Microsoft Exchange
//! Notification Port (SPEC section 3): the engine listens on it for TCP
//! (EWS) or UDP (WebDAV), so a port another program holds in either is
//! refused before it is saved, not discovered when the engine fails to start.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

/// Tries to bind `port` for TCP and for UDP on every IPv4 address, and on
/// every IPv6 address when this host has IPv6. The sockets close at once.
/// The message names the port and the protocol, for beside the field.
pub fn check_free(port: u16) -> Result<(), String> {
    let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let v6 = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
    let refused = |protocol: &str, error: std::io::Error| -> String {
        if error.kind() == ErrorKind::AddrInUse {
            format!(
                "Port {port} is in use by another program on this server ({protocol}): \
                 choose another."
            )
        } else {
            format!("Port {port} cannot be opened on this server ({protocol}): {error}.")
        }
    };
    TcpListener::bind(v4).map_err(|e| refused("TCP", e))?;
    UdpSocket::bind(v4).map_err(|e| refused("UDP", e))?;
    // Without IPv6 the bind fails with "address family not supported" or
    // "cannot assign address": nothing can hold the port there, so only
    // "in use" counts.
    if let Err(e) = TcpListener::bind(v6)
        && e.kind() == ErrorKind::AddrInUse
    {
        return Err(refused("TCP", e));
    }
    if let Err(e) = UdpSocket::bind(v6)
        && e.kind() == ErrorKind::AddrInUse
    {
        return Err(refused("UDP", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A port the system just handed out and no one holds any more.
    fn released_port() -> u16 {
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        listener.local_addr().unwrap().port()
    }

    #[test]
    fn a_free_port_passes() {
        // Another test (or program) may take the released port meanwhile:
        // try a few before calling it a failure.
        let free = (0..5).any(|_| check_free(released_port()).is_ok());
        assert!(free, "no released port was free in five tries");
    }

    #[test]
    fn a_port_held_for_tcp_is_refused_naming_tcp() {
        let held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let message = check_free(port).unwrap_err();
        assert_eq!(
            message,
            format!(
                "Port {port} is in use by another program on this server (TCP): choose another."
            )
        );
    }

    #[test]
    fn a_port_held_on_loopback_only_is_refused_too() {
        let held = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        assert!(check_free(port).unwrap_err().contains("(TCP)"));
    }

    #[test]
    fn a_port_held_for_udp_is_refused_naming_udp() {
        let held = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let message = check_free(port).unwrap_err();
        assert!(
            message.contains(&format!("Port {port} is in use")),
            "{message}"
        );
        assert!(message.contains("(UDP)"), "{message}");
    }

    #[test]
    fn a_port_held_for_ipv6_only_is_refused() {
        let Ok(held) = TcpListener::bind((Ipv6Addr::LOCALHOST, 0)) else {
            eprintln!("no IPv6 on this host: nothing to check");
            return;
        };
        let port = held.local_addr().unwrap().port();
        assert!(check_free(port).unwrap_err().contains("(TCP)"));
    }
}
