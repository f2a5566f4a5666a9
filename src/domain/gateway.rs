//! Presence gateways (SPEC section 1): the two kinds and the parsing of every
//! field an administrator types, into types that cannot hold a bad value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    WebDav,
    Ews,
}

impl GatewayKind {
    /// The *Presence Gateway Type* label (GW-2).
    pub fn label(self) -> &'static str {
        match self {
            GatewayKind::WebDav => "Exchange - WebDAV",
            GatewayKind::Ews => "Exchange - EWS Server",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            GatewayKind::WebDav => "Exchange 2003/2007",
            GatewayKind::Ews => "Exchange 2007/2010 and later",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GatewayKind::WebDav => "webdav",
            GatewayKind::Ews => "ews",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "webdav" => Some(GatewayKind::WebDav),
            "ews" => Some(GatewayKind::Ews),
            _ => None,
        }
    }

    pub fn other(self) -> Self {
        match self {
            GatewayKind::WebDav => GatewayKind::Ews,
            GatewayKind::Ews => GatewayKind::WebDav,
        }
    }
}

/// GW-3: either one WebDAV gateway or any number of EWS gateways, never both.
/// `existing` holds the kinds of the gateways there are now.
pub fn may_add(kind: GatewayKind, existing: &[GatewayKind]) -> Result<(), Mix> {
    match kind {
        GatewayKind::WebDav if !existing.is_empty() => Err(Mix::WebDavNotAlone {
            existing: existing.len(),
        }),
        GatewayKind::Ews if existing.contains(&GatewayKind::WebDav) => Err(Mix::EwsBesideWebDav),
        _ => Ok(()),
    }
}

/// Why a gateway of a kind cannot be added (GW-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// A WebDAV gateway must be the only one; these exist.
    WebDavNotAlone { existing: usize },
    /// EWS cannot be added beside WebDAV.
    EwsBesideWebDav,
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Mix::WebDavNotAlone { existing } => write!(
                f,
                "A WebDAV gateway must be the only gateway, and {} already exist{}. Delete {} \
                 first, or change the type of a single gateway in place.",
                super::count(existing as i64, "gateway"),
                if existing == 1 { "s" } else { "" },
                if existing == 1 { "it" } else { "them" },
            ),
            Mix::EwsBesideWebDav => f.write_str(
                "An EWS gateway cannot be added while a WebDAV gateway exists: WebDAV and EWS \
                 gateways cannot be mixed. Delete the WebDAV gateway first, or change its type \
                 to EWS.",
            ),
        }
    }
}

