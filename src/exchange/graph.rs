//! Microsoft Graph, the Microsoft 365 face of Exchange: the protocol only,
//! no I/O. The OAuth 2.0 client-credentials token request and its answer,
//! `getSchedule` (free/busy for up to [`MAX_SCHEDULES`] mailboxes) parsed
//! into the same [`Slot`]s EWS `GetUserAvailability` gives, Graph's error
//! bodies and throttling, and change-notification subscriptions with the
//! notifications and lifecycle notifications they bring.
//!
//! The wire contract shared with exchange-sim's Graph face is
//! `notes/graph-contract.md`; it follows Microsoft's documentation.
//!
//! Time zones: we ask in UTC (`timeZone` UTC in the body and
//! `Prefer: outlook.timezone="UTC"`), so a schedule time without an offset
//! is read as UTC, as in `availability`.

use std::time::Duration;

use serde::Deserialize;
use serde_json::json;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::domain::presence::{BusyType, Slot};

/// Why a request could not be built or an answer not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GraphError {
    /// What we were asked to send is not valid (a tenant, a mailbox count).
    #[error("{0}")]
    Invalid(String),
    /// The peer's answer is not what the contract says.
    #[error("unexpected answer from Microsoft Graph: {0}")]
    Malformed(String),
    /// Graph refused: its `{"error":{"code","message"}}`.
    #[error("{0}")]
    Service(ServiceError),
}

/// Graph's error body, `{"error":{"code":..,"message":..}}`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct ServiceError {
    pub code: String,
    pub message: String,
}

// ---------------------------------------------------------------- clouds

/// A Microsoft cloud: where to sign in and where Graph answers.
///
/// Hosts from "Microsoft Graph national cloud deployments",
/// <https://learn.microsoft.com/graph/deployments> (App registration and
/// token service root endpoints; Microsoft Graph service root endpoints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cloud {
    /// The global service.
    Global,
    /// US Government L4 (GCC High).
    UsGovHigh,
    /// US Government L5 (DoD).
    UsGovDod,
    /// Operated by 21Vianet in China.
    China,
    /// Any other pair of base URLs (exchange-sim, a proxy), without a
    /// trailing slash.
    Custom { signin: String, graph: String },
}

impl Cloud {
    /// The names the command line takes.
    pub const CLI_NAMES: [&'static str; 4] = ["global", "usgov", "usgovdod", "china"];

    /// `global`, `usgov`, `usgovdod` or `china`, case-insensitively.
    pub fn from_cli(name: &str) -> Result<Cloud, GraphError> {
        match name.trim().to_ascii_lowercase().as_str() {
            "global" => Ok(Cloud::Global),
            "usgov" => Ok(Cloud::UsGovHigh),
            "usgovdod" => Ok(Cloud::UsGovDod),
            "china" => Ok(Cloud::China),
            other => Err(GraphError::Invalid(format!(
                "unknown cloud {other:?}: use one of {}",
                Cloud::CLI_NAMES.join(", ")
            ))),
        }
    }

    /// A custom cloud; trailing slashes are dropped so paths join cleanly.
    pub fn custom(signin: &str, graph: &str) -> Cloud {
        Cloud::Custom {
            signin: signin.trim_end_matches('/').to_owned(),
            graph: graph.trim_end_matches('/').to_owned(),
        }
    }

    /// The sign-in (Microsoft Entra ID) base URL.
    pub fn signin(&self) -> &str {
        match self {
            Cloud::Global => "https://login.microsoftonline.com",
            Cloud::UsGovHigh | Cloud::UsGovDod => "https://login.microsoftonline.us",
            Cloud::China => "https://login.chinacloudapi.cn",
            Cloud::Custom { signin, .. } => signin,
        }
    }

    /// The Microsoft Graph base URL.
    pub fn graph(&self) -> &str {
        match self {
            Cloud::Global => "https://graph.microsoft.com",
            Cloud::UsGovHigh => "https://graph.microsoft.us",
            Cloud::UsGovDod => "https://dod-graph.microsoft.us",
            Cloud::China => "https://microsoftgraph.chinacloudapi.cn",
            Cloud::Custom { graph, .. } => graph,
        }
    }

    /// The client-credentials scope: the application permissions granted
    /// on this cloud's Graph (a national cloud's scope must name its own
    /// Graph host).
    pub fn scope(&self) -> String {
        format!("{}/.default", self.graph())
    }
}

/// Parsing the command line's names (clap's `value_parser` takes it).
impl std::str::FromStr for Cloud {
    type Err = GraphError;

