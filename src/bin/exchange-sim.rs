//! exchange-sim: an Exchange stand-in on loopback for tests and newcomers
//! (EN-6). EWS (GetFolder, GetUserAvailability, GetServerTimeZones,
//! Subscribe with push notifications, Unsubscribe) and WebDAV PROPFIND over
//! TLS, behind IIS-like authentication, answering as scripted by --behave,
//! with faults on demand and counts of what reached it under /sim/.

#[path = "exchange_sim/calendars.rs"]
mod calendars;
#[path = "exchange_sim/certs.rs"]
mod certs;
#[path = "exchange_sim/control.rs"]
mod control;
#[path = "exchange_sim/ews.rs"]
mod ews;
#[path = "exchange_sim/graph.rs"]
mod graph;
#[path = "exchange_sim/graph_control.rs"]
mod graph_control;
#[path = "exchange_sim/graph_schedule.rs"]
mod graph_schedule;
#[path = "exchange_sim/graph_subs.rs"]
mod graph_subs;
#[path = "exchange_sim/push.rs"]
mod push;
#[path = "exchange_sim/service.rs"]
mod service;

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};
use hyper::header::HeaderValue;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Even a kept-alive connection ends after this, so none is held forever.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(600);
/// Enough for benchmarks with thousands of mailboxes; beyond it accepting waits.
const MAX_CONNECTIONS: usize = 4096;
/// Bounds request line plus headers.
const MAX_HEADER_BUFFER: usize = 64 * 1024;

const EXAMPLE: &str = "\
Example: try the troubleshooter against a simulated Exchange server
  EX_PASSWORD=secret exchange-sim --write-ca ca.pem \\
      --account svc@example.com --password-env EX_PASSWORD
  # prints: exchange-sim listening on https://127.0.0.1:PORT
  EX_PASSWORD=secret presence-gateway check --type ews --host localhost --port PORT \\
      --trust ca.pem --account svc@example.com --password-env EX_PASSWORD \\
      --mailbox user@example.com

Push subscriptions (EWS Subscribe with PushSubscriptionRequest):
  Accepted only under ExchangeImpersonation (ConnectingSID PrimarySmtpAddress or
  SmtpAddress) of a known mailbox, on that mailbox's calendar; without it the
  answer is ErrorMissingEmailAddress (a Mailbox in the folder id, i.e. delegate
  access: ErrorSubscriptionDelegateAccessNotSupported). StatusFrequency must be
  1-1440 and URL present (else ErrorSchemaValidation), URL plain http://
  (else ErrorInvalidPushSubscriptionUrl). When a mailbox's calendar changes
  (POST or DELETE /sim/calendars), its subscribers get a SendNotification POST
  (CreatedEvent, ModifiedEvent or DeletedEvent, or FreeBusyChangedEvent when
  only that was asked for); with no change for StatusFrequency minutes (see
  --minute-ms), a StatusEvent. A SendNotificationResult SubscriptionStatus OK
  keeps the subscription, Unsubscribe ends it; a delivery that fails (no
  answer within --push-timeout-ms, not 2xx, no SubscriptionStatus) is tried 3
  times, a twelfth of a minute apart, then the subscription is dropped.
  Pull subscriptions (PullSubscriptionRequest, Timeout 1-1440) are accepted
  alike but never fed (no GetEvents). Streaming ones are refused.
  Unsubscribe, as Exchange: NoError for a pull subscription of the
  impersonated mailbox; ErrorInvalidSubscription for a push subscription
  (answer a notification with Unsubscribe instead); ErrorSubscriptionNotFound
  for an unknown id; ErrorSubscriptionAccessDenied for another mailbox's.

