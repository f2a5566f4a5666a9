//! The Outbound Proxy of System > Settings (GR-3): an `http://host:port`
//! CONNECT proxy for Microsoft 365's sign-in and Graph hosts, optional
//! credentials, and the No Proxy For list, whose matching follows curl's
//! `NO_PROXY` rules so an administrator can copy the service's environment
//! as is. Only Microsoft 365 traffic uses it: on-premises Exchange is on
//! the inside.

use std::fmt;
use std::net::IpAddr;

use secrecy::SecretString;

use super::gateway::{HostField, ServerLocation};

/// The proxy server: where CONNECT requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyServer {
    pub host: ServerLocation,
    pub port: u16,
}

impl fmt::Display for ProxyServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            ServerLocation::Ip(IpAddr::V6(ip)) => write!(f, "http://[{ip}]:{}", self.port),
            other => write!(f, "http://{other}:{}", self.port),
        }
    }
}

/// The user and password sent in `Proxy-Authorization: Basic`.
#[derive(Debug, Clone)]
pub struct ProxyCredentials {
    pub user: String,
    pub password: SecretString,
}

/// A proxy as the connection steps use it.
#[derive(Debug, Clone)]
pub struct Proxy {
    pub server: ProxyServer,
    pub credentials: Option<ProxyCredentials>,
    pub no_proxy: NoProxy,
}

impl Proxy {
    /// Whether a connection to `host` goes through this proxy: not when
    /// No Proxy For matches it.
    pub fn applies_to(&self, host: &ServerLocation) -> bool {
        !self.no_proxy.matches(host)
    }
}

/// `http://host:port` (a trailing `/` is tolerated). Credentials have their
/// own fields, so a URL carrying them is refused: the URL is shown on the
/// page and in the audit log, the password must not be.
pub fn parse_url(raw: &str) -> Result<ProxyServer, String> {
    let (server, userinfo) = split_url(raw)?;
    if userinfo.is_some() {
        return Err(
            "Enter the proxy user and password in Proxy User and Proxy Password, not in the URL."
                .to_owned(),
        );
    }
    Ok(server)
}

/// A URL from the environment (`HTTPS_PROXY`), where curl and most tools
/// accept `http://user:password@host:port`: the credentials are taken out.
pub fn parse_env_url(raw: &str) -> Result<(ProxyServer, Option<ProxyCredentials>), String> {
    let (server, userinfo) = split_url(raw)?;
    let credentials = userinfo.map(|info| {
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        ProxyCredentials {
            user: percent(user),
            password: SecretString::from(percent(password)),
        }
    });
    Ok((server, credentials))
}

fn percent(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

fn split_url(raw: &str) -> Result<(ProxyServer, Option<&str>), String> {
    let value = raw.trim();
    if value.is_empty() {
        return Err("Enter the proxy as http://host:port.".to_owned());
    }
    let Some((scheme, rest)) = value.split_once("://") else {
        return Err("Enter the proxy as a URL: http://host:port.".to_owned());
    };
    if scheme.eq_ignore_ascii_case("https") {
        return Err(
            "Only http:// proxies are supported: the connection to Microsoft is encrypted end to \
             end inside the proxy's tunnel."
                .to_owned(),
        );
    }
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!(
            "The proxy's scheme must be http://, not {scheme}://."
        ));
    }
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '?', '#']) {
        return Err("Enter only http://host:port, without a path.".to_owned());
    }
    let (userinfo, authority) = match rest.rsplit_once('@') {
        Some((info, authority)) => (Some(info), authority),
        None => (None, rest),
    };
    // `[v6]:port` or `host:port`: the port is after the last colon outside
    // the brackets.
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => match bracketed.split_once(']') {
            Some((ip, tail)) => (ip, tail.strip_prefix(':')),
            None => return Err("The IPv6 address has no closing bracket.".to_owned()),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let Some(port) = port.filter(|p| !p.is_empty()) else {
        return Err("Enter the proxy's port too, as in http://proxy.example.com:8080.".to_owned());
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            return Err(format!(
                "The port {port:?} is not a number from 1 to 65535."
            ));
        }
    };
    if host.is_empty() {
        return Err("Enter the proxy's host name or IP address.".to_owned());
    }
    let host = ServerLocation::parse_field(host, HostField::NotificationHost)
        .map_err(|e| format!("The proxy's host is not valid: {e}"))?;
    Ok((ProxyServer { host, port }, userinfo))
}