    fn from_str(name: &str) -> Result<Cloud, GraphError> {
        Cloud::from_cli(name)
    }
}

/// `base` followed by `segments`, each percent-encoded as one path segment
/// (a mailbox with `/`, `?` or `#` stays one segment).
fn url_with(base: &str, segments: &[&str]) -> Result<String, GraphError> {
    let mut url = url::Url::parse(base)
        .map_err(|e| GraphError::Invalid(format!("bad base URL {base:?}: {e}")))?;
    url.path_segments_mut()
        .map_err(|()| GraphError::Invalid(format!("bad base URL {base:?}")))?
        .pop_if_empty()
        .extend(segments);
    Ok(url.into())
}

// ---------------------------------------------------------------- token

/// A tenant as the token URL takes it: a GUID or a verified domain.
/// Anything else (a typo'd URL, `common`) would only fail later with a
/// less helpful answer.
pub fn validate_tenant(tenant: &str) -> Result<(), GraphError> {
    if is_guid(tenant) || is_domain(tenant) {
        Ok(())
    } else {
        Err(GraphError::Invalid(format!(
            "tenant {tenant:?} is neither a tenant ID (GUID) nor a domain such as contoso.onmicrosoft.com"
        )))
    }
}

fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn is_domain(text: &str) -> bool {
    let labels: Vec<&str> = text.split('.').collect();
    text.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && labels
            .last()
            .is_some_and(|tld| tld.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// `<signin>/<tenant>/oauth2/v2.0/token`.
pub fn token_url(cloud: &Cloud, tenant: &str) -> Result<String, GraphError> {
    validate_tenant(tenant)?;
    url_with(cloud.signin(), &[tenant, "oauth2", "v2.0", "token"])
}

/// The form body (`application/x-www-form-urlencoded`) of a
/// client-credentials token request for `cloud`'s Graph.
pub fn token_body(cloud: &Cloud, client_id: &str, client_secret: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", client_id)
        .append_pair("client_secret", client_secret)
        .append_pair("scope", &cloud.scope())
        .append_pair("grant_type", "client_credentials")
        .finish()
}

/// An access token and its lifetime.
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub access_token: String,
    /// Seconds from issue.
    pub expires_in: u64,
}

// The token is a credential: never in logs.
impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// The identity platform's refusal: its `AADSTS` code, OAuth `error` and
/// `error_description`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{error}: {description}")]
pub struct TokenError {
    pub code: Option<u32>,
    pub error: String,
    pub description: String,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
    #[serde(default)]
    error_codes: Vec<u32>,
}

/// The token endpoint's answer, whatever its status: a token, or why not.
/// An answer that is neither is a `TokenError` with error
/// `invalid_response`.
pub fn parse_token(body: &[u8]) -> Result<Token, TokenError> {
    let invalid = |description: String| TokenError {
        code: None,
        error: "invalid_response".to_owned(),
        description,
    };
    let parsed: TokenBody = serde_json::from_slice(body)
        .map_err(|e| invalid(format!("the token endpoint answered no JSON object: {e}")))?;
    if let Some(access_token) = parsed.access_token.filter(|t| !t.is_empty()) {
        // Some servers send `expires_in` as a string.
        let expires_in = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| invalid("the token has no expires_in".to_owned()))?;
        return Ok(Token {
            access_token,
            expires_in,
        });
    }
    let Some(error) = parsed.error else {
        return Err(invalid(
            "the answer holds neither access_token nor error".to_owned(),
        ));
    };
    let description = parsed.error_description.unwrap_or_default();
    let code = parsed
        .error_codes
        .first()
        .copied()
        .or_else(|| aadsts_code(&description));
    Err(TokenError {
        code,
        error,
        description,
    })
}

/// The number of the first `AADSTS<n>` in `text`.
fn aadsts_code(text: &str) -> Option<u32> {
    let at = text.find("AADSTS")? + "AADSTS".len();
    let digits: String = text[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// What to do about a token refusal, in plain English, for the page that
/// shows it.
pub fn advice(error: &TokenError) -> String {
    match error.code {
        Some(7_000_215) => {
            "The client secret is wrong. In Microsoft Entra admin center, App registrations, \
             Certificates & secrets, copy the secret's Value (shown only when it is created), \
             not its Secret ID."
                .to_owned()
        }
        Some(7_000_222) => {
            "The client secret has expired. Create a new one under App registrations, \
             Certificates & secrets, and enter its Value here."
                .to_owned()
        }
        Some(700_016) => "No application with this Application (client) ID exists in this tenant. \
             Check the Application (client) ID and the Tenant: both are on the app \
             registration's Overview page."
            .to_owned(),
        Some(90_002) => {
            "This tenant does not exist (in this cloud). Check the Tenant: the Directory \
             (tenant) ID or a verified domain such as contoso.onmicrosoft.com, and the cloud."
                .to_owned()
        }
        Some(65_001) => {
            "An administrator has not consented to the application's permissions. Under \
             App registrations, API permissions, add Microsoft Graph Calendars.Read \
             (Application) and choose Grant admin consent."
                .to_owned()
        }
        _ => {
            let first = error
                .description
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or(error.error.as_str());
            format!("Microsoft's sign-in refused the request: {first}")
        }
    }
}

// ---------------------------------------------------------------- getSchedule

/// The most mailboxes one `getSchedule` looks up: "getSchedule can support
/// looking up free/busy information for up to 20 entities at once"
/// (<https://learn.microsoft.com/graph/outlook-get-free-busy-schedule>,
/// Limits and error conditions).
pub const MAX_SCHEDULES: usize = 20;

/// "The time period to look up must be less than 62 days" (same page).
pub const MAX_WINDOW_SECONDS: i64 = 62 * 86_400;

/// The `Prefer` header value that has Graph answer times in UTC.
pub const PREFER_UTC: &str = r#"outlook.timezone="UTC""#;

/// `availabilityViewInterval`'s bounds, minutes (the API reference).
pub const VIEW_INTERVAL_MINUTES: std::ops::RangeInclusive<u32> = 5..=1440;

/// `<graph>/v1.0/users/<mailbox>/calendar/getSchedule`: asked as one of
/// the mailboxes, any one with Calendars.Read granted does.
pub fn schedule_url(cloud: &Cloud, mailbox: &str) -> Result<String, GraphError> {
    url_with(
        cloud.graph(),
        &["v1.0", "users", mailbox, "calendar", "getSchedule"],
    )
}

fn utc_stamp(t: i64) -> Result<String, GraphError> {
    let at = OffsetDateTime::from_unix_timestamp(t)
        .map_err(|e| GraphError::Invalid(format!("time {t}: {e}")))?;
    at.format(format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]"
    ))
    .map_err(|e| GraphError::Invalid(format!("time {t}: {e}")))
}

/// A `getSchedule` body for `mailboxes` (1 to [`MAX_SCHEDULES`]) over
/// `[start, end)` (Unix seconds, less than 62 days), in UTC.
pub fn schedule_request(
    mailboxes: &[&str],
    start: i64,
    end: i64,
    interval_minutes: u32,
) -> Result<String, GraphError> {
    if mailboxes.is_empty() || mailboxes.len() > MAX_SCHEDULES {
        return Err(GraphError::Invalid(format!(
            "getSchedule takes 1 to {MAX_SCHEDULES} mailboxes, not {}",
            mailboxes.len()
        )));
    }
    if end <= start || end - start >= MAX_WINDOW_SECONDS {
        return Err(GraphError::Invalid(format!(
            "getSchedule's window must be non-empty and under 62 days, not {start}..{end}"
        )));
    }
    if !VIEW_INTERVAL_MINUTES.contains(&interval_minutes) {
        return Err(GraphError::Invalid(format!(
            "availabilityViewInterval must be 5 to 1440 minutes, not {interval_minutes}"
        )));
    }
    Ok(json!({
        "schedules": mailboxes,
        "startTime": {"dateTime": utc_stamp(start)?, "timeZone": "UTC"},
        "endTime": {"dateTime": utc_stamp(end)?, "timeZone": "UTC"},
        "availabilityViewInterval": interval_minutes,
    })
    .to_string())
}

/// Why one mailbox has no schedule in an otherwise good answer
/// (`ErrorMailRecipientNotFound`, ...), or why its items could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{code}: {message}")]
pub struct ScheduleError {
    pub code: String,
    pub message: String,
}

/// One mailbox's answer: the slots in the window (all of them, overlapping
/// or reaching outside the window: the scheduler decides), or why none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSchedule {
    /// `scheduleId`, as Graph spells it.
    pub mailbox: String,
    pub slots: Result<Vec<Slot>, ScheduleError>,
}

