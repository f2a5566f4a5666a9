//! The Presence Engine's service parameters (SPEC section 3): the catalogue
//! with each parameter's unit, range, default, help and what a change needs,
//! parsing of typed values, and the typed set the engine runs with.

use std::collections::HashMap;

use super::gateway::{HostField, ServerLocation};

/// What a committed change to a parameter needs (SV-3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterChange {
    /// Applies incrementally: no restart, no restart notification.
    Live,
    /// Applies as subscriptions renew; a restart applies it for everyone.
    RestartRecommended,
    /// The engine picks it up only when it restarts.
    RestartRequired,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Integer {
        min: i64,
        max: i64,
    },
    /// A host name or an IP address.
    Host,
    /// (stored value, label shown)
    Choice(&'static [(&'static str, &'static str)]),
    /// An `https://` URL, or empty for none.
    HttpsUrl,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    /// Stored name and form field name.
    pub key: &'static str,
    /// The label, exactly as in SPEC section 3.
    pub label: &'static str,
    pub unit: &'static str,
    pub kind: Kind,
    /// The default; None for the Notification Host, whose default is the
    /// node's host name.
    pub default: Option<&'static str>,
    pub after: AfterChange,
    pub help: &'static str,
    /// SP-1: Timeout, Queue and Threads sit under a caution.
    pub caution: bool,
}

pub const EWS_STATUS_FREQUENCY: &str = "ews_status_frequency";
pub const NOTIFICATION_PORT: &str = "notification_port";
pub const NOTIFICATION_HOST: &str = "notification_host";
pub const CALENDAR_SPREAD: &str = "calendar_spread";
pub const EXCHANGE_TIMEOUT: &str = "exchange_timeout";
pub const EXCHANGE_QUEUE: &str = "exchange_queue";
pub const EXCHANGE_THREADS: &str = "exchange_threads";
pub const EXCHANGE_AUTH: &str = "exchange_auth";
pub const OUT_OF_OFFICE: &str = "calendar_out_of_office";
pub const M365_POLL_INTERVAL: &str = "m365_poll_interval";
pub const M365_NOTIFICATION_URL: &str = "m365_notification_url";

pub const AUTH_CHOICES: &[(&str, &str)] = &[
    ("auto", "Auto (NTLMv2, then Basic)"),
    ("basic", "Basic Only"),
];
pub const OOO_CHOICES: &[(&str, &str)] = &[
    ("display", "Display Out of Office availability"),
    ("hide", "Do not display Out of Office availability"),
];

/// SP-2, shown with the notification port.
pub const PORT_HELP: &str = "The port the Presence Engine listens on for calendar notifications \
    from Exchange: UDP (HTTPU) for WebDAV, TCP (HTTP) for EWS. Choose a port no other program \
    on this server uses. Existing subscriptions keep the old port until they renew, which may \
    take up to an hour, unless the Presence Engine is restarted.";