Control endpoints (no authentication; parameters in the query string or an
application/x-www-form-urlencoded body):
  POST   /sim/calendars          mailbox,start,end,busy_type rows (as --calendar);
                                 each mailbox named gets exactly its rows
                                 (mailbox,,, empties it) and its push
                                 subscribers are notified. 200 \"N calendars changed\"
  DELETE /sim/calendars?mailbox=ADDRESS   empties one calendar, notifying
  POST   /sim/faults             kind=server-busy (ErrorServerBusy with MessageXml
                                 Value Name=\"BackOffMilliseconds\") | http-500 | http-503
                                 [count=N] [for_ms=D] (neither: the next request)
                                 [operation=GetUserAvailability (default)|NAME|any]
                                 [back_off_ms=B (default 30000)]
                                 [shape=fault (SOAP fault, default)|mailbox
                                 (ErrorServerBusy per GetUserAvailability mailbox)]
                                 200 JSON {\"fault\": {...}}; a new fault replaces the old
  DELETE /sim/faults             clears the fault
  GET    /sim/stats              JSON: operations (count per EWS operation),
                                 availability_requests (last 1000
                                 GetUserAvailability: at_unix_ms, mailboxes,
                                 fault), subscriptions (id, mailbox, kind, url,
                                 status_frequency, event_types, delivered),
                                 fault, now_unix_ms
  POST   /sim/status[?mailbox=ADDRESS]   status notifications now; {\"asked\": N}
  POST   /sim/subscriptions/drop?mailbox=ADDRESS (or ?id=ID, URL-encoded)   forgets
                                 subscriptions without telling their
                                 subscribers (a lost subscription); {\"dropped\": N}

Microsoft 365 (Microsoft Graph, same listener, per the Graph wire contract):
  M365_SECRET=s3cret exchange-sim --write-ca ca.pem --graph-secret-env M365_SECRET \\
      --graph-deliver-to http://127.0.0.1:8081 --calendar calendars.csv
  # a token (client credentials; the tenant id or the --graph-domain alias):
  curl --cacert ca.pem https://localhost:PORT/example.com/oauth2/v2.0/token \\
      -d client_id=3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57 -d client_secret=s3cret \\
      -d scope=https://graph.microsoft.com/.default -d grant_type=client_credentials
  # check a mailbox's free/busy with it (times are always UTC; say so with
  # Prefer: outlook.timezone=\"UTC\", which is echoed in Preference-Applied):
  curl --cacert ca.pem https://localhost:PORT/v1.0/users/user@example.com/calendar/getSchedule \\
      -H \"Authorization: Bearer TOKEN\" -H 'Prefer: outlook.timezone=\"UTC\"' \\
      -H 'Content-Type: application/json' -d '{\"schedules\":[\"user@example.com\"],
      \"startTime\":{\"dateTime\":\"2030-01-15T00:00:00\",\"timeZone\":\"UTC\"},
      \"endTime\":{\"dateTime\":\"2030-01-16T00:00:00\",\"timeZone\":\"UTC\"}}'
  The gateway's Microsoft 365 Notification URL stays public https (say
  https://pg.example.com/presence); subscriptions POST to <it>/graph/notify and
  <it>/graph/lifecycle, which --graph-deliver-to sends to the listener on
  http://127.0.0.1:8081 (path and query kept), as a reverse proxy would.
  Token errors: unknown tenant AADSTS90002 (400 invalid_request), unknown
  client id AADSTS700016 (400 unauthorized_client), wrong or no secret
  AADSTS7000215 (401 invalid_client); on demand expired secret AADSTS7000222
  and missing consent AADSTS65001. Graph calls need a live Bearer token (else
  401 InvalidAuthenticationToken). getSchedule: at most 20 schedules and under
  42 days (Microsoft's documented limits), UTC times only; an unknown mailbox
  is its schedule's ErrorMailRecipientNotFound; --graph-forbidden mailboxes
  403 ErrorAccessDenied. Subscriptions (users/{mailbox}/events, at most 4230
  minutes ahead) are validated (POST URL?validationToken=..., 200 text/plain
  echo within 10 s, else 400 ValidationError), renewed by PATCH (POST
  /v1.0/subscriptions/{id}/reauthorize answers 204), ended by DELETE, and
  notified with their clientState when the calendar changes.
  POST   /sim/graph/faults       kind=throttle mailbox=ADDRESS [status=429|503]
                                 [retry_after=N (default 10)|none]
                                 | kind=expired-secret | kind=consent-missing;
                                 [count=K] [for_ms=D] (neither: the next request)
  DELETE /sim/graph/faults       clears Graph faults
  POST   /sim/graph/lifecycle?mailbox=ADDRESS&event=subscriptionRemoved|missed|reauthorizationRequired
                                 (subscriptionRemoved also ends the subscriptions)
  POST   /sim/graph/notify?mailbox=ADDRESS[&client_state=TEXT]   a change
                                 notification now, with that clientState
  GET /sim/stats has a \"graph\" object: token_requests, get_schedule_requests,
  get_schedule_by_mailbox, max_concurrency (per path mailbox), throttled,
  subscriptions_active/created/renewed/deleted, notifications_sent/failed,
  lifecycle_sent, validations_ok/failed.

Stop it with Ctrl-C or SIGTERM (exit status 0).";

#[derive(Parser, Debug)]
#[command(
    name = "exchange-sim",
    version,
    about = "An Exchange stand-in: EWS (POST /EWS/Exchange.asmx: GetFolder, \
             GetUserAvailability over scripted calendars, GetServerTimeZones, \
             Subscribe with push notifications, Unsubscribe) and WebDAV (PROPFIND \
             /exchange/<mailbox>/<folder>/) over TLS, for tests and demos.",
    after_help = EXAMPLE
)]
struct Cli {
    /// Address and port to listen on; port 0 picks a free port, printed at start.
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:0")]
    listen: SocketAddr,

    /// A name for the generated server certificate (repeatable): a DNS name, or an
    /// IP address (an IP SAN); the first is the Subject CN and the Basic realm.
    #[arg(
        long = "name",
        value_name = "NAME",
        value_parser = clap::builder::NonEmptyStringValueParser::new(),
        default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()]
    )]
    names: Vec<String>,

    /// Serve this certificate chain (PEM, leaf first) instead of generating one.
    #[arg(long, value_name = "CHAIN.pem", requires = "key")]
    cert: Option<PathBuf>,

    /// The private key (PEM) of --cert.
    #[arg(long, value_name = "KEY.pem", requires = "cert")]
    key: Option<PathBuf>,

    /// Write the generated CA certificate here, for `presence-gateway check --trust`.
    #[arg(long, value_name = "FILE.pem", conflicts_with = "cert")]
    write_ca: Option<PathBuf>,

    /// The only account accepted (compared case-insensitively); without it any
    /// Basic credentials are accepted, though some must be sent.
    #[arg(long, value_name = "NAME", requires = "password_env")]
    account: Option<String>,

    /// The environment variable holding --account's password (never a flag, so it
    /// stays out of process listings).
    #[arg(long, value_name = "VAR", requires = "account")]
    password_env: Option<String>,

    /// How to answer authenticated requests.
    #[arg(long, value_enum, default_value_t = Behave::Ok)]
    behave: Behave,

    /// Wait N milliseconds before every response, so concurrency shows.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=600_000))]
    latency_ms: u64,

    /// The version reported in the ServerVersionInfo SOAP header
    /// (major.minor.build.revision).
    #[arg(long, value_name = "VERSION", default_value = "15.1.2507.6", value_parser = parse_version)]
    exchange_version: ExchangeVersion,

    /// The calendar folder's display name, as localized (e.g. Kalender); WebDAV
    /// paths must use it.
    #[arg(long, value_name = "NAME", default_value = "Calendar",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    calendar_folder: String,

    /// Refuse Basic authentication and stop offering it, as an Exchange whose
    /// EWS virtual directory allows Windows authentication only.
    #[arg(long, conflicts_with = "no_ntlm")]
    no_basic: bool,

    /// Refuse NTLM and offer Basic only.
    #[arg(long)]
    no_ntlm: bool,

    /// Require NTLM clients to bind their answer to this TLS connection
    /// (Extended Protection for Authentication, as recent Exchange builds do).
    #[arg(long, conflicts_with = "no_ntlm")]
    extended_protection: bool,

    /// Play Exchange behind a load balancer that terminates TLS: Exchange's
    /// channel is another TLS connection, so NTLM answers bound to the
    /// client's are refused.
    #[arg(long, requires = "extended_protection")]
    tls_offload: bool,

    /// How to answer an NTLM NEGOTIATE: with a challenge (normal), with a
    /// bare 401 that carries no challenge (missing), or with a token that is
    /// not an NTLM challenge (garbled), as broken proxies and servers do.
    #[arg(long, value_enum, value_name = "ANSWER", default_value_t = NtlmChallenge::Normal,
          conflicts_with = "no_ntlm")]
    ntlm_challenge: NtlmChallenge,

    /// Generate N mailboxes, user00000@example.com and on, each with
    /// scripted meetings yesterday, today and tomorrow (GetUserAvailability).
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    mailboxes: u64,

    /// Load calendars from a file of `mailbox,start,end,busy_type` rows (RFC
    /// 3339 times; Busy, Tentative, OOF, WorkingElsewhere, Free). While the
    /// simulator runs, POST such rows to /sim/calendars to change calendars.
    #[arg(long, value_name = "FILE")]
    calendar: Option<PathBuf>,

    /// How many real milliseconds the simulator counts as one minute, for push
    /// subscriptions' StatusFrequency (and the pause between delivery
    /// attempts, a twelfth of it), so tests need not wait minutes.
    #[arg(long, value_name = "N", default_value_t = 60_000,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    minute_ms: u64,

    /// Give up one push notification delivery attempt (connect, send, read the
    /// SendNotificationResult) after N milliseconds.
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(1..=600_000))]
    push_timeout_ms: u64,

    /// At most N live subscriptions (push and pull together); Subscribe beyond
    /// it answers ErrorExceededSubscriptionCount. Set it low to see that.
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_subscriptions: u64,

    /// Microsoft 365: the tenant id the token endpoint answers for
    /// (/{tenant}/oauth2/v2.0/token); --graph-domain is accepted alike.
    #[arg(long, value_name = "GUID", default_value = DEFAULT_TENANT)]
    graph_tenant: String,

    /// Microsoft 365: the tenant's verified domain, accepted in place of the
    /// tenant id.
    #[arg(long, value_name = "DOMAIN", default_value = "example.com")]
    graph_domain: String,

    /// Microsoft 365: the application (client) id the token endpoint knows.
    #[arg(long, value_name = "GUID", default_value = DEFAULT_CLIENT_ID)]
    graph_client_id: String,

    /// Microsoft 365: the environment variable holding the client secret;
    /// without it (or unset) every token request fails with AADSTS7000215.
    #[arg(long, value_name = "VAR")]
    graph_secret_env: Option<String>,

    /// Microsoft 365: grant subscriptions at most N minutes, however long
    /// they ask (Graph may grant less than asked); default: what they ask,
    /// within Graph's 4230-minute limit.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(i64).range(1..=4230))]
    graph_subscription_minutes: Option<i64>,

    /// Microsoft 365: the access tokens' lifetime (expires_in).
    #[arg(long, value_name = "N", default_value_t = 3599,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    graph_token_lifetime_secs: u64,

    /// Microsoft 365: a mailbox the application may not read (repeatable):
    /// getSchedule naming it (in the path or in schedules) and subscriptions
    /// on it get 403 ErrorAccessDenied, as RBAC for Applications scopes do.
    #[arg(long = "graph-forbidden", value_name = "MAILBOX")]
    graph_forbidden: Vec<String>,

    /// Microsoft 365: deliver validation requests and notifications to
    /// http://HOST:PORT, keeping each URL's path and query, as a reverse
    /// proxy in front of the receiver would (the sim speaks no TLS as a
    /// client). Without it only plain http:// URLs are reachable.
    #[arg(long, value_name = "http://HOST:PORT", value_parser = parse_deliver_to)]
    graph_deliver_to: Option<url::Url>,
}