/// One entry of the No Proxy For list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `*`: no connection uses the proxy.
    All,
    /// `example.com`, `.example.com` or `*.example.com`: the name and every
    /// name under it (curl's rule).
    Domain(String),
    /// An IP address, or a network in CIDR notation.
    Net(IpAddr, u8),
}

/// No Proxy For: comma-separated (spaces tolerated) host names, domain
/// suffixes, IP addresses, networks, or `*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy(Vec<Entry>);

impl NoProxy {
    pub fn parse(raw: &str) -> Result<NoProxy, String> {
        let mut entries = Vec::new();
        for item in raw.split([',', ' ', '\t', '\n', '\r']) {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            entries.push(entry(item)?);
        }
        Ok(NoProxy(entries))
    }

    /// The environment's list is curl's, which skips what it cannot read:
    /// an unreadable entry there must not stop the service from starting.
    pub fn parse_lenient(raw: &str) -> NoProxy {
        NoProxy(
            raw.split([',', ' ', '\t', '\n', '\r'])
                .filter_map(|item| entry(item.trim()).ok())
                .collect(),
        )
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, host: &ServerLocation) -> bool {
        self.0.iter().any(|e| match (e, host) {
            (Entry::All, _) => true,
            (Entry::Domain(domain), ServerLocation::Name(name)) => {
                name == domain
                    || name
                        .strip_suffix(domain.as_str())
                        .is_some_and(|head| head.ends_with('.'))
            }
            (Entry::Net(net, bits), ServerLocation::Ip(ip)) => in_network(*ip, *net, *bits),
            _ => false,
        })
    }
}

fn entry(item: &str) -> Result<Entry, String> {
    if item == "*" {
        return Ok(Entry::All);
    }
    let unbracketed = item
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(item);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(Entry::Net(ip, if ip.is_ipv4() { 32 } else { 128 }));
    }
    if let Some((ip, bits)) = item.split_once('/') {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{item}: a network is an IP address then /bits."))?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        return match bits.parse::<u8>() {
            Ok(b) if b <= max => Ok(Entry::Net(ip, b)),
            _ => Err(format!(
                "{item}: the network's prefix length is 0 to {max}."
            )),
        };
    }
    let name = item
        .strip_prefix("*.")
        .or_else(|| item.strip_prefix('.'))
        .unwrap_or(item);
    if name.contains('*') {
        return Err(format!(
            "{item}: a wildcard is allowed only as *.domain, or * alone for every host."
        ));
    }
    if name.contains(':') {
        return Err(format!("{item}: enter host names without a port."));
    }
    match ServerLocation::parse_field(name, HostField::NotificationHost) {
        Ok(ServerLocation::Name(domain)) => Ok(Entry::Domain(domain)),
        Ok(ServerLocation::Ip(ip)) => Ok(Entry::Net(ip, if ip.is_ipv4() { 32 } else { 128 })),
        Err(e) => Err(format!("{item}: {e}")),
    }
}

fn in_network(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(ip), IpAddr::V4(net)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(ip) & mask == u32::from(net) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(net)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(ip) & mask == u128::from(net) & mask
        }
        _ => false,
    }
}

/// The service's environment, read once at start: the default when
/// nothing is saved on System > Settings.
#[derive(Debug, Clone, Default)]
pub struct ProxyEnv {
    /// The variable's name (`HTTPS_PROXY` or `https_proxy`) and its value.
    pub https_proxy: Option<(&'static str, String)>,
    pub no_proxy: Option<String>,
}

impl ProxyEnv {
    pub fn from_env() -> ProxyEnv {
        let var = |name: &'static str| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| (name, v))
        };
        ProxyEnv {
            https_proxy: var("HTTPS_PROXY").or_else(|| var("https_proxy")),
            no_proxy: var("NO_PROXY").or_else(|| var("no_proxy")).map(|(_, v)| v),
        }
    }