pub const CATALOGUE: &[Param] = &[
    Param {
        key: EWS_STATUS_FREQUENCY,
        label: "EWS Status Frequency",
        unit: "minutes",
        kind: Kind::Integer { min: 10, max: 1440 },
        default: Some("60"),
        after: AfterChange::RestartRecommended,
        help: "How often Exchange confirms each EWS subscription with a status message. A \
               shorter interval detects a lost subscription sooner, at the cost of more load \
               on Exchange and on this server. Applies per user as subscriptions renew.",
        caution: false,
    },
    Param {
        key: NOTIFICATION_PORT,
        label: "Microsoft Exchange Notification Port",
        unit: "port",
        kind: Kind::Integer {
            min: 1024,
            max: 65535,
        },
        default: Some("50020"),
        after: AfterChange::RestartRecommended,
        help: PORT_HELP,
        caution: false,
    },
    Param {
        key: NOTIFICATION_HOST,
        label: "Notification Host",
        unit: "host name or IP",
        kind: Kind::Host,
        default: None,
        after: AfterChange::RestartRequired,
        help: "The address Exchange posts calendar notifications to: a name Exchange can \
               resolve, or an IP address, of this server.",
        caution: false,
    },
    Param {
        key: CALENDAR_SPREAD,
        label: "Calendar Spread",
        unit: "seconds",
        kind: Kind::Integer { min: 0, max: 59 },
        default: Some("50"),
        after: AfterChange::RestartRecommended,
        help: "Meeting transitions are published within this many seconds after the top of \
               the minute, each user at a stable offset, so that a mass transition does not \
               arrive all at once. Suggested: the users assigned to this node / 100, at most \
               59. Applies incrementally.",
        caution: false,
    },
    Param {
        key: EXCHANGE_TIMEOUT,
        label: "Exchange Timeout",
        unit: "seconds",
        kind: Kind::Integer { min: 1, max: 20 },
        default: Some("3"),
        after: AfterChange::RestartRequired,
        help: "How long a request to an Exchange server may take before it times out.",
        caution: true,
    },
    Param {
        key: EXCHANGE_QUEUE,
        label: "Exchange Queue",
        unit: "requests",
        kind: Kind::Integer { min: 1, max: 5000 },
        default: Some("2200"),
        after: AfterChange::RestartRequired,
        help: "The length of the request queue: requests waiting for a worker. Beyond it, \
               requests fail fast and are retried later.",
        caution: true,
    },
    Param {
        key: EXCHANGE_THREADS,
        label: "Exchange Threads",
        unit: "workers",
        kind: Kind::Integer { min: 1, max: 100 },
        default: Some("60"),
        after: AfterChange::RestartRequired,
        help: "The number of workers serving Exchange requests: at most this many requests \
               are in flight at once.",
        caution: true,
    },
    Param {
        key: EXCHANGE_AUTH,
        label: "Exchange Server Authentication",
        unit: "choice",
        kind: Kind::Choice(AUTH_CHOICES),
        default: Some("auto"),
        after: AfterChange::RestartRequired,
        help: "Auto tries NTLMv2 and falls back to Basic; Basic Only never tries NTLMv2.",
        caution: false,
    },
    Param {
        key: OUT_OF_OFFICE,
        label: "Calendar Out of Office Information",
        unit: "choice",
        kind: Kind::Choice(OOO_CHOICES),
        default: Some("hide"),
        after: AfterChange::Live,
        help: "Whether an Out of Office calendar entry shows as Away, or is treated as free \
               time. Applies incrementally.",
        caution: false,
    },
    Param {
        key: M365_POLL_INTERVAL,
        label: "Microsoft 365 Poll Interval",
        unit: "minutes",
        kind: Kind::Integer { min: 1, max: 60 },
        default: Some("5"),
        after: AfterChange::Live,
        help: "How often the Presence Engine reads every user's calendar from Microsoft 365 \
               (Exchange Online) with getSchedule. With a Microsoft 365 Notification URL, \
               changes arrive as notifications and this poll is a safety net. A shorter \
               interval shows changes sooner and spends more of Microsoft's request budget. \
               Applies incrementally.",
        caution: false,
    },
    Param {
        key: M365_NOTIFICATION_URL,
        label: "Microsoft 365 Notification URL",
        unit: "https URL or empty",
        kind: Kind::HttpsUrl,
        default: Some(""),
        after: AfterChange::RestartRequired,
        help: "Leave empty to poll Microsoft 365 calendars. Or enter an https:// URL that \
               reaches this node's notification listener (the Microsoft Exchange Notification \
               Port), for example through a reverse proxy: Microsoft Graph then posts calendar \
               changes to <URL>/graph/notify and subscription events to <URL>/graph/lifecycle. \
               It must be reachable from the internet with a certificate Microsoft trusts; only \
               Microsoft can tell whether it is, so any https URL is accepted here.",
        caution: false,
    },
];