const DEFAULT_TENANT: &str = "8f2c6a1e-4b7d-4e9a-9c3f-2d5e7a1b0c64";
const DEFAULT_CLIENT_ID: &str = "3b9d1f6a-7c2e-4a58-b1d4-6e0f9a2c8b57";

fn parse_deliver_to(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?}: {e}"))?;
    if url.scheme() != "http" || url.host_str().is_none() || url.path() != "/" {
        return Err(format!("{text:?}: expected http://HOST:PORT"));
    }
    Ok(url)
}

/// The answer to an NTLM NEGOTIATE (--ntlm-challenge).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum NtlmChallenge {
    Normal,
    Missing,
    Garbled,
}

/// The scripted answers to authenticated requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Behave {
    /// Answer GetFolder and PROPFIND with the calendar folder.
    Ok,
    /// 401 to everything, even good credentials.
    Unauthorized,
    /// 403, as for missing impersonation or Receive-As rights.
    Forbidden,
    /// 404, as for a wrong path or mailbox.
    NotFound,
    /// EWS: 500 SOAP fault ErrorImpersonateUserDenied (WebDAV: a plain 500).
    Fault,
    /// EWS without impersonation: ErrorNonExistentMailbox (the service account
    /// has no mailbox); with impersonation, as ok.
    NoMailbox,
    /// 503 Service Unavailable.
    ServerError,
}

