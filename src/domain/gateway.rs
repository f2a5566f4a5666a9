//! Presence gateways (SPEC sections 1 and 9): the three kinds and the parsing
//! of every field an administrator types, into types that cannot hold a bad
//! value.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    WebDav,
    Ews,
    /// Microsoft 365 through Microsoft Graph (GR-1): Exchange Online.
    Graph,
}

impl GatewayKind {
    /// The *Presence Gateway Type* label (GW-2).
    pub fn label(self) -> &'static str {
        match self {
            GatewayKind::WebDav => "Exchange - WebDAV",
            GatewayKind::Ews => "Exchange - EWS Server",
            GatewayKind::Graph => "Microsoft 365 - Graph",
        }
    }

    pub fn hint(self) -> &'static str {
        match self {
            GatewayKind::WebDav => "Exchange 2003/2007",
            GatewayKind::Ews => "Exchange 2007/2010 and later",
            GatewayKind::Graph => "Exchange Online",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GatewayKind::WebDav => "webdav",
            GatewayKind::Ews => "ews",
            GatewayKind::Graph => "graph",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "webdav" => Some(GatewayKind::WebDav),
            "ews" => Some(GatewayKind::Ews),
            "graph" => Some(GatewayKind::Graph),
            _ => None,
        }
    }

    /// The types a gateway of this type can change to in place (GW-5,
    /// GR-2): one step along Exchange's history, WebDAV to EWS, and EWS to
    /// Microsoft 365 (a move to Exchange Online), or back.
    pub fn change_targets(self) -> &'static [GatewayKind] {
        match self {
            GatewayKind::WebDav => &[GatewayKind::Ews],
            GatewayKind::Ews => &[GatewayKind::WebDav, GatewayKind::Graph],
            GatewayKind::Graph => &[GatewayKind::Ews],
        }
    }
}