#[derive(Deserialize)]
struct ScheduleBody {
    value: Vec<ScheduleInformation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleInformation {
    schedule_id: Option<String>,
    #[serde(default)]
    schedule_items: Vec<ScheduleItem>,
    error: Option<FreeBusyError>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FreeBusyError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    response_code: String,
}

#[derive(Deserialize)]
struct ScheduleItem {
    #[serde(default)]
    status: String,
    start: Option<DateTimeTimeZone>,
    end: Option<DateTimeTimeZone>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DateTimeTimeZone {
    date_time: String,
    time_zone: Option<String>,
}

/// A schedule time: with an offset as given; without one, in its
/// `timeZone`, which must be UTC (what we asked for: we carry no zone
/// database to convert others).
pub fn parse_time(date_time: &str, time_zone: Option<&str>) -> Option<i64> {
    let text = date_time.trim();
    if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(at.unix_timestamp());
    }
    let utc = time_zone.is_none_or(|z| {
        matches!(
            z.trim().to_ascii_lowercase().as_str(),
            "utc" | "" | "etc/utc" | "coordinated universal time"
        )
    });
    if !utc {
        return None;
    }
    // Graph sends seven fractional digits (`10:00:00.0000000`); a slot is
    // whole seconds, so they are dropped.
    let whole = text.split('.').next().unwrap_or(text);
    PrimitiveDateTime::parse(
        whole,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    )
    .ok()
    .map(|at| at.assume_utc().unix_timestamp())
}

/// Graph's status, case-insensitively; a status we do not know (a future
/// one) is no data rather than a failed mailbox.
pub fn parse_status(status: &str) -> BusyType {
    BusyType::parse(status).unwrap_or(BusyType::NoData)
}

/// The answer to [`schedule_request`]: one result per `scheduleInformation`,
/// in Graph's order (the order asked). Err when the body is not such an
/// answer (a Graph error body included).
pub fn parse_schedule(body: &[u8]) -> Result<Vec<MailboxSchedule>, GraphError> {
    if let Some(error) = parse_error(body) {
        return Err(GraphError::Service(error));
    }
    let parsed: ScheduleBody = serde_json::from_slice(body)
        .map_err(|e| GraphError::Malformed(format!("getSchedule: {e}")))?;
    Ok(parsed.value.into_iter().map(mailbox_schedule).collect())
}

fn mailbox_schedule(info: ScheduleInformation) -> MailboxSchedule {
    let mailbox = info.schedule_id.unwrap_or_default();
    if let Some(error) = info.error {
        return MailboxSchedule {
            mailbox,
            slots: Err(ScheduleError {
                code: error.response_code,
                message: error.message,
            }),
        };
    }
    let mut slots = Vec::with_capacity(info.schedule_items.len());
    for item in info.schedule_items {
        let time = |at: &Option<DateTimeTimeZone>, which: &str| {
            at.as_ref()
                .and_then(|t| parse_time(&t.date_time, t.time_zone.as_deref()))
                .ok_or_else(|| ScheduleError {
                    code: "InvalidScheduleItem".to_owned(),
                    message: format!(
                        "a schedule item's {which} is not a UTC time: {:?}",
                        at.as_ref()
                            .map(|t| (t.date_time.as_str(), t.time_zone.as_deref()))
                    ),
                })
        };
        let (start, end) = match (time(&item.start, "start"), time(&item.end, "end")) {
            (Ok(start), Ok(end)) => (start, end),
            (Err(e), _) | (_, Err(e)) => {
                return MailboxSchedule {
                    mailbox,
                    slots: Err(e),
                };
            }
        };
        // An empty or inverted item covers no instant.
        if end > start {
            slots.push(Slot {
                start,
                end,
                busy: parse_status(&item.status),
            });
        }
    }
    MailboxSchedule {
        mailbox,
        slots: Ok(slots),
    }
}

// ---------------------------------------------------------------- errors, throttling

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorInner,
}

#[derive(Deserialize)]
struct ErrorInner {
    code: String,
    #[serde(default)]
    message: String,
}

/// Graph's `{"error":{"code","message"}}`, if `body` is one.
pub fn parse_error(body: &[u8]) -> Option<ServiceError> {
    let parsed: ErrorBody = serde_json::from_slice(body).ok()?;
    Some(ServiceError {
        code: parsed.error.code,
        message: parsed.error.message,
    })
}

/// The longest wait a `Retry-After` can impose: a server asking for more
/// is asked again after this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The back-off ceiling of [`backoff`].
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// `Retry-After` in its seconds form, at most [`MAX_RETRY_AFTER`].
pub fn retry_after(value: &str) -> Option<Duration> {
    let seconds: u64 = value.trim().parse().ok()?;
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// `Retry-After` in either form (seconds or an HTTP-date, read against
/// `now`, Unix seconds), at most [`MAX_RETRY_AFTER`]; a date passed is no
/// wait.
pub fn retry_after_at(value: &str, now: i64) -> Option<Duration> {
    if let Some(wait) = retry_after(value) {
        return Some(wait);
    }
    let at = PrimitiveDateTime::parse(
        value.trim(),
        format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
        ),
    )
    .ok()?
    .assume_utc()
    .unix_timestamp();
    let seconds = u64::try_from(at.saturating_sub(now)).unwrap_or(0);
    Some(Duration::from_secs(seconds).min(MAX_RETRY_AFTER))
}

/// The wait before retry `attempt` (1, 2, ...) when the server gave none:
/// 2 s, 4 s, 8 s, ... at most [`MAX_BACKOFF`].
pub fn backoff(attempt: u32) -> Duration {
    let exponent = attempt.clamp(1, 6);
    Duration::from_secs(1u64 << exponent).min(MAX_BACKOFF)
}

// ---------------------------------------------------------------- subscriptions

/// The longest we ask an Outlook event subscription to live, minutes: the
/// contract's figure, and the maximum Microsoft long documented for Outlook
/// resources (subscription resource type, "Subscription lifetime"). Should
/// Graph now allow longer, a shorter lifetime is still accepted.
pub const MAX_SUBSCRIPTION_MINUTES: i64 = 4230;

/// Where the listener takes change notifications, under the public base.
pub const NOTIFY_PATH: &str = "/graph/notify";

/// Where the listener takes lifecycle notifications, under the public base.
pub const LIFECYCLE_PATH: &str = "/graph/lifecycle";

/// `clientState`'s longest form (Graph refuses more).
pub const MAX_CLIENT_STATE_CHARS: usize = 128;

/// The notification and lifecycle URLs under the Microsoft 365
/// Notification URL `base`.
pub fn notification_urls(base: &str) -> (String, String) {
    let base = base.trim_end_matches('/');
    (
        format!("{base}{NOTIFY_PATH}"),
        format!("{base}{LIFECYCLE_PATH}"),
    )
}

/// `<graph>/v1.0/subscriptions`.
pub fn subscriptions_url(cloud: &Cloud) -> Result<String, GraphError> {
    url_with(cloud.graph(), &["v1.0", "subscriptions"])
}

/// `<graph>/v1.0/subscriptions/<id>` (PATCH to renew, DELETE to end).
pub fn subscription_url(cloud: &Cloud, id: &str) -> Result<String, GraphError> {
    url_with(cloud.graph(), &["v1.0", "subscriptions", id])
}

/// An expiry as Graph writes it: UTC, seven fractional digits, `Z`.
pub fn format_expiry(t: i64) -> Result<String, GraphError> {
    Ok(format!("{}.0000000Z", utc_stamp(t)?))
}