impl Behave {
    pub fn name(self) -> &'static str {
        match self {
            Behave::Ok => "ok",
            Behave::Unauthorized => "unauthorized",
            Behave::Forbidden => "forbidden",
            Behave::NotFound => "not-found",
            Behave::Fault => "fault",
            Behave::NoMailbox => "no-mailbox",
            Behave::ServerError => "server-error",
        }
    }
}

#[derive(Clone, Debug)]
pub struct ExchangeVersion {
    pub major: u32,
    pub minor: u32,
    pub major_build: u32,
    pub minor_build: u32,
}

fn parse_version(text: &str) -> Result<ExchangeVersion, String> {
    let parts: Vec<u32> = text
        .split('.')
        .map(|p| p.parse::<u32>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{text:?} is not four numbers such as 15.1.2507.6"))?;
    match parts.as_slice() {
        &[major, minor, major_build, minor_build] => Ok(ExchangeVersion {
            major,
            minor,
            major_build,
            minor_build,
        }),
        _ => Err(format!("{text:?} is not four numbers such as 15.1.2507.6")),
    }
}

pub struct Credentials {
    pub account: String,
    pub password: String,
}

/// What every request needs to know, shared by all connections.
pub struct Sim {
    pub behave: Behave,
    pub latency: Duration,
    pub version: ExchangeVersion,
    pub calendar_folder: String,
    pub credentials: Option<Credentials>,
    pub basic_challenge: HeaderValue,
    pub basic: bool,
    pub ntlm: bool,
    pub extended_protection: bool,
    pub ntlm_challenge: NtlmChallenge,
    /// Every mailbox with its scripted calendar.
    pub calendars: calendars::Calendars,
    /// Push and pull subscriptions, and the tasks notifying subscribers.
    pub push: Arc<push::Push>,
    /// The fault injected by POST /sim/faults, if any.
    pub faults: control::Faults,
    /// What reached EWS, for GET /sim/stats.
    pub stats: control::Stats,
    /// The Microsoft 365 face: tokens, getSchedule, subscriptions.
    pub graph: Arc<graph::Graph>,
    /// The channel bindings of a TLS connection to this server (its leaf
    /// certificate's `tls-server-end-point`), which NTLM answers must carry
    /// when they carry any.
    pub channel_bindings: [u8; 16],
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // An unset password variable is a usage error (exit 2), like clap's own.
    let credentials = match (&cli.account, &cli.password_env) {
        (Some(account), Some(var)) => match std::env::var(var) {
            Ok(password) => Some(Credentials {
                account: account.clone(),
                password,
            }),
            Err(_) => {
                eprintln!(
                    "exchange-sim: --password-env {var}: the variable is not set (or not UTF-8)"
                );
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("exchange_sim=info")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("exchange-sim: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli, credentials)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exchange-sim: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, credentials: Option<Credentials>) -> Result<()> {
    let realm = cli.names.first().map(String::as_str).unwrap_or("localhost");
    let basic_challenge = HeaderValue::from_str(&format!("Basic realm=\"{realm}\""))
        .context("the first --name cannot appear in a header")?;

    let cert = match (&cli.cert, &cli.key) {
        (Some(cert), Some(key)) => certs::load(cert, key)?,
        _ => certs::generate(&cli.names)?,
    };
    // Both ways of getting a chain ensure it has a leaf. Behind a TLS
    // offloader Exchange sees the offloader's connection, not the client's.
    let channel_bindings = match cert.chain.first() {
        Some(leaf) if !cli.tls_offload => {
            presence_gateway::exchange::ntlm::channel_bindings_hash(leaf.as_ref())
        }
        _ => rand::random(),
    };
    if let (Some(path), Some(pem)) = (&cli.write_ca, &cert.ca_pem) {
        std::fs::write(path, pem)
            .with_context(|| format!("cannot write the CA to {}", path.display()))?;
    }
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .context("TLS configuration")?
    .with_no_client_auth()
    .with_single_cert(cert.chain, cert.key)
    .context("the certificate and key do not make a usable pair")?;
    // HTTP/1.1 only: IIS refuses NTLM over HTTP/2, and so clients must not use it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];

    // Installed before the listening line, so a SIGTERM right after it
    // still ends the process cleanly.
    let terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;

    let listener = TcpListener::bind(cli.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cli.listen))?;
    let local = listener.local_addr()?;
    let mailboxes = usize::try_from(cli.mailboxes).context("--mailboxes")?;
    let calendars = calendars::Calendars::generated(
        mailboxes,
        time::OffsetDateTime::now_utc().unix_timestamp(),
    );
    if let Some(path) = &cli.calendar {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        calendars
            .load(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    let sim = Arc::new(Sim {
        behave: cli.behave,
        latency: Duration::from_millis(cli.latency_ms),
        version: cli.exchange_version,
        calendar_folder: cli.calendar_folder,
        credentials,
        basic_challenge,
        basic: !cli.no_basic,
        ntlm: !cli.no_ntlm,
        extended_protection: cli.extended_protection,
        ntlm_challenge: cli.ntlm_challenge,
        calendars,
        push: Arc::new(push::Push::new(
            Duration::from_millis(cli.minute_ms),
            Duration::from_millis(cli.push_timeout_ms),
            usize::try_from(cli.max_subscriptions).context("--max-subscriptions")?,
        )),
        faults: control::Faults::default(),
        stats: control::Stats::default(),
        graph: Arc::new(graph::Graph::new(graph::Config {
            tenant: cli.graph_tenant,
            domain: cli.graph_domain,
            client_id: cli.graph_client_id,
            secret: cli
                .graph_secret_env
                .as_deref()
                .and_then(|var| std::env::var(var).ok()),
            token_lifetime: Duration::from_secs(cli.graph_token_lifetime_secs),
            subscription_minutes: cli.graph_subscription_minutes,
            forbidden: cli
                .graph_forbidden
                .iter()
                .map(|m| m.to_ascii_lowercase())
                .collect(),
            deliver_to: cli.graph_deliver_to,
            latency: Duration::from_millis(cli.latency_ms),
            push_timeout: Duration::from_millis(cli.push_timeout_ms),
            retry_pause: Duration::from_millis(cli.minute_ms) / 12,
        })),
        channel_bindings,
    });

    // The one line on stdout: tests and scripts parse it.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "exchange-sim listening on https://{local}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(behave = sim.behave.name(), "serving");

    tokio::select! {
        () = accept_loop(listener, TlsAcceptor::from(Arc::new(config)), sim) => {}
        () = shutdown_signal(terminate, interrupt) => tracing::info!("stopping"),
    }
    Ok(())
}

/// Accepts until shutdown; each connection gets its own task, bounded in
/// number by MAX_CONNECTIONS and in time by the timeouts above.
async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, sim: Arc<Sim>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let sim = sim.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            // NTLM authenticates a connection: the challenge sent on it is
            // the one its AUTHENTICATE message must answer.
            let ntlm = service::NtlmState::default();
            let service = service_fn(move |request| {
                let sim = sim.clone();
                let ntlm = ntlm.clone();
                async move {
                    let method = request.method().clone();
                    let path = request.uri().path().to_owned();
                    let response = service::handle(request, &sim, &ntlm).await;
                    tracing::info!(%peer, %method, path = %path, status = response.status().as_u16());
                    Ok::<_, Infallible>(response)
                }
            });
            let mut builder = http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BUFFER);
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended"),
                Err(_) => tracing::debug!(%peer, "connection closed after its lifetime"),
            }
        });
    }
}

/// Waits for SIGTERM or SIGINT (Ctrl-C) on handlers installed beforehand.
async fn shutdown_signal(mut terminate: Signal, mut interrupt: Signal) {
    tokio::select! {
        _ = terminate.recv() => {},
        _ = interrupt.recv() => {},
    }
}