/// GW-3, extended by GR-2: either one WebDAV gateway, or any number of EWS
/// gateways, or one Microsoft 365 gateway; never a mix. `existing` holds the
/// kinds of the gateways there are now.
pub fn may_add(kind: GatewayKind, existing: &[GatewayKind]) -> Result<(), Mix> {
    match kind {
        GatewayKind::Graph if !existing.is_empty() => Err(Mix::GraphNotAlone {
            existing: existing.len(),
        }),
        _ if existing.contains(&GatewayKind::Graph) => Err(Mix::BesideGraph { kind }),
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
    /// A Microsoft 365 gateway must be the only one; these exist.
    GraphNotAlone { existing: usize },
    /// Nothing can be added beside a Microsoft 365 gateway.
    BesideGraph { kind: GatewayKind },
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
            Mix::GraphNotAlone { existing } => write!(
                f,
                "A Microsoft 365 gateway must be the only gateway, and {} already exist{}: \
                 Microsoft 365 and Exchange gateways cannot be mixed. Delete {} first, or change \
                 the type of a single EWS gateway in place.",
                super::count(existing as i64, "gateway"),
                if existing == 1 { "s" } else { "" },
                if existing == 1 { "it" } else { "them" },
            ),
            Mix::BesideGraph { kind } => write!(
                f,
                "{} gateway cannot be added while a Microsoft 365 gateway exists: Microsoft 365 \
                 and Exchange gateways cannot be mixed. Delete the Microsoft 365 gateway first, \
                 or change its type to EWS.",
                match kind {
                    GatewayKind::WebDav => "A WebDAV",
                    GatewayKind::Ews => "An EWS",
                    GatewayKind::Graph => "A Microsoft 365",
                },
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
            // Microsoft 365 has no account: its Application (client) ID
            // goes through `ClientId` and `AccountName::client_id`.
            GatewayKind::Graph => "Enter the Application (client) ID.",
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

    /// Microsoft 365's credential set names the application, not an
    /// account: the stored account name is its Application (client) ID.
    pub fn client_id(id: &ClientId) -> Self {
        AccountName(id.as_str().to_owned())
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
/// e-mail address; Microsoft 365 likewise, as Graph names users by address)
/// or opens (WebDAV: an e-mail address or the mailbox alias,
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
            GatewayKind::Ews | GatewayKind::Graph => {
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

// ------------------------------------------------------------ Microsoft 365

/// Whether `value` is a GUID in its registry form (8-4-4-4-12 hex digits),
/// which is how Entra ID shows directory and application IDs.
fn is_guid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// *Tenant*: the directory (tenant) ID, a GUID, or one of the tenant's
/// verified domains such as contoso.onmicrosoft.com. Stored lower-case: both
/// forms are case-insensitive, and one spelling keeps comparisons simple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant(String);

impl Tenant {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim().to_ascii_lowercase();
        if value.is_empty() {
            return Err(
                "Enter the tenant: its directory (tenant) ID, a GUID, or a verified \
                        domain such as contoso.onmicrosoft.com."
                    .to_owned(),
            );
        }
        if is_guid(&value) {
            return Ok(Tenant(value));
        }
        // `common` and `organizations` are sign-in audiences, not tenants:
        // the client-credentials flow needs one tenant, and they have no dot.
        if valid_domain_part(&value) && value.contains('.') {
            return Ok(Tenant(value));
        }
        Err(
            "Enter the tenant as its directory (tenant) ID, a GUID such as \
             00000000-0000-0000-0000-000000000000, or a verified domain such as \
             contoso.onmicrosoft.com."
                .to_owned(),
        )
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// *Application (client) ID*: the app registration's GUID. Stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientId(String);

impl ClientId {
    pub fn parse(raw: &str) -> Result<Self, String> {
        let value = raw.trim().to_ascii_lowercase();
        if value.is_empty() {
            return Err("Enter the Application (client) ID of the app registration.".to_owned());
        }
        if !is_guid(&value) {
            return Err("The Application (client) ID is a GUID, such as \
                        00000000-0000-0000-0000-000000000000: copy it from the app \
                        registration's Overview page."
                .to_owned());
        }
        Ok(ClientId(value))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// *Cloud*: which Microsoft cloud the tenant lives in; it sets the sign-in
/// and Graph hosts. Custom takes both from the Sign-in URL and Graph URL
/// fields (other endpoints, and exchange-sim in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cloud {
    Global,
    UsGovHigh,
    UsGovDod,
    China,
    Custom,
}

impl Cloud {
    pub const ALL: [Cloud; 5] = [
        Cloud::Global,
        Cloud::UsGovHigh,
        Cloud::UsGovDod,
        Cloud::China,
        Cloud::Custom,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Global => "global",
            Cloud::UsGovHigh => "usgov",
            Cloud::UsGovDod => "usgovdod",
            Cloud::China => "china",
            Cloud::Custom => "custom",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Cloud::Global => "Global",
            Cloud::UsGovHigh => "US Government GCC High",
            Cloud::UsGovDod => "US Government DoD",
            Cloud::China => "China",
            Cloud::Custom => "Custom",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, String> {
        Cloud::ALL
            .into_iter()
            .find(|c| c.as_str() == raw.trim())
            .ok_or_else(|| {
                "Choose the cloud: Global, US Government GCC High, US Government DoD, China \
                 or Custom."
                    .to_owned()
            })
    }

    /// The sign-in (token) and Graph base URLs of a national cloud, from
    /// Microsoft's table of endpoints:
    /// https://learn.microsoft.com/en-us/graph/deployments
    /// ("National cloud deployments"). `None` for Custom, whose URLs are
    /// typed.
    pub fn endpoints(self) -> Option<(&'static str, &'static str)> {
        match self {
            Cloud::Global => Some((
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
            )),
            Cloud::UsGovHigh => Some((
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
            )),
            Cloud::UsGovDod => Some((
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
            )),
            Cloud::China => Some((
                "https://login.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn",
            )),
            Cloud::Custom => None,
        }
    }
}

/// Which base URL field a URL was typed in, for its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlField {
    SignIn,
    Graph,
}

impl UrlField {
    fn name(self) -> &'static str {
        match self {
            UrlField::SignIn => "Sign-in URL",
            UrlField::Graph => "Graph URL",
        }
    }

    fn example(self) -> &'static str {
        match self {
            UrlField::SignIn => "https://login.example.com",
            UrlField::Graph => "https://graph.example.com",
        }
    }
}

/// A Custom cloud's *Sign-in URL* or *Graph URL*: an `https` base URL with
/// a host, an optional port and path, and no query, fragment or user
/// information. `https` only: the client secret and the calendars travel
/// over it, and exchange-sim serves TLS too. Stored without a trailing
/// slash, so `<base>/<tenant>/oauth2/v2.0/token` and
/// `<base>/v1.0/users/...` join cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl(String);

impl BaseUrl {
    pub fn parse(raw: &str, field: UrlField) -> Result<Self, String> {
        let value = raw.trim();
        let (name, example) = (field.name(), field.example());
        if value.is_empty() {
            return Err(format!(
                "Enter the {name} for the Custom cloud, such as {example}."
            ));
        }
        let url = url::Url::parse(value)
            .map_err(|_| format!("Enter the {name} as a full URL, such as {example}."))?;
        if url.scheme() != "https" {
            return Err(format!(
                "The {name} must use https, such as {example}: the client secret and calendars \
                 travel over it."
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!("The {name} needs a host, such as {example}."));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(format!("The {name} cannot carry a user name or password."));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(format!(
                "The {name} is a base URL: remove the query (?...) and fragment (#...)."
            ));
        }
        Ok(BaseUrl(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (and port, when not 443), for the list's *Presence
    /// Gateway* column.
    pub fn host(&self) -> String {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        url::Url::parse(&self.0)
            .ok()
            .and_then(|u| u.port_or_known_default())
            .unwrap_or(Port::RECOMMENDED)
    }
}

/// *Client Secret* and *Confirm Client Secret*, by the password's rules:
/// `None` keeps the stored secret, allowed only where one is stored.
pub fn parse_client_secret(
    secret: &str,
    confirm: &str,
    have_stored: bool,
) -> Result<Option<String>, String> {
    if secret.is_empty() && confirm.is_empty() {
        return if have_stored {
            Ok(None)
        } else {
            Err("Enter the client secret, and again to confirm it.".to_owned())
        };
    }
    if secret != confirm {
        return Err("The client secret and its confirmation do not match.".to_owned());
    }
    if secret.chars().count() > 256 {
        return Err("The client secret is at most 256 characters long.".to_owned());
    }
    Ok(Some(secret.to_owned()))
}

/// A Microsoft 365 gateway's own settings (GR-1), validated together: the
/// URLs are required, and kept, only for the Custom cloud.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphSettings {
    pub tenant: Tenant,
    pub client_id: ClientId,
    pub cloud: Cloud,
    pub signin_url: BaseUrl,
    pub graph_url: BaseUrl,
}

impl GraphSettings {
    /// Whether the URLs were typed (Custom) rather than set by the cloud.
    pub fn custom_urls(&self) -> Option<(&str, &str)> {
        (self.cloud == Cloud::Custom).then(|| (self.signin_url.as_str(), self.graph_url.as_str()))
    }

    /// Where tokens come from (GR-1).
    pub fn token_url(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.signin_url.as_str(),
            self.tenant.as_str()
        )
    }
}

/// The Microsoft 365 fields as typed, parsed into settings or a message per
/// field (keyed by the field's name).
pub struct RawGraph<'a> {
    pub tenant: &'a str,
    pub client_id: &'a str,
    pub cloud: &'a str,
    pub signin_url: &'a str,
    pub graph_url: &'a str,
}

pub fn parse_graph(raw: &RawGraph<'_>) -> Result<GraphSettings, Vec<(&'static str, String)>> {
    let mut errors = Vec::new();
    let tenant = Tenant::parse(raw.tenant)
        .map_err(|e| errors.push(("tenant", e)))
        .ok();
    let client_id = ClientId::parse(raw.client_id)
        .map_err(|e| errors.push(("client_id", e)))
        .ok();
    let cloud = Cloud::parse(raw.cloud)
        .map_err(|e| errors.push(("cloud", e)))
        .ok();
    // The URL fields are read only for Custom: a national cloud's hosts
    // are fixed, and the fields stay on the page (no JavaScript hides
    // them), so what is left typed there must not block a save.
    let urls = match cloud.map(Cloud::endpoints) {
        Some(Some((signin, graph))) => {
            Some((BaseUrl(signin.to_owned()), BaseUrl(graph.to_owned())))
        }
        Some(None) => {
            let signin = BaseUrl::parse(raw.signin_url, UrlField::SignIn)
                .map_err(|e| errors.push(("signin_url", e)))
                .ok();
            let graph = BaseUrl::parse(raw.graph_url, UrlField::Graph)
                .map_err(|e| errors.push(("graph_url", e)))
                .ok();
            signin.zip(graph)
        }
        None => None,
    };
    match (tenant, client_id, cloud, urls) {
        (Some(tenant), Some(client_id), Some(cloud), Some((signin_url, graph_url)))
            if errors.is_empty() =>
        {
            Ok(GraphSettings {
                tenant,
                client_id,
                cloud,
                signin_url,
                graph_url,
            })
        }
        _ => Err(errors),
    }
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
    #[test]
    fn gr2_microsoft_365_alone_and_nothing_beside_it() {
        use GatewayKind::Graph;
        assert!(may_add(Graph, &[]).is_ok());
        for existing in [&[Ews][..], &[WebDav], &[Graph], &[Ews, Ews]] {
            let err = may_add(Graph, existing).unwrap_err().to_string();
            assert!(
                err.contains("Microsoft 365 gateway must be the only"),
                "{err}"
            );
        }
        assert_eq!(
            may_add(Graph, &[Ews, Ews]).unwrap_err(),
            Mix::GraphNotAlone { existing: 2 }
        );
        for kind in [Ews, WebDav] {
            let err = may_add(kind, &[Graph]).unwrap_err().to_string();
            assert!(
                err.contains("while a Microsoft 365 gateway exists"),
                "{err}"
            );
            assert!(err.contains("cannot be mixed"), "{err}");
        }
    }

    #[test]
    fn change_targets_follow_exchange_history() {
        use GatewayKind::Graph;
        assert_eq!(WebDav.change_targets(), &[Ews]);
        assert_eq!(Ews.change_targets(), &[WebDav, Graph]);
        assert_eq!(Graph.change_targets(), &[Ews]);
        assert_eq!(GatewayKind::parse("graph"), Some(Graph));
        assert_eq!(Graph.label(), "Microsoft 365 - Graph");
        assert_eq!(Graph.hint(), "Exchange Online");
    }

    #[test]
    fn tenants() {
        let ok = |s: &str| Tenant::parse(s).unwrap().as_str().to_owned();
        assert_eq!(
            ok(" 72F988BF-86F1-41AF-91AB-2D7CD011DB47 "),
            "72f988bf-86f1-41af-91ab-2d7cd011db47"
        );
        assert_eq!(ok("Contoso.onmicrosoft.com"), "contoso.onmicrosoft.com");
        assert_eq!(ok("contoso.com"), "contoso.com");
        assert!(Tenant::parse("").unwrap_err().contains("Enter the tenant"));
        for bad in [
            "common",
            "organizations",
            "contoso",
            "72f988bf-86f1-41af-91ab-2d7cd011db4",
            "72f988bf86f141af91ab2d7cd011db47",
            "https://contoso.onmicrosoft.com",
            "con toso.com",
            "contoso..com",
        ] {
            let err = Tenant::parse(bad).unwrap_err();
            assert!(
                err.contains("GUID") && err.contains("domain"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn client_ids() {
        assert_eq!(
            ClientId::parse("0A1B2C3D-0000-4000-8000-00000000ABCD")
                .unwrap()
                .as_str(),
            "0a1b2c3d-0000-4000-8000-00000000abcd"
        );
        assert!(ClientId::parse(" ").unwrap_err().contains("Enter the"));
        for bad in [
            "contoso.onmicrosoft.com",
            "0a1b2c3d-0000-4000-8000-00000000abcg",
            "{0a1b2c3d-0000-4000-8000-00000000abcd}",
            "0a1b2c3d-0000-4000-8000",
        ] {
            assert!(ClientId::parse(bad).unwrap_err().contains("GUID"), "{bad}");
        }
        let id = ClientId::parse("0a1b2c3d-0000-4000-8000-00000000abcd").unwrap();
        assert_eq!(AccountName::client_id(&id).as_str(), id.as_str());
    }

    #[test]
    fn clouds() {
        let stored: Vec<&str> = Cloud::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(stored, ["global", "usgov", "usgovdod", "china", "custom"]);
        let labels: Vec<&str> = Cloud::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(
            labels,
            [
                "Global",
                "US Government GCC High",
                "US Government DoD",
                "China",
                "Custom"
            ]
        );
        for cloud in Cloud::ALL {
            assert_eq!(Cloud::parse(cloud.as_str()), Ok(cloud));
        }
        assert!(
            Cloud::parse("azure")
                .unwrap_err()
                .contains("Choose the cloud")
        );
        assert_eq!(
            Cloud::Global.endpoints(),
            Some((
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com"
            ))
        );
        assert_eq!(
            Cloud::UsGovHigh.endpoints(),
            Some((
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us"
            ))
        );
        assert_eq!(
            Cloud::UsGovDod.endpoints(),
            Some((
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us"
            ))
        );
        assert_eq!(
            Cloud::China.endpoints(),
            Some((
                "https://login.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn"
            ))
        );
        assert_eq!(Cloud::Custom.endpoints(), None);
    }

    #[test]
    fn base_urls() {
        let ok = |s: &str| BaseUrl::parse(s, UrlField::Graph).unwrap();
        assert_eq!(
            ok("https://graph.example.com/").as_str(),
            "https://graph.example.com"
        );
        assert_eq!(
            ok(" https://127.0.0.1:8443/sim/ ").as_str(),
            "https://127.0.0.1:8443/sim"
        );
        assert_eq!(ok("https://127.0.0.1:8443/sim").host(), "127.0.0.1");
        assert_eq!(ok("https://127.0.0.1:8443/sim").port(), 8443);
        assert_eq!(ok("https://graph.example.com").port(), 443);
        let err = |s: &str, field| BaseUrl::parse(s, field).unwrap_err();
        assert!(err("", UrlField::SignIn).contains("Enter the Sign-in URL"));
        assert!(err("http://login.example.com", UrlField::SignIn).contains("must use https"));
        assert!(err("http://127.0.0.1:8080", UrlField::Graph).contains("must use https"));
        assert!(err("graph.example.com", UrlField::Graph).contains("full URL"));
        assert!(err("https://graph.example.com/?a=b", UrlField::Graph).contains("query"));
        assert!(err("https://graph.example.com/#x", UrlField::Graph).contains("fragment"));
        assert!(err("https://u:p@graph.example.com", UrlField::Graph).contains("user name"));
    }

    #[test]
    fn graph_settings_read_the_urls_only_for_custom() {
        let raw = |cloud, signin, graph| RawGraph {
            tenant: "contoso.onmicrosoft.com",
            client_id: "0a1b2c3d-0000-4000-8000-00000000abcd",
            cloud,
            signin_url: signin,
            graph_url: graph,
        };
        let global = parse_graph(&raw("global", "http://ignored", "")).unwrap();
        assert_eq!(global.graph_url.as_str(), "https://graph.microsoft.com");
        assert_eq!(global.custom_urls(), None);
        assert_eq!(
            global.token_url(),
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
        );
        let custom = parse_graph(&raw(
            "custom",
            "https://login.example.com",
            "https://graph.example.com",
        ))
        .unwrap();
        assert_eq!(
            custom.custom_urls(),
            Some(("https://login.example.com", "https://graph.example.com"))
        );
        let errors = parse_graph(&raw("custom", "", "http://graph.example.com")).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["signin_url", "graph_url"]);
        let errors = parse_graph(&RawGraph {
            tenant: "x",
            client_id: "y",
            cloud: "z",
            signin_url: "",
            graph_url: "",
        })
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|(f, _)| *f).collect();
        assert_eq!(fields, ["tenant", "client_id", "cloud"]);
    }

    #[test]
    fn client_secrets() {
        assert_eq!(parse_client_secret("", "", true).unwrap(), None);
        assert!(
            parse_client_secret("", "", false)
                .unwrap_err()
                .contains("Enter the client secret")
        );
        assert!(
            parse_client_secret("a", "b", true)
                .unwrap_err()
                .contains("do not match")
        );
        assert!(
            parse_client_secret(&"s".repeat(257), &"s".repeat(257), false)
                .unwrap_err()
                .contains("256")
        );
        assert_eq!(
            parse_client_secret("x~8Q", "x~8Q", false)
                .unwrap()
                .as_deref(),
            Some("x~8Q")
        );
    }

    #[test]
    fn graph_test_mailbox_is_an_address() {
        let kind = GatewayKind::Graph;
        assert!(Mailbox::parse_optional(kind, "room@contoso.com").is_ok());
        assert!(
            Mailbox::parse_optional(kind, "alice")
                .unwrap_err()
                .contains("e-mail address")
        );
    }
}