/// *Description*: trimmed, 1 to 128 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.is_empty() {
            return Err("Enter a description that tells this gateway apart.".to_owned());
        }
        if value.chars().count() > 128 {
            return Err("A description is at most 128 characters long.".to_owned());
        }
        if value.chars().any(char::is_control) {
            return Err("A description cannot contain control characters.".to_owned());
        }
        Ok(Description(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which field a host name or address was entered in, for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostField {
    PresenceGateway,
    NotificationHost,
}

/// *Presence Gateway*: the Exchange server's location, an FQDN or an IPv4 or
/// IPv6 literal. Stored lower-case, without a trailing dot or IPv6 brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerLocation {
    Name(String),
    Ip(IpAddr),
}

impl ServerLocation {
    /// The *Presence Gateway* field.
    pub fn parse(raw: &str) -> Result<Self, String> {
        Self::parse_field(raw, HostField::PresenceGateway)
    }

    /// A host name or IP address entered in `field`, whose messages name it.
    pub fn parse_field(raw: &str, field: HostField) -> Result<Self, String> {
        let gateway = field == HostField::PresenceGateway;
        let value = raw.trim();
        if value.is_empty() {
            return Err(if gateway {
                "Enter the Exchange server's FQDN or IP address, as in its certificate's Subject \
                 CN."
            } else {
                "Enter the host name or IP address Exchange posts notifications to."
            }
            .to_owned());
        }
        if value.contains("://") || value.contains('/') {
            return Err(if gateway {
                "Enter only the server's name or address, not a URL (no scheme and no path)."
            } else {
                "Enter only the Notification Host's name or address, not a URL (no scheme and no \
                 path)."
            }
            .to_owned());
        }
        if value.chars().any(char::is_whitespace) {
            return Err(if gateway {
                "The server location cannot contain spaces."
            } else {
                "The Notification Host cannot contain spaces."
            }
            .to_owned());
        }
        let unbracketed = value
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(value);
        if let Ok(v6) = unbracketed.parse::<Ipv6Addr>() {
            return Ok(ServerLocation::Ip(IpAddr::V6(v6)));
        }
        if value.contains(':') {
            return Err(if gateway {
                "Enter the server without a port: the port has its own field."
            } else {
                "Enter the Notification Host without a port: the Microsoft Exchange \
                 Notification Port parameter sets it."
            }
            .to_owned());
        }
        if value.contains('_') {
            return Err(if gateway {
                "Host names cannot contain underscores (RFC 1123): use the name in the server's \
                 certificate."
            } else {
                "Host names cannot contain underscores (RFC 1123)."
            }
            .to_owned());
        }
        if let Ok(v4) = value.parse::<Ipv4Addr>() {
            return Ok(ServerLocation::Ip(IpAddr::V4(v4)));
        }
        let name = value
            .strip_suffix('.')
            .unwrap_or(value)
            .to_ascii_lowercase();
        if name.len() > 253 {
            return Err("A host name is at most 253 characters long.".to_owned());
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.iter().any(|l| l.is_empty()) {
            return Err(
                "The host name has an empty label (two dots in a row, or a leading dot)."
                    .to_owned(),
            );
        }
        for label in &labels {
            if label.len() > 63 {
                return Err(format!("The label {label:?} is longer than 63 characters."));
            }
            if let Some(bad) = label
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
            {
                return Err(format!(
                    "Host names may contain letters, digits and hyphens only, not {bad:?}."
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(format!(
                    "The label {label:?} cannot begin or end with a hyphen."
                ));
            }
        }
        // An all-numeric dotted name that is not a valid IPv4 address (e.g.
        // 10.0.0.300) is a typo, not a host name.
        if labels.iter().all(|l| l.chars().all(|c| c.is_ascii_digit())) {
            return Err(format!("{value} is not a valid IPv4 address."));
        }
        Ok(ServerLocation::Name(name))
    }

    pub fn is_ip(&self) -> bool {
        matches!(self, ServerLocation::Ip(_))
    }
}

impl fmt::Display for ServerLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerLocation::Name(name) => f.write_str(name),
            ServerLocation::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

/// *Account Name*: WebDAV's Receive-As account (`domain\user` or `user`) or
/// EWS's impersonation account (`user@domain` or `domain\user`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountName(String);

const ACCOUNT_FORBIDDEN: &[char] = &[
    '"', '/', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>',
];

fn valid_user_part(user: &str) -> bool {
    !user.is_empty()
        && user.len() <= 104
        && !user.starts_with(' ')
        && !user.ends_with(' ')
        && !user.ends_with('.')
        && !user
            .chars()
            .any(|c| c.is_control() || ACCOUNT_FORBIDDEN.contains(&c) || c == '\\' || c == '@')
}

fn valid_domain_part(domain: &str) -> bool {
    !domain.is_empty()
        && domain.len() <= 253
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

impl AccountName {
    pub fn parse(kind: GatewayKind, raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        let forms = match kind {
            GatewayKind::WebDav => {
                "Enter the Receive-As account as domain\\user, or as user when Exchange has a \
                 default domain."
            }
            GatewayKind::Ews => {
                "Enter the impersonation account as a User Principal Name (user@domain) or a \
                 down-level logon name (domain\\user)."
            }
        };
        let ok = if let Some((domain, user)) = value.split_once('\\') {
            valid_domain_part(domain) && valid_user_part(user)
        } else if let Some((user, domain)) = value.split_once('@') {
            kind == GatewayKind::Ews
                && valid_user_part(user)
                && valid_domain_part(domain)
                && domain.contains('.')
        } else {
            kind == GatewayKind::WebDav && valid_user_part(value)
        };
        if ok {
            Ok(AccountName(value.to_owned()))
        } else {
            Err(forms.to_owned())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// *Port*: 1 to 65535; anything but 443 is allowed with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Port(u16);

impl Port {
    pub const RECOMMENDED: u16 = 443;

    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim();
        if value.is_empty() {
            return Ok(Port(Self::RECOMMENDED));
        }
        match value.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(Port(n as u16)),
            _ => Err("Enter a port from 1 to 65535 (443 recommended).".to_owned()),
        }
    }

    pub fn get(self) -> u16 {
        self.0
    }

    /// The warning shown when the port is not 443 (GW-2).
    pub fn warning(self) -> Option<String> {
        (self.0 != Self::RECOMMENDED).then(|| {
            format!(
                "Port {} saved. Exchange integration must use secure HTTP, and port 443 is \
                 recommended.",
                self.0
            )
        })
    }
}

/// An e-mail address's local part, or an Exchange mailbox alias: the same
/// characters (RFC 5322 atoms joined by single dots), at most 64.
fn valid_alias(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= 64
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..")
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c))
}

/// *Test Mailbox*: the mailbox the troubleshooter impersonates (EWS: an
/// e-mail address) or opens (WebDAV: an e-mail address or the mailbox alias,
/// since Exchange 2003/2007 WebDAV URLs take either, `/exchange/alice/...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox(String);

impl Mailbox {
    pub fn parse_optional(kind: GatewayKind, raw: &str) -> Result<Option<Self>, String> {
        let value = raw.trim();
        if value.is_empty() {
            return Ok(None);
        }
        let message = || match kind {
            GatewayKind::Ews => {
                "Enter the test mailbox as an e-mail address, such as user@example.com.".to_owned()
            }
            GatewayKind::WebDav => "Enter the test mailbox as an e-mail address, such as \
                                    user@example.com, or as the mailbox alias, such as user."
                .to_owned(),
        };
        let valid = match value.split_once('@') {
            Some((local, domain)) => {
                valid_alias(local) && valid_domain_part(domain) && domain.contains('.')
            }
            None => kind == GatewayKind::WebDav && valid_alias(value),
        };
        if !valid {
            return Err(message());
        }
        Ok(Some(Mailbox(value.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// *Account Password* and *Confirm Password*. `None` means "keep the stored
/// password" and is only allowed where one is stored (`have_stored`).
pub fn parse_password(
    password: &str,
    confirm: &str,
    have_stored: bool,
) -> Result<Option<String>, String> {
    if password.is_empty() && confirm.is_empty() {
        return if have_stored {
            Ok(None)
        } else {
            Err("Enter the account password, and again to confirm it.".to_owned())
        };
    }
    if password != confirm {
        return Err("The password and its confirmation do not match.".to_owned());
    }
    if password.len() > 256 {
        return Err("The password is at most 256 characters long.".to_owned());
    }
    Ok(Some(password.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use GatewayKind::{Ews, WebDav};

    #[test]
    fn gw3_webdav_alone_or_any_number_of_ews() {
        assert!(may_add(WebDav, &[]).is_ok());
        assert!(may_add(Ews, &[]).is_ok());
        assert!(may_add(Ews, &[Ews, Ews]).is_ok());
        let err = may_add(WebDav, &[Ews]).unwrap_err().to_string();
        assert!(err.contains("must be the only gateway"), "{err}");
        assert!(may_add(WebDav, &[WebDav]).is_err());
        let err = may_add(Ews, &[WebDav]).unwrap_err().to_string();
        assert!(err.contains("cannot be mixed"), "{err}");
    }

    #[test]
    fn descriptions() {
        assert_eq!(Description::parse("  Exch 1 ").unwrap().as_str(), "Exch 1");
        assert!(Description::parse("   ").is_err());
        assert!(Description::parse(&"d".repeat(128)).is_ok());
        assert!(Description::parse(&"d".repeat(129)).is_err());
        assert!(Description::parse("a\u{7}b").is_err());
    }

    #[test]
    fn server_locations_accepted() {
        let ok = |s: &str| ServerLocation::parse(s).unwrap().to_string();
        assert_eq!(ok("Exch1.Example.COM"), "exch1.example.com");
        assert_eq!(ok("exch1.example.com."), "exch1.example.com");
        assert_eq!(ok("exchange"), "exchange");
        assert_eq!(ok("x-1.a1.example"), "x-1.a1.example");
        assert_eq!(ok("192.0.2.10"), "192.0.2.10");
        assert_eq!(ok("2001:db8::1"), "2001:db8::1");
        assert_eq!(ok("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(ok("::1"), "::1");
        assert!(ServerLocation::parse("192.0.2.10").unwrap().is_ip());
    }

    #[test]
    fn server_locations_refused() {
        let err = |s: &str| ServerLocation::parse(s).unwrap_err();
        assert!(err("").contains("FQDN or IP address"));
        assert!(err("https://exch1.example.com").contains("not a URL"));
        assert!(err("exch1.example.com/ews").contains("not a URL"));
        assert!(err("exch1.example.com:443").contains("without a port"));
        assert!(err("192.0.2.1:443").contains("without a port"));
        assert!(err("exch 1.example.com").contains("spaces"));
        // The Notification Host's messages speak of it, not of a server.
        let host =
            |s: &str| ServerLocation::parse_field(s, HostField::NotificationHost).unwrap_err();
        assert_eq!(
            host("presence 1"),
            "The Notification Host cannot contain spaces."
        );
        assert!(host("http://presence1/").contains("Notification Host's name"));
        assert!(host("presence1:50020").contains("Notification Port"));
        assert!(!host("presence_1").contains("certificate"));
        assert!(err("exch_1.example.com").contains("underscores"));
        assert!(err("exch1..example.com").contains("empty label"));
        assert!(err(".example.com").contains("empty label"));
        assert!(err("-exch.example.com").contains("hyphen"));
        assert!(err("exch-.example.com").contains("hyphen"));
        assert!(err("exch!.example.com").contains("letters, digits and hyphens"));
        assert!(err(&format!("{}.com", "a".repeat(64))).contains("63"));
        assert!(err(&format!("{}.com", "a.".repeat(127))).contains("253"));
        assert!(err("10.0.0.300").contains("not a valid IPv4"));
        assert!(err("[2001:db8::1]:443").contains("without a port"));
    }

    #[test]
    fn account_names_per_kind() {
        assert!(AccountName::parse(WebDav, "EXAMPLE\\recvas").is_ok());
        assert!(AccountName::parse(WebDav, "recvas").is_ok());
        assert!(AccountName::parse(WebDav, "corp.example.com\\recv-as").is_ok());
        assert!(AccountName::parse(WebDav, "recvas@example.com").is_err());
        assert!(AccountName::parse(Ews, "imp@example.com").is_ok());
        assert!(AccountName::parse(Ews, "EXAMPLE\\imp").is_ok());
        let err = AccountName::parse(Ews, "imp").unwrap_err();
        assert!(
            err.contains("user@domain") && err.contains("domain\\user"),
            "{err}"
        );
        let err = AccountName::parse(WebDav, "").unwrap_err();
        assert!(err.contains("domain\\user"), "{err}");
        assert!(AccountName::parse(Ews, "imp@localhost").is_err());
        assert!(AccountName::parse(Ews, "@example.com").is_err());
        assert!(AccountName::parse(Ews, "EXAMPLE\\").is_err());
        assert!(AccountName::parse(Ews, "\\imp").is_err());
        assert!(AccountName::parse(Ews, "EX AMPLE\\imp").is_err());
        assert!(AccountName::parse(WebDav, "a\\b\\c").is_err());
        assert!(AccountName::parse(WebDav, "bad*name").is_err());
    }

    #[test]
    fn ports() {
        assert_eq!(Port::parse("").unwrap().get(), 443);
        assert_eq!(Port::parse("443").unwrap().warning(), None);
        assert_eq!(Port::parse("1").unwrap().get(), 1);
        assert_eq!(Port::parse("65535").unwrap().get(), 65535);
        assert!(
            Port::parse("8443")
                .unwrap()
                .warning()
                .unwrap()
                .contains("443 is recommended")
        );
        for bad in ["0", "65536", "-1", "abc", "44 3", "1e3"] {
            let err = Port::parse(bad).unwrap_err();
            assert!(err.contains("1 to 65535"), "{bad}: {err}");
        }
    }

    #[test]
    fn test_mailboxes() {
        for kind in [GatewayKind::Ews, GatewayKind::WebDav] {
            assert_eq!(Mailbox::parse_optional(kind, "  ").unwrap(), None);
            assert_eq!(
                Mailbox::parse_optional(kind, "room.101@example.com")
                    .unwrap()
                    .unwrap()
                    .as_str(),
                "room.101@example.com"
            );
            for bad in [
                "user@",
                "@example.com",
                "user@example",
                "a..b@example.com",
                "us er@example.com",
                "us er",
                ".alice",
            ] {
                assert!(
                    Mailbox::parse_optional(kind, bad).is_err(),
                    "{kind:?} {bad}"
                );
            }
        }
        // An alias is a WebDAV mailbox (/exchange/alice/Calendar/), not an
        // EWS one, which impersonation names by address.
        let alias = Mailbox::parse_optional(GatewayKind::WebDav, " alice ");
        assert_eq!(alias.unwrap().unwrap().as_str(), "alice");
        let refused = Mailbox::parse_optional(GatewayKind::Ews, "alice").unwrap_err();
        assert!(refused.contains("e-mail address"), "{refused}");
        let refused = Mailbox::parse_optional(GatewayKind::WebDav, "al ice").unwrap_err();
        assert!(refused.contains("mailbox alias"), "{refused}");
    }

    #[test]
    fn passwords() {
        assert_eq!(parse_password("", "", true).unwrap(), None);
        assert!(
            parse_password("", "", false)
                .unwrap_err()
                .contains("Enter the account password")
        );
        assert!(
            parse_password("a", "b", true)
                .unwrap_err()
                .contains("do not match")
        );
        assert_eq!(
            parse_password("s3cret", "s3cret", false)
                .unwrap()
                .as_deref(),
            Some("s3cret")
        );
    }
}