impl Param {
    pub fn by_key(key: &str) -> Option<&'static Param> {
        CATALOGUE.iter().find(|p| p.key == key)
    }

    /// The default on a node whose host name is `node_host`.
    pub fn default_value(&self, node_host: &str) -> String {
        self.default.unwrap_or(node_host).to_owned()
    }

    /// "10 – 1440", or None for parameters without a numeric range.
    pub fn range(&self) -> Option<String> {
        match self.kind {
            Kind::Integer { min, max } => Some(format!("{min} – {max}")),
            _ => None,
        }
    }

    /// The value as typed, checked and normalized for storage; the message
    /// names the range when the value falls outside it.
    pub fn parse(&self, raw: &str) -> Result<String, String> {
        let value = raw.trim();
        match self.kind {
            Kind::Integer { min, max } => {
                let outside = || {
                    format!(
                        "{} must be a whole number from {min} to {max} ({}).",
                        self.label, self.unit
                    )
                };
                if value.is_empty() {
                    return Err(format!("Enter a value for {}.", self.label));
                }
                let n: i64 = value.parse().map_err(|_| outside())?;
                if (min..=max).contains(&n) {
                    Ok(n.to_string())
                } else {
                    Err(outside())
                }
            }
            Kind::Host => {
                if value.is_empty() {
                    return Err(
                        "Enter the host name or IP address Exchange posts notifications to."
                            .to_owned(),
                    );
                }
                ServerLocation::parse_field(value, HostField::NotificationHost)
                    .map(|l| l.to_string())
            }
            Kind::Choice(choices) => choices
                .iter()
                .find(|(v, _)| *v == value)
                .map(|(v, _)| (*v).to_owned())
                .ok_or_else(|| {
                    let labels: Vec<&str> = choices.iter().map(|(_, l)| *l).collect();
                    format!("Choose one of: {}.", labels.join(", "))
                }),
            Kind::HttpsUrl => {
                parse_https_base(value).map_err(|why| format!("{}: {why}", self.label))
            }
        }
    }
}