/// How much earlier than the maximum a subscription asks to expire: this
/// server's clock may run minutes ahead of Microsoft's, and an expiry
/// beyond the maximum is refused outright.
pub const EXPIRY_SKEW_SECONDS: i64 = 15 * 60;

/// The latest expiry a subscription made at `now` may ask: the maximum
/// lifetime less [`EXPIRY_SKEW_SECONDS`].
pub fn max_expiry(now: i64) -> i64 {
    now + MAX_SUBSCRIPTION_MINUTES * 60 - EXPIRY_SKEW_SECONDS
}

/// When to renew a subscription made (or last renewed) at `issued` that
/// expires at `expiry`: once less than a third of its lifetime, or less
/// than an hour, remains, whichever comes first; but never in the first
/// half of its life, so that a subscription Graph granted for less than
/// asked (an hour, say) is not renewed over and over.
pub fn renew_at(issued: i64, expiry: i64) -> i64 {
    let lifetime = expiry.saturating_sub(issued).max(0);
    let margin = (lifetime / 3).max(3600).min(lifetime / 2);
    expiry.saturating_sub(margin).max(issued)
}

/// A fresh `clientState`: 256 random bits, base64url without padding
/// (43 characters), so a notification can be told from a forgery.
pub fn new_client_state() -> String {
    use base64::Engine as _;
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a notification's `clientState` is ours, in time independent of
/// where they differ (a forger learns nothing from how fast we refuse).
pub fn client_state_matches(expected: &str, received: Option<&str>) -> bool {
    let Some(received) = received else {
        return false;
    };
    let (a, b) = (expected.as_bytes(), received.as_bytes());
    if a.len() != b.len() || a.is_empty() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The body creating a subscription to `mailbox`'s events, notified under
/// `base` until `expiry` (Unix seconds, at most
/// [`MAX_SUBSCRIPTION_MINUTES`] ahead).
pub fn subscription_request(
    base: &str,
    mailbox: &str,
    expiry: i64,
    client_state: &str,
) -> Result<String, GraphError> {
    if client_state.is_empty() || client_state.chars().count() > MAX_CLIENT_STATE_CHARS {
        return Err(GraphError::Invalid(format!(
            "clientState must be 1 to {MAX_CLIENT_STATE_CHARS} characters"
        )));
    }
    let parsed = url::Url::parse(base)
        .map_err(|e| GraphError::Invalid(format!("notification URL {base:?}: {e}")))?;
    if parsed.scheme() != "https" && parsed.scheme() != "http" {
        return Err(GraphError::Invalid(format!(
            "notification URL {base:?} is not http(s)"
        )));
    }
    let (notify, lifecycle) = notification_urls(base);
    Ok(json!({
        "changeType": "created,updated,deleted",
        "notificationUrl": notify,
        "lifecycleNotificationUrl": lifecycle,
        "resource": format!("users/{mailbox}/events"),
        "expirationDateTime": format_expiry(expiry)?,
        "clientState": client_state,
    })
    .to_string())
}

/// The PATCH body renewing a subscription until `expiry`.
pub fn renew_request(expiry: i64) -> Result<String, GraphError> {
    Ok(json!({ "expirationDateTime": format_expiry(expiry)? }).to_string())
}

/// A subscription Graph made or renewed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    /// Unix seconds.
    pub expires: i64,
    pub resource: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SubscriptionBody {
    id: Option<String>,
    expiration_date_time: Option<String>,
    resource: Option<String>,
}

/// The answer to a create (201) or renew (200): the subscription, or
/// Graph's refusal.
pub fn parse_subscription(body: &[u8]) -> Result<Subscription, GraphError> {
    if let Some(error) = parse_error(body) {
        return Err(GraphError::Service(error));
    }
    let parsed: SubscriptionBody = serde_json::from_slice(body)
        .map_err(|e| GraphError::Malformed(format!("subscription: {e}")))?;
    let id = parsed
        .id
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| GraphError::Malformed("the subscription has no id".to_owned()))?;
    let expiry = parsed.expiration_date_time.unwrap_or_default();
    let expires = OffsetDateTime::parse(expiry.trim(), &Rfc3339)
        .map_err(|e| GraphError::Malformed(format!("expirationDateTime {expiry:?}: {e}")))?
        .unix_timestamp();
    Ok(Subscription {
        id,
        expires,
        resource: parsed.resource,
    })
}

/// What a lifecycle notification says happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LifecycleEvent {
    /// Renew (or re-create) the subscription or notifications pause.
    ReauthorizationRequired,
    /// The subscription is gone: create it again and re-read the calendar.
    SubscriptionRemoved,
    /// Notifications were lost: re-read the calendar.
    Missed,
    /// One Microsoft adds later.
    Other(String),
}

impl LifecycleEvent {
    /// Graph's spelling, case-insensitively.
    pub fn parse(value: &str) -> LifecycleEvent {
        match value.trim().to_ascii_lowercase().as_str() {
            "reauthorizationrequired" => LifecycleEvent::ReauthorizationRequired,
            "subscriptionremoved" => LifecycleEvent::SubscriptionRemoved,
            "missed" => LifecycleEvent::Missed,
            _ => LifecycleEvent::Other(value.to_owned()),
        }
    }
}

/// One item of a notification POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// Something in a watched calendar changed.
    Change {
        subscription_id: String,
        client_state: Option<String>,
        change_type: String,
        resource: String,
        /// From the resource (`Users/<mailbox>/Events/<id>`), when it says.
        mailbox: Option<String>,
    },
    /// Something happened to the subscription itself.
    Lifecycle {
        subscription_id: String,
        client_state: Option<String>,
        event: LifecycleEvent,
    },
}

impl Notification {
    pub fn subscription_id(&self) -> &str {
        match self {
            Notification::Change {
                subscription_id, ..
            }
            | Notification::Lifecycle {
                subscription_id, ..
            } => subscription_id,
        }
    }

    pub fn client_state(&self) -> Option<&str> {
        match self {
            Notification::Change { client_state, .. }
            | Notification::Lifecycle { client_state, .. } => client_state.as_deref(),
        }
    }
}

#[derive(Deserialize)]
struct NotificationBody {
    value: Vec<NotificationItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationItem {
    subscription_id: Option<String>,
    client_state: Option<String>,
    change_type: Option<String>,
    resource: Option<String>,
    lifecycle_event: Option<String>,
}

/// A notification POST's items, change or lifecycle (the two URLs may be
/// one). Err when the body is not `{"value":[...]}` or an item names no
/// subscription or, being a change, no resource.
pub fn parse_notifications(body: &[u8]) -> Result<Vec<Notification>, GraphError> {
    let parsed: NotificationBody = serde_json::from_slice(body)
        .map_err(|e| GraphError::Malformed(format!("notification: {e}")))?;
    parsed
        .value
        .into_iter()
        .map(|item| {
            let subscription_id =
                item.subscription_id
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| {
                        GraphError::Malformed("a notification names no subscription".to_owned())
                    })?;
            if let Some(event) = item.lifecycle_event {
                return Ok(Notification::Lifecycle {
                    subscription_id,
                    client_state: item.client_state,
                    event: LifecycleEvent::parse(&event),
                });
            }
            let resource = item.resource.ok_or_else(|| {
                GraphError::Malformed("a change notification names no resource".to_owned())
            })?;
            Ok(Notification::Change {
                mailbox: mailbox_of(&resource),
                subscription_id,
                client_state: item.client_state,
                change_type: item.change_type.unwrap_or_default(),
                resource,
            })
        })
        .collect()
}