    /// The proxy the environment names; None when it names none or an
    /// unusable one (the page says which).
    pub fn proxy(&self) -> Option<Proxy> {
        let (_, url) = self.https_proxy.as_ref()?;
        let (server, credentials) = parse_env_url(url).ok()?;
        Some(Proxy {
            server,
            credentials,
            no_proxy: NoProxy::parse_lenient(self.no_proxy.as_deref().unwrap_or("")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(n: &str) -> ServerLocation {
        ServerLocation::parse(n).unwrap()
    }

    #[test]
    fn proxy_urls_need_http_and_a_port() {
        let p = parse_url("http://Proxy.Example.com:3128/").unwrap();
        assert_eq!(p.host, name("proxy.example.com"));
        assert_eq!(p.port, 3128);
        assert_eq!(p.to_string(), "http://proxy.example.com:3128");
        let p = parse_url("http://[2001:db8::1]:8080").unwrap();
        assert_eq!(p.to_string(), "http://[2001:db8::1]:8080");
        assert!(
            parse_url("http://proxy.example.com")
                .unwrap_err()
                .contains("port")
        );
        assert!(
            parse_url("https://proxy:443")
                .unwrap_err()
                .contains("http://")
        );
        assert!(parse_url("proxy:8080").unwrap_err().contains("URL"));
        assert!(
            parse_url("socks5://proxy:1080")
                .unwrap_err()
                .contains("socks5")
        );
        assert!(
            parse_url("http://proxy:0")
                .unwrap_err()
                .contains("1 to 65535")
        );
        assert!(
            parse_url("http://proxy:8080/path")
                .unwrap_err()
                .contains("path")
        );
        assert!(
            parse_url("http://u:p@proxy:8080")
                .unwrap_err()
                .contains("Proxy User")
        );
        assert!(parse_url("http://pro xy:8080").is_err());
    }

    #[test]
    fn the_environment_may_carry_credentials() {
        let (server, credentials) =
            parse_env_url("http://svc%40corp:p%3Ass@10.0.0.1:8080").unwrap();
        assert_eq!(server.to_string(), "http://10.0.0.1:8080");
        let credentials = credentials.unwrap();
        assert_eq!(credentials.user, "svc@corp");
        use secrecy::ExposeSecret;
        assert_eq!(credentials.password.expose_secret(), "p:ss");
    }

    #[test]
    fn no_proxy_matches_like_curl() {
        let list =
            NoProxy::parse("example.com, .corp.local,*.internal.net 10.0.0.0/8,192.168.1.5,::1")
                .unwrap();
        assert!(list.matches(&name("example.com")));
        assert!(list.matches(&name("login.example.com")));
        assert!(!list.matches(&name("notexample.com")));
        assert!(list.matches(&name("corp.local")));
        assert!(list.matches(&name("a.b.corp.local")));
        assert!(list.matches(&name("x.internal.net")));
        assert!(list.matches(&name("10.20.30.40")));
        assert!(!list.matches(&name("11.0.0.1")));
        assert!(list.matches(&name("192.168.1.5")));
        assert!(!list.matches(&name("192.168.1.6")));
        assert!(list.matches(&name("::1")));
        assert!(!list.matches(&name("login.microsoftonline.com")));
        assert!(
            NoProxy::parse("*")
                .unwrap()
                .matches(&name("graph.microsoft.com"))
        );
        assert!(NoProxy::parse("").unwrap().is_empty());
    }

    #[test]
    fn the_environment_is_the_default() {
        let env = ProxyEnv {
            https_proxy: Some(("HTTPS_PROXY", "http://proxy.corp:3128/".to_owned())),
            no_proxy: Some("localhost,bad_name,.corp".to_owned()),
        };
        let proxy = env.proxy().unwrap();
        assert_eq!(proxy.server.to_string(), "http://proxy.corp:3128");
        assert!(proxy.credentials.is_none());
        assert!(!proxy.applies_to(&name("intranet.corp")));
        assert!(proxy.applies_to(&name("graph.microsoft.com")));
        let unusable = ProxyEnv {
            https_proxy: Some(("https_proxy", "https://proxy.corp:3128".to_owned())),
            no_proxy: None,
        };
        assert!(unusable.proxy().is_none());
        assert!(ProxyEnv::default().proxy().is_none());
    }

    #[test]
    fn no_proxy_refuses_what_it_cannot_read() {
        assert!(NoProxy::parse("a*b.com").unwrap_err().contains("wildcard"));
        assert!(NoProxy::parse("host:8080").unwrap_err().contains("port"));
        assert!(
            NoProxy::parse("10.0.0.0/40")
                .unwrap_err()
                .contains("0 to 32")
        );
        assert!(NoProxy::parse("bad_name.com").is_err());
        assert_eq!(
            NoProxy::parse_lenient("bad_name.com,example.com").0.len(),
            1
        );
    }
}