/// A public base URL the engine appends paths to: `https`, a host, no
/// user name or password (they would travel in every notification), no
/// query or fragment (the paths go after it). Empty is none. Stored
/// without a trailing slash.
fn parse_https_base(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Ok(String::new());
    }
    let url = url::Url::parse(value)
        .map_err(|_| "enter a full URL such as https://presence.example.com/ or leave it empty.")?;
    if url.scheme() != "https" {
        return Err("Microsoft Graph posts only to https:// URLs.".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the URL needs a host name.".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("leave the user name and password out of the URL.".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(
            "leave out the query (?) and fragment (#): paths are added after the URL.".to_owned(),
        );
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// SPEC section 3: the suggested Calendar Spread for a node, its assigned
/// users / 100, capped at 59.
pub fn suggested_spread(users_on_node: i64) -> i64 {
    (users_on_node.max(0) / 100).min(59)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExchangeAuth {
    Auto,
    BasicOnly,
}

/// The parameters of one node, typed, as the engine and the troubleshooter
/// use them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ServiceParams {
    pub ews_status_frequency_minutes: u32,
    pub notification_port: u16,
    pub notification_host: String,
    pub calendar_spread_seconds: u32,
    pub exchange_timeout_seconds: u32,
    pub exchange_queue: u32,
    pub exchange_threads: u32,
    pub exchange_auth: ExchangeAuth,
    pub display_out_of_office: bool,
    pub m365_poll_interval_minutes: u32,
    /// Empty: Microsoft 365 calendars are polled only.
    pub m365_notification_url: String,
}

impl ServiceParams {
    /// From stored values (key -> value); a missing or unreadable value is
    /// the default, so a node with no rows runs on the defaults.
    pub fn from_values(values: &HashMap<String, String>, node_host: &str) -> ServiceParams {
        let get = |key: &str| -> String {
            let param = Param::by_key(key);
            values
                .get(key)
                .and_then(|v| param.and_then(|p| p.parse(v).ok()))
                .or_else(|| param.map(|p| p.default_value(node_host)))
                .unwrap_or_default()
        };
        let num = |key: &str| -> u32 { get(key).parse().unwrap_or(0) };
        ServiceParams {
            ews_status_frequency_minutes: num(EWS_STATUS_FREQUENCY),
            notification_port: get(NOTIFICATION_PORT).parse().unwrap_or(50020),
            notification_host: get(NOTIFICATION_HOST),
            calendar_spread_seconds: num(CALENDAR_SPREAD),
            exchange_timeout_seconds: num(EXCHANGE_TIMEOUT).max(1),
            exchange_queue: num(EXCHANGE_QUEUE).max(1),
            exchange_threads: num(EXCHANGE_THREADS).max(1),
            exchange_auth: if get(EXCHANGE_AUTH) == "basic" {
                ExchangeAuth::BasicOnly
            } else {
                ExchangeAuth::Auto
            },
            display_out_of_office: get(OUT_OF_OFFICE) == "display",
            m365_poll_interval_minutes: num(M365_POLL_INTERVAL).max(1),
            m365_notification_url: get(M365_NOTIFICATION_URL),
        }
    }

    pub fn defaults(node_host: &str) -> ServiceParams {
        ServiceParams::from_values(&HashMap::new(), node_host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_integer_parameter_at_its_edges() {
        for p in CATALOGUE {
            if let Kind::Integer { min, max } = p.kind {
                assert_eq!(p.parse(&min.to_string()), Ok(min.to_string()), "{}", p.key);
                assert_eq!(p.parse(&max.to_string()), Ok(max.to_string()), "{}", p.key);
                for bad in [min - 1, max + 1] {
                    let message = p.parse(&bad.to_string()).unwrap_err();
                    assert!(
                        message.contains(&format!("from {min} to {max}")),
                        "{}: {message}",
                        p.key
                    );
                }
                assert!(p.parse("ten").is_err());
                assert!(p.parse("").is_err());
            }
        }
    }

    #[test]
    fn defaults_match_the_spec() {
        let d = ServiceParams::defaults("node-a.example.com");
        assert_eq!(
            d,
            ServiceParams {
                ews_status_frequency_minutes: 60,
                notification_port: 50020,
                notification_host: "node-a.example.com".to_owned(),
                calendar_spread_seconds: 50,
                exchange_timeout_seconds: 3,
                exchange_queue: 2200,
                exchange_threads: 60,
                exchange_auth: ExchangeAuth::Auto,
                display_out_of_office: false,
                m365_poll_interval_minutes: 5,
                m365_notification_url: String::new(),
            }
        );
    }

    #[test]
    fn stored_values_override_defaults() {
        let values = HashMap::from([
            (EXCHANGE_TIMEOUT.to_owned(), "7".to_owned()),
            (EXCHANGE_AUTH.to_owned(), "basic".to_owned()),
            (OUT_OF_OFFICE.to_owned(), "display".to_owned()),
            (NOTIFICATION_PORT.to_owned(), "junk".to_owned()),
        ]);
        let p = ServiceParams::from_values(&values, "h");
        assert_eq!(p.exchange_timeout_seconds, 7);
        assert_eq!(p.exchange_auth, ExchangeAuth::BasicOnly);
        assert!(p.display_out_of_office);
        assert_eq!(p.notification_port, 50020);
    }

    #[test]
    fn choices_and_hosts() {
        let auth = Param::by_key(EXCHANGE_AUTH).unwrap();
        assert_eq!(auth.parse("basic"), Ok("basic".to_owned()));
        assert!(auth.parse("ntlm").unwrap_err().contains("Basic Only"));
        let host = Param::by_key(NOTIFICATION_HOST).unwrap();
        assert_eq!(
            host.parse(" Node-A.Example.com "),
            Ok("node-a.example.com".to_owned())
        );
        assert_eq!(host.parse("10.0.0.5"), Ok("10.0.0.5".to_owned()));
        assert!(host.parse("http://x/").is_err());
        assert!(host.parse("").is_err());
    }

    #[test]
    fn the_notification_url_is_an_https_base_or_empty() {
        let url = Param::by_key(M365_NOTIFICATION_URL).unwrap();
        assert_eq!(url.parse(""), Ok(String::new()));
        assert_eq!(url.parse("  "), Ok(String::new()));
        assert_eq!(
            url.parse("https://Presence.Example.com/pg/"),
            Ok("https://presence.example.com/pg".to_owned())
        );
        assert_eq!(
            url.parse("https://presence.example.com"),
            Ok("https://presence.example.com".to_owned())
        );
        for (bad, says) in [
            ("http://presence.example.com/", "only to https://"),
            ("presence.example.com", "full URL"),
            (
                "https://user:pw@presence.example.com/",
                "user name and password",
            ),
            ("https://presence.example.com/?a=1", "query"),
            ("https://presence.example.com/#x", "fragment"),
        ] {
            let message = url.parse(bad).unwrap_err();
            assert!(
                message.starts_with("Microsoft 365 Notification URL: "),
                "{message}"
            );
            assert!(message.contains(says), "{bad}: {message}");
        }
    }

    #[test]
    fn spread_suggestion() {
        assert_eq!(suggested_spread(0), 0);
        assert_eq!(suggested_spread(1000), 10);
        assert_eq!(suggested_spread(45_000), 59);
    }
}