/// The mailbox of a resource path `Users/<mailbox>/Events/...`
/// (case-insensitively, with or without a leading `/`).
pub fn mailbox_of(resource: &str) -> Option<String> {
    let mut parts = resource.trim_start_matches('/').split('/');
    let users = parts.next()?;
    let mailbox = parts.next()?;
    let events = parts.next()?;
    (users.eq_ignore_ascii_case("users")
        && events.eq_ignore_ascii_case("events")
        && !mailbox.is_empty())
    .then(|| mailbox.to_owned())
}

/// The decoded `validationToken` of a validation request's query string
/// (with or without its `?`), which the listener echoes as text/plain.
pub fn validation_token(query: &str) -> Option<String> {
    url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
        .find(|(name, _)| name == "validationToken")
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        OffsetDateTime::parse(text, &Rfc3339)
            .expect("time")
            .unix_timestamp()
    }

    #[test]
    fn clouds_have_their_documented_hosts_and_scopes() {
        let cases = [
            (
                "global",
                "https://login.microsoftonline.com",
                "https://graph.microsoft.com",
            ),
            (
                "usgov",
                "https://login.microsoftonline.us",
                "https://graph.microsoft.us",
            ),
            (
                "USGOVDOD",
                "https://login.microsoftonline.us",
                "https://dod-graph.microsoft.us",
            ),
            (
                "china",
                "https://login.chinacloudapi.cn",
                "https://microsoftgraph.chinacloudapi.cn",
            ),
        ];
        for (name, signin, graph) in cases {
            let cloud = Cloud::from_cli(name).expect(name);
            assert_eq!((cloud.signin(), cloud.graph()), (signin, graph));
            assert_eq!(cloud.scope(), format!("{graph}/.default"));
        }
        assert!(Cloud::from_cli("germany").is_err());
        assert_eq!("china".parse::<Cloud>(), Ok(Cloud::China));
        let sim = Cloud::custom("http://127.0.0.1:9000/", "http://127.0.0.1:9001");
        assert_eq!(sim.signin(), "http://127.0.0.1:9000");
        assert_eq!(sim.scope(), "http://127.0.0.1:9001/.default");
    }

    #[test]
    fn the_token_request_names_tenant_and_scope() {
        assert_eq!(
            token_url(&Cloud::Global, "contoso.onmicrosoft.com").as_deref(),
            Ok("https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token")
        );
        assert_eq!(
            token_url(&Cloud::UsGovDod, "72F988BF-86f1-41af-91ab-2d7cd011db47").as_deref(),
            Ok(
                "https://login.microsoftonline.us/72F988BF-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
            )
        );
        for bad in [
            "",
            "common.",
            "contoso",
            "https://login.microsoftonline.com/x",
            "a/b.com",
            "-x.com",
            "72f988bf-86f1-41af-91ab-2d7cd011db4",
            "1.2.3.4",
        ] {
            assert!(token_url(&Cloud::Global, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            token_body(&Cloud::Global, "app id", "s&cr=t+/"),
            "client_id=app+id&client_secret=s%26cr%3Dt%2B%2F\
             &scope=https%3A%2F%2Fgraph.microsoft.com%2F.default&grant_type=client_credentials"
        );
    }

    #[test]
    fn a_token_parses_and_is_not_logged() {
        let token = parse_token(
            br#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"access_token":"eyJ0eXAi.x.y"}"#,
        )
        .expect("token");
        assert_eq!(token.expires_in, 3599);
        assert_eq!(token.access_token, "eyJ0eXAi.x.y");
        assert!(!format!("{token:?}").contains("eyJ0"));
        assert_eq!(
            parse_token(br#"{"access_token":"t","expires_in":"60"}"#).map(|t| t.expires_in),
            Ok(60)
        );
        for garbage in [
            &b"<html>"[..],
            b"",
            b"{}",
            b"[]",
            br#"{"access_token":"t"}"#,
        ] {
            let e = parse_token(garbage).unwrap_err();
            assert_eq!(e.error, "invalid_response");
            assert_eq!(e.code, None);
        }
    }

    /// The shape of the identity platform's error response (client
    /// credentials flow, "Error response",
    /// <https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow>),
    /// with each code's description as Microsoft's sign-in words it (codes:
    /// <https://learn.microsoft.com/entra/identity-platform/reference-error-codes>;
    /// 7000215/7000222/700016 also in
    /// <https://learn.microsoft.com/azure/developer/java/sdk/troubleshooting-authentication-service-principal>).
    fn refusal(error: &str, code: u32, text: &str) -> Vec<u8> {
        json!({
            "error": error,
            "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 0000aaaa-11bb-cccc-dd22-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-12-03 10:00:00Z"),
            "error_codes": [code],
            "timestamp": "2026-12-03 10:00:00Z",
            "trace_id": "0000aaaa-11bb-cccc-dd22-eeeeee333333",
            "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
            "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn each_refusal_has_its_advice() {
        let cases = [
            (
                "invalid_client",
                7_000_215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '00001111-aaaa-2222-bbbb-3333cccc4444'.",
                "Value",
            ),
            (
                "invalid_client",
                7_000_222,
                "The provided client secret keys for app '00001111-aaaa-2222-bbbb-3333cccc4444' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.",
                "expired",
            ),
            (
                "unauthorized_client",
                700_016,
                "Application with identifier '00001111-aaaa-2222-bbbb-3333cccc4444' was not found in the directory 'Contoso'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                "Application (client) ID",
            ),
            (
                "invalid_request",
                90_002,
                "Tenant 'contoso.onmicrosoft.con' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.",
                "Tenant",
            ),
            (
                "invalid_grant",
                65_001,
                "The user or administrator has not consented to use the application with ID '00001111-aaaa-2222-bbbb-3333cccc4444' named 'Presence Gateway'. Send an interactive authorization request for this user and resource.",
                "admin consent",
            ),
        ];
        for (error, code, text, hint) in cases {
            let refused = parse_token(&refusal(error, code, text)).unwrap_err();
            assert_eq!(refused.code, Some(code));
            assert_eq!(refused.error, error);
            assert!(refused.description.starts_with(&format!("AADSTS{code}: ")));
            let advice = advice(&refused);
            assert!(advice.contains(hint), "{code}: {advice}");
        }
        // The advice goes by the code, whatever the OAuth error says: 90002
        // also comes as `invalid_tenant`, 65001 with a `suberror`.
        let tenant = br#"{"error":"invalid_tenant","error_description":"AADSTS90002: Tenant 'contoso.onmicrosoft.con' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.\r\nTrace ID: 1\r\nCorrelation ID: 2\r\nTimestamp: 2026-12-03 10:00:00Z","error_codes":[90002],"error_uri":"https://login.microsoftonline.com/error?code=90002"}"#;
        assert!(advice(&parse_token(tenant).unwrap_err()).contains("Check the Tenant"));
        let consent = br#"{"error":"invalid_grant","error_description":"AADSTS65001: The user or administrator has not consented to use the application with ID 'x' named 'y'. Send an interactive authorization request for this user and resource.","error_codes":[65001],"suberror":"consent_required"}"#;
        assert!(advice(&parse_token(consent).unwrap_err()).contains("Grant admin consent"));
        // Codes 65001 and 700016 must not be confused with their prefixes.
        assert_ne!(
            advice(&TokenError {
                code: Some(7_000_215),
                error: String::new(),
                description: String::new()
            }),
            advice(&TokenError {
                code: Some(700_016),
                error: String::new(),
                description: String::new()
            })
        );
    }

    #[test]
    fn other_refusals_quote_their_first_line() {
        let body = refusal(
            "invalid_client",
            7_000_218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
        let refused = parse_token(&body).unwrap_err();
        assert_eq!(refused.code, Some(7_000_218));
        assert_eq!(
            advice(&refused),
            "Microsoft's sign-in refused the request: AADSTS7000218: The request body must \
             contain the following parameter: 'client_assertion' or 'client_secret'."
        );
        // No error_codes: the code is read from the description.
        let bare = br#"{"error":"invalid_scope","error_description":"AADSTS70011: The provided value for the input parameter 'scope' is not valid."}"#;
        assert_eq!(parse_token(bare).unwrap_err().code, Some(70011));
        let none = parse_token(br#"{"error":"server_error"}"#).unwrap_err();
        assert_eq!(none.code, None);
        assert_eq!(
            advice(&none),
            "Microsoft's sign-in refused the request: server_error"
        );
    }

    #[test]
    fn the_schedule_request_asks_in_utc() {
        let url = schedule_url(&Cloud::Global, "a b/c@x.com").expect("url");
        assert_eq!(
            url,
            "https://graph.microsoft.com/v1.0/users/a%20b%2Fc@x.com/calendar/getSchedule"
        );
        assert_eq!(PREFER_UTC, "outlook.timezone=\"UTC\"");
        let body = schedule_request(
            &["a@x.com", "b@x.com"],
            at("2026-12-03T00:00:00Z"),
            at("2026-12-05T00:00:00Z"),
            60,
        )
        .expect("body");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            body,
            json!({"schedules":["a@x.com","b@x.com"],
                "startTime":{"dateTime":"2026-12-03T00:00:00","timeZone":"UTC"},
                "endTime":{"dateTime":"2026-12-05T00:00:00","timeZone":"UTC"},
                "availabilityViewInterval":60})
        );
        let many: Vec<String> = (0..=MAX_SCHEDULES).map(|i| format!("u{i}@x.com")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(schedule_request(&many, 0, 60, 30).is_err());
        assert!(schedule_request(&many[..MAX_SCHEDULES], 0, 60, 30).is_ok());
        assert!(schedule_request(&[], 0, 60, 30).is_err());
        assert!(schedule_request(&["a@x.com"], 60, 60, 30).is_err());
        assert!(schedule_request(&["a@x.com"], 0, MAX_WINDOW_SECONDS, 30).is_err());
        assert!(schedule_request(&["a@x.com"], 0, 60, 4).is_err());
    }

    /// Microsoft's sample answer (calendar: getSchedule,
    /// <https://learn.microsoft.com/graph/api/calendar-getschedule>,
    /// paraphrased), asked in UTC, with an unknown mailbox's error item.
    const SAMPLE: &str = r#"{
      "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(microsoft.graph.scheduleInformation)",
      "value": [
        {"scheduleId": "adelev@contoso.com", "availabilityView": "000220000",
         "scheduleItems": [
           {"isPrivate": false, "status": "busy", "subject": "Let's go for lunch", "location": "Harry's Bar",
            "start": {"dateTime": "2019-03-15T12:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2019-03-15T14:00:00.0000000", "timeZone": "UTC"}}],
         "workingHours": {"daysOfWeek": ["monday","tuesday","wednesday","thursday","friday"],
           "startTime": "08:00:00.0000000", "endTime": "17:00:00.0000000", "timeZone": {"name": "UTC"}}},
        {"scheduleId": "meganb@contoso.com", "availabilityView": "200220010",
         "scheduleItems": [
           {"status": "busy", "start": {"dateTime": "2019-03-15T08:30:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2019-03-15T09:30:00.0000000", "timeZone": "UTC"}},
           {"status": "busy", "start": {"dateTime": "2019-03-15T12:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2019-03-15T14:00:00.0000000", "timeZone": "UTC"}},
           {"status": "tentative", "start": {"dateTime": "2019-03-15T12:00:00.0000000", "timeZone": "UTC"},
            "end": {"dateTime": "2019-03-15T13:00:00.0000000", "timeZone": "UTC"}}]},
        {"scheduleId": "nobody@contoso.com", "availabilityView": "",
         "error": {"message": "The recipient could not be found.", "responseCode": "ErrorMailRecipientNotFound"}}
      ]}"#;

    #[test]
    fn microsofts_sample_parses_with_overlaps_kept() {
        let results = parse_schedule(SAMPLE.as_bytes()).expect("parse");
        assert_eq!(results.len(), 3);
        assert_eq!(results[0].mailbox, "adelev@contoso.com");
        assert_eq!(
            results[0].slots,
            Ok(vec![Slot {
                start: at("2019-03-15T12:00:00Z"),
                end: at("2019-03-15T14:00:00Z"),
                busy: BusyType::Busy
            }])
        );
        let megan = results[1].slots.as_ref().expect("meganb");
        // Busy 12-14 and tentative 12-13 overlap: both kept.
        assert_eq!(megan.len(), 3);
        assert_eq!(megan[2].busy, BusyType::Tentative);
        assert_eq!(megan[2].start, megan[1].start);
        assert_eq!(
            results[2].slots,
            Err(ScheduleError {
                code: "ErrorMailRecipientNotFound".to_owned(),
                message: "The recipient could not be found.".to_owned()
            })
        );
    }

    fn one_item(status: &str, start: &str, end: &str, zone: &str) -> Vec<u8> {
        json!({"value": [{"scheduleId": "a@x.com", "scheduleItems": [
            {"status": status, "start": {"dateTime": start, "timeZone": zone},
             "end": {"dateTime": end, "timeZone": zone}}]}]})
        .to_string()
        .into_bytes()
    }

    #[test]
    fn every_status_maps_case_insensitively() {
        for (status, busy) in [
            ("free", BusyType::Free),
            ("Tentative", BusyType::Tentative),
            ("BUSY", BusyType::Busy),
            ("oof", BusyType::OutOfOffice),
            ("workingElsewhere", BusyType::WorkingElsewhere),
            ("unknown", BusyType::NoData),
            ("somethingNew", BusyType::NoData),
            ("", BusyType::NoData),
        ] {
            let body = one_item(
                status,
                "2026-12-03T10:00:00.0000000",
                "2026-12-03T11:00:00.0000000",
                "UTC",
            );
            let results = parse_schedule(&body).expect("parse");
            assert_eq!(
                results[0].slots,
                Ok(vec![Slot {
                    start: at("2026-12-03T10:00:00Z"),
                    end: at("2026-12-03T11:00:00Z"),
                    busy
                }]),
                "{status}"
            );
        }
    }

    #[test]
    fn times_are_utc_and_items_crossing_the_window_keep_their_times() {
        assert_eq!(
            parse_time("2026-12-03T10:00:00.0000000", Some("UTC")),
            Some(at("2026-12-03T10:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-12-03T10:00:00", None),
            Some(at("2026-12-03T10:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-12-03T10:00:00+01:00", Some("UTC")),
            Some(at("2026-12-03T09:00:00Z"))
        );
        // A zone we did not ask for cannot be converted: not guessed.
        assert_eq!(
            parse_time("2026-12-03T10:00:00.0000000", Some("Pacific Standard Time")),
            None
        );
        assert_eq!(parse_time("tomorrow", Some("UTC")), None);
        // A week-long absence started before the window asked and ends after.
        let body = one_item(
            "oof",
            "2026-11-30T00:00:00.0000000",
            "2026-12-07T00:00:00.0000000",
            "UTC",
        );
        let slots = parse_schedule(&body).expect("parse").remove(0).slots;
        assert_eq!(
            slots,
            Ok(vec![Slot {
                start: at("2026-11-30T00:00:00Z"),
                end: at("2026-12-07T00:00:00Z"),
                busy: BusyType::OutOfOffice
            }])
        );
        // An empty item covers nothing.
        let empty = one_item(
            "busy",
            "2026-12-03T10:00:00.0000000",
            "2026-12-03T10:00:00.0000000",
            "UTC",
        );
        assert_eq!(parse_schedule(&empty).expect("parse")[0].slots, Ok(vec![]));
    }

    #[test]
    fn a_bad_item_fails_its_mailbox_and_garbage_fails_the_answer() {
        let foreign = one_item(
            "busy",
            "2026-12-03T10:00:00.0000000",
            "2026-12-03T11:00:00.0000000",
            "W. Europe Standard Time",
        );
        let results = parse_schedule(&foreign).expect("parse");
        assert_eq!(
            results[0].slots.as_ref().unwrap_err().code,
            "InvalidScheduleItem"
        );
        for garbage in [
            &b""[..],
            b"<html>",
            b"{}",
            b"{\"value\":3}",
            b"{\"value\":[{\"scheduleItems\":[{\"start\":7}]}]}",
            b"{\"value\":[",
        ] {
            assert!(
                matches!(parse_schedule(garbage), Err(GraphError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        let denied = br#"{"error":{"code":"ErrorAccessDenied","message":"Access is denied. Check credentials and try again."}}"#;
        assert_eq!(
            parse_schedule(denied),
            Err(GraphError::Service(ServiceError {
                code: "ErrorAccessDenied".to_owned(),
                message: "Access is denied. Check credentials and try again.".to_owned()
            }))
        );
    }

    #[test]
    fn errors_and_throttling() {
        let throttled = br#"{"error":{"code":"ApplicationThrottled","message":"Application is over its MailboxConcurrency limit.","innerError":{"date":"2026-12-03T10:00:00","request-id":"x"}}}"#;
        assert_eq!(
            parse_error(throttled).map(|e| e.code),
            Some("ApplicationThrottled".to_owned())
        );
        assert_eq!(parse_error(b"{\"value\":[]}"), None);
        assert_eq!(parse_error(b"nope"), None);
        assert_eq!(retry_after("30"), Some(Duration::from_secs(30)));
        assert_eq!(retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("-5"), None);
        assert_eq!(retry_after("soon"), None);
        let now = at("2026-12-03T10:00:00Z");
        assert_eq!(
            retry_after_at("Thu, 03 Dec 2026 10:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            retry_after_at("Thu, 03 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            retry_after_at("Fri, 04 Dec 2026 10:00:00 GMT", now),
            Some(MAX_RETRY_AFTER)
        );
        assert_eq!(retry_after_at("12", now), Some(Duration::from_secs(12)));
        assert_eq!(retry_after_at("Thursday", now), None);
        let waits: Vec<u64> = (0..9).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [2, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn the_subscription_request_follows_the_contract() {
        let expiry = at("2026-12-05T10:00:00Z");
        let body = subscription_request("https://pg.example.com/", "a@x.com", expiry, "s3cret")
            .expect("body");
        let body: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(
            body,
            json!({"changeType":"created,updated,deleted",
                "notificationUrl":"https://pg.example.com/graph/notify",
                "lifecycleNotificationUrl":"https://pg.example.com/graph/lifecycle",
                "resource":"users/a@x.com/events",
                "expirationDateTime":"2026-12-05T10:00:00.0000000Z",
                "clientState":"s3cret"})
        );
        assert!(subscription_request("pg.example.com", "a@x.com", expiry, "s").is_err());
        assert!(subscription_request("https://pg", "a@x.com", expiry, "").is_err());
        assert!(subscription_request("https://pg", "a@x.com", expiry, &"x".repeat(129)).is_err());
        assert_eq!(
            renew_request(expiry).as_deref(),
            Ok(r#"{"expirationDateTime":"2026-12-05T10:00:00.0000000Z"}"#)
        );
        assert_eq!(
            subscriptions_url(&Cloud::China).as_deref(),
            Ok("https://microsoftgraph.chinacloudapi.cn/v1.0/subscriptions")
        );
        assert_eq!(
            subscription_url(&Cloud::Global, "7f105c7d-2dc5-4530-97cd-4e7ae6534c07").as_deref(),
            Ok(
                "https://graph.microsoft.com/v1.0/subscriptions/7f105c7d-2dc5-4530-97cd-4e7ae6534c07"
            )
        );
    }

    #[test]
    fn subscriptions_are_renewed_in_time() {
        let now = at("2026-12-03T10:00:00Z");
        let expiry = max_expiry(now);
        assert_eq!(expiry - now, 4230 * 60 - 15 * 60);
        // A third of ~70 h before expiry.
        let renew = renew_at(now, expiry);
        assert_eq!(expiry - renew, (expiry - now) / 3);
        // A short subscription: an hour before, but not in the first half
        // of its life; never before it was made.
        assert_eq!(renew_at(now, now + 2 * 3600), now + 3600);
        assert_eq!(renew_at(now, now + 3 * 3600), now + 2 * 3600);
        assert_eq!(renew_at(now, now + 1800), now + 900);
        assert_eq!(renew_at(now, now + 1200), now + 600);
        assert_eq!(renew_at(now, now - 10), now);
    }

    #[test]
    fn a_created_subscription_parses() {
        let body = br#"{"@odata.context":"https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
          "id":"7f105c7d-2dc5-4530-97cd-4e7ae6534c07","resource":"users/a@x.com/events",
          "applicationId":"24d3b144-21ae-4080-943f-7067b395b913","changeType":"created,updated,deleted",
          "clientState":"s3cret","notificationUrl":"https://pg.example.com/graph/notify",
          "lifecycleNotificationUrl":"https://pg.example.com/graph/lifecycle",
          "expirationDateTime":"2026-12-05T10:00:00.0000000Z","creatorId":"8ee44408-0679-472c-bc2a-692812af3437"}"#;
        assert_eq!(
            parse_subscription(body),
            Ok(Subscription {
                id: "7f105c7d-2dc5-4530-97cd-4e7ae6534c07".to_owned(),
                expires: at("2026-12-05T10:00:00Z"),
                resource: Some("users/a@x.com/events".to_owned()),
            })
        );
        let refused = br#"{"error":{"code":"ValidationError","message":"Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request."}}"#;
        assert!(matches!(
            parse_subscription(refused),
            Err(GraphError::Service(ServiceError { ref code, .. })) if code == "ValidationError"
        ));
        assert!(parse_subscription(br#"{"id":"x"}"#).is_err());
        assert!(parse_subscription(br#"{"expirationDateTime":"2026-12-05T10:00:00Z"}"#).is_err());
        assert!(parse_subscription(b"").is_err());
    }

    #[test]
    fn client_states_are_random_url_safe_and_compared_whole() {
        let a = new_client_state();
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(a, new_client_state());
        assert!(client_state_matches(&a, Some(&a)));
        assert!(!client_state_matches(&a, Some(&a[..42])));
        assert!(!client_state_matches(&a, Some(&format!("{}x", &a[..42]))));
        assert!(!client_state_matches(&a, None));
        assert!(!client_state_matches("", Some("")));
    }

    /// Microsoft's change notification example, for an event instead of a
    /// message
    /// (<https://learn.microsoft.com/graph/change-notifications-delivery-webhooks>).
    #[test]
    fn change_notifications_name_their_mailbox() {
        let body = br##"{"value":[{
            "id":"lsgTZMr9KwAAA",
            "subscriptionId":"7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime":"2026-12-05T10:00:00.0000000Z",
            "clientState":"secretClientValue",
            "changeType":"updated",
            "resource":"Users/a@x.com/Events/AAMkAGUwNjQ4ZjIxAAA=",
            "tenantId":"84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData":{"@odata.type":"#Microsoft.Graph.Event",
              "@odata.id":"Users/a@x.com/Events/AAMkAGUwNjQ4ZjIxAAA=",
              "@odata.etag":"W/\"DwAAABYAAADkrWGo7bouTKlsgTZMr9KwAAAUWRHf\"",
              "id":"AAMkAGUwNjQ4ZjIxAAA="}}]}"##;
        let parsed = parse_notifications(body).expect("parse");
        assert_eq!(
            parsed,
            vec![Notification::Change {
                subscription_id: "7f105c7d-2dc5-4530-97cd-4e7ae6534c07".to_owned(),
                client_state: Some("secretClientValue".to_owned()),
                change_type: "updated".to_owned(),
                resource: "Users/a@x.com/Events/AAMkAGUwNjQ4ZjIxAAA=".to_owned(),
                mailbox: Some("a@x.com".to_owned()),
            }]
        );
        assert_eq!(parsed[0].client_state(), Some("secretClientValue"));
        assert_eq!(
            mailbox_of("/users/b@x.com/events/1"),
            Some("b@x.com".into())
        );
        assert_eq!(mailbox_of("USERS/c@x.com/EVENTS"), Some("c@x.com".into()));
        assert_eq!(mailbox_of("Users/a@x.com/Messages/1"), None);
        assert_eq!(mailbox_of("Users//Events/1"), None);
        assert_eq!(mailbox_of(""), None);
        for garbage in [
            &b""[..],
            b"{}",
            b"{\"value\":[{}]}",
            b"{\"value\":[{\"subscriptionId\":\"s\"}]}",
            b"[1,2",
        ] {
            assert!(parse_notifications(garbage).is_err());
        }
    }

    /// Microsoft's lifecycle notification example ("Reduce missing
    /// subscriptions and change notifications",
    /// <https://learn.microsoft.com/graph/change-notifications-lifecycle-events>),
    /// and the other events.
    #[test]
    fn lifecycle_notifications_say_what_happened() {
        let body = br#"{"value":[
            {"lifecycleEvent":"reauthorizationRequired","subscriptionId":"e3898f08-5cd0-4a6a-80fc-6addbfb73b7b",
             "subscriptionExpirationDateTime":"2019-09-18T00:52:45.9696658+00:00",
             "clientState":"{secret client state}","tenantId":"84bd8158-6d4d-4958-8b9f-9d6445542f95"},
            {"lifecycleEvent":"subscriptionRemoved","subscriptionId":"s2","clientState":"c"},
            {"lifecycleEvent":"missed","subscriptionId":"s3","clientState":"c"},
            {"lifecycleEvent":"somethingElse","subscriptionId":"s4"}]}"#;
        let events: Vec<(String, LifecycleEvent)> = parse_notifications(body)
            .expect("parse")
            .into_iter()
            .map(|n| match n {
                Notification::Lifecycle {
                    subscription_id,
                    event,
                    ..
                } => (subscription_id, event),
                other => panic!("not lifecycle: {other:?}"),
            })
            .collect();
        assert_eq!(
            events,
            vec![
                (
                    "e3898f08-5cd0-4a6a-80fc-6addbfb73b7b".to_owned(),
                    LifecycleEvent::ReauthorizationRequired
                ),
                ("s2".to_owned(), LifecycleEvent::SubscriptionRemoved),
                ("s3".to_owned(), LifecycleEvent::Missed),
                (
                    "s4".to_owned(),
                    LifecycleEvent::Other("somethingElse".to_owned())
                ),
            ]
        );
        assert_eq!(
            LifecycleEvent::parse("MISSED"),
            LifecycleEvent::Missed,
            "case-insensitive"
        );
    }

    #[test]
    fn the_validation_token_is_decoded() {
        assert_eq!(
            validation_token("validationToken=Validation%3a+Testing+client+application+reachability+for+subscription+Request-Id%3a+25ec8d9e"),
            Some("Validation: Testing client application reachability for subscription Request-Id: 25ec8d9e".to_owned())
        );
        assert_eq!(
            validation_token("?a=1&validationToken=a%26b%3Dc%2B"),
            Some("a&b=c+".to_owned())
        );
        assert_eq!(validation_token("validationtoken=x"), None);
        assert_eq!(validation_token(""), None);
    }
}
