//! `presence-gateway check` (TS-9): the seven checks against one host from
//! the shell, without a running service; for Microsoft 365 (GR-7) against
//! the cloud's sign-in host, then a token and the Test Mailbox's schedule.
//! Usage errors exit 2, a run with a failing check exits 1, a clean run 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use secrecy::SecretString;

use crate::cli::{AuthArg, CheckArgs, CloudArg, KindArg};
use crate::domain::gateway::{
    AccountName, BaseUrl, ClientId, GatewayKind, Mailbox, ServerLocation, Tenant, UrlField,
};
use crate::exchange::graph::Cloud;
use crate::troubleshoot::graph::GraphTarget;
use crate::troubleshoot::{self, AuthMode, Credentials, Report, Target};

/// Exit statuses of `check`.
pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// A usage error: the message `check` prints before exiting 2.
#[derive(Debug)]
pub struct Usage(pub String);

/// Reads certificates from a PEM file (one or many) or a DER file.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() > 1024 * 1024 {
        return Err(format!("{} is larger than 1 MiB", path.display()));
    }
    let looks_pem = bytes.windows(11).any(|w| w == b"-----BEGIN ");
    if looks_pem {
        let certs: Vec<CertificateDer<'static>> = rustls_pemfile::certs(&mut bytes.as_slice())
            .collect::<Result<_, _>>()
            .map_err(|e| format!("{} is not readable PEM: {e}", path.display()))?;
        if certs.is_empty() {
            return Err(format!("{} holds no CERTIFICATE block", path.display()));
        }
        Ok(certs)
    } else if crate::tls::certinfo::parse(&bytes).is_ok() {
        Ok(vec![CertificateDer::from(bytes)])
    } else {
        Err(format!(
            "{} is neither PEM certificates nor a DER certificate",
            path.display()
        ))
    }
}

/// What to check: an Exchange server, or a Microsoft 365 tenant.
pub enum Plan {
    Exchange(Target),
    Graph(GraphTarget),
}

impl Plan {
    fn set_trust(&mut self, certs: Vec<CertificateDer<'static>>) {
        match self {
            Plan::Exchange(t) => t.trust = certs,
            Plan::Graph(t) => t.trust = certs,
        }
    }

    async fn run(&self) -> Report {
        match self {
            Plan::Exchange(t) => troubleshoot::run(t).await,
            Plan::Graph(t) => troubleshoot::graph::run(t).await,
        }
    }
}

/// Turns the command line into what to check, by `--type`.
pub fn plan(args: &CheckArgs, env: impl Fn(&str) -> Option<String>) -> Result<Plan, Usage> {
    match args.kind {
        KindArg::Graph => graph_target(args, env).map(Plan::Graph),
        KindArg::Ews | KindArg::Webdav => target(args, env).map(Plan::Exchange),
    }
}

/// The options of one family given with `--type` of the other: refused
/// rather than ignored, so nobody believes they were used.
fn refuse_foreign(args: &CheckArgs) -> Result<(), Usage> {
    let (type_name, foreign): (&str, Vec<(&str, bool)>) = match args.kind {
        KindArg::Graph => (
            "graph",
            vec![
                ("--host", args.host.is_some()),
                ("--port", args.port.is_some()),
                ("--connect", args.connect.is_some()),
                ("--no-dns", args.no_dns),
                ("--account", args.account.is_some()),
                ("--password-env", args.password_env.is_some()),
                ("--calendar-folder", args.calendar_folder.is_some()),
                ("--auth", args.auth.is_some()),
            ],
        ),
        KindArg::Ews | KindArg::Webdav => (
            if args.kind == KindArg::Ews {
                "ews"
            } else {
                "webdav"
            },
            vec![
                ("--tenant", args.tenant.is_some()),
                ("--client-id", args.client_id.is_some()),
                ("--secret-env", args.secret_env.is_some()),
                ("--cloud", args.cloud.is_some()),
                ("--signin-url", args.signin_url.is_some()),
                ("--graph-url", args.graph_url.is_some()),
            ],
        ),
    };
    match foreign.iter().find(|(_, given)| *given) {
        Some((option, _)) => Err(Usage(format!(
            "{option} is not taken with --type {type_name}"
        ))),
        None => Ok(()),
    }
}

/// Turns a `--type graph` command line into a `GraphTarget`, refusing what
/// TS-9 calls usage errors; the parsers are the console's, so the shell
/// accepts what the gateway form accepts.
pub fn graph_target(
    args: &CheckArgs,
    env: impl Fn(&str) -> Option<String>,
) -> Result<GraphTarget, Usage> {
    refuse_foreign(args)?;
    let tenant = args
        .tenant
        .as_deref()
        .ok_or_else(|| Usage("--type graph needs --tenant TENANT".to_owned()))?;
    let tenant = Tenant::parse(tenant).map_err(|e| Usage(format!("--tenant: {e}")))?;
    let client_id = args
        .client_id
        .as_deref()
        .ok_or_else(|| Usage("--type graph needs --client-id GUID".to_owned()))?;
    let client_id = ClientId::parse(client_id).map_err(|e| Usage(format!("--client-id: {e}")))?;
    // clap ties the two URLs together and keeps --cloud apart from them;
    // this match is the same rule for whoever builds CheckArgs otherwise.
    let cloud = match (&args.signin_url, &args.graph_url, args.cloud) {
        (Some(signin), Some(graph), None) => {
            let signin = BaseUrl::parse(signin, UrlField::SignIn)
                .map_err(|e| Usage(format!("--signin-url: {e}")))?;
            let graph = BaseUrl::parse(graph, UrlField::Graph)
                .map_err(|e| Usage(format!("--graph-url: {e}")))?;
            Cloud::custom(signin.as_str(), graph.as_str())
        }
        (None, None, cloud) => match cloud.unwrap_or(CloudArg::Global) {
            CloudArg::Global => Cloud::Global,
            CloudArg::Usgov => Cloud::UsGovHigh,
            CloudArg::Usgovdod => Cloud::UsGovDod,
            CloudArg::China => Cloud::China,
        },
        (Some(_), Some(_), Some(_)) => {
            return Err(Usage(
                "--cloud cannot be used with --signin-url and --graph-url".to_owned(),
            ));
        }
        _ => {
            return Err(Usage(
                "--signin-url and --graph-url go together (the Custom cloud)".to_owned(),
            ));
        }
    };
    let secret = match &args.secret_env {
        Some(var) => Some(SecretString::from(env(var).ok_or_else(|| {
            Usage(format!(
                "--secret-env {var}: the environment variable {var} is not set"
            ))
        })?)),
        None => None,
    };
    let mailbox = match &args.mailbox {
        Some(m) => Some(
            Mailbox::parse_optional(GatewayKind::Graph, m)
                .map_err(|e| Usage(format!("--mailbox: {e}")))?
                .ok_or_else(|| Usage("--mailbox: empty".to_owned()))?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    check_timeout(args)?;
    Ok(GraphTarget {
        cloud,
        tenant: tenant.as_str().to_owned(),
        client_id: client_id.as_str().to_owned(),
        secret,
        mailbox,
        trust: read_trust(args)?,
        timeout: Duration::from_secs(args.timeout),
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        // From the shell, the environment's HTTPS_PROXY and NO_PROXY, as
        // curl and the service's default use them.
        proxy: crate::domain::proxy::ProxyEnv::from_env().proxy(),
    })
}

fn check_timeout(args: &CheckArgs) -> Result<(), Usage> {
    if !(1..=60).contains(&args.timeout) {
        return Err(Usage("--timeout must be from 1 to 60 seconds".to_owned()));
    }
    Ok(())
}

fn read_trust(args: &CheckArgs) -> Result<Vec<CertificateDer<'static>>, Usage> {
    let mut trust = Vec::new();
    for path in &args.trust {
        trust.extend(read_certificates(path).map_err(|e| Usage(format!("--trust: {e}")))?);
    }
    Ok(trust)
}

/// Turns an ews or webdav command line into a `Target`, refusing what TS-9
/// calls usage errors.
pub fn target(args: &CheckArgs, env: impl Fn(&str) -> Option<String>) -> Result<Target, Usage> {
    let kind = match args.kind {
        KindArg::Ews => GatewayKind::Ews,
        KindArg::Webdav => GatewayKind::WebDav,
        KindArg::Graph => {
            return Err(Usage(
                "--type graph is checked by its own options (--tenant, --client-id)".to_owned(),
            ));
        }
    };
    refuse_foreign(args)?;
    let host = args.host.as_deref().ok_or_else(|| {
        Usage(format!(
            "--type {} needs --host HOST (the server location)",
            if kind == GatewayKind::Ews {
                "ews"
            } else {
                "webdav"
            }
        ))
    })?;
    let host = ServerLocation::parse(host).map_err(|e| Usage(format!("--host: {e}")))?;
    let port = args.port.unwrap_or(443);
    if args.no_dns && !host.is_ip() && args.connect.is_none() {
        return Err(Usage(format!(
            "--no-dns with the host name {host} needs --connect ADDRESS (or give an IP address \
             as --host)"
        )));
    }
    if port == 0 {
        return Err(Usage("--port must be from 1 to 65535".to_owned()));
    }
    check_timeout(args)?;
    let credentials = match (&args.account, &args.password_env) {
        (Some(account), Some(var)) => {
            let account =
                AccountName::parse(kind, account).map_err(|e| Usage(format!("--account: {e}")))?;
            let password = env(var).ok_or_else(|| {
                Usage(format!(
                    "--password-env {var}: the environment variable {var} is not set"
                ))
            })?;
            Some(Credentials {
                account: account.as_str().to_owned(),
                password: SecretString::from(password),
            })
        }
        (None, Some(_)) => {
            return Err(Usage("--password-env needs --account".to_owned()));
        }
        (Some(_), None) => {
            return Err(Usage(
                "--account needs --password-env VAR (the variable holding the password)".to_owned(),
            ));
        }
        (None, None) => None,
    };
    let mailbox = match &args.mailbox {
        Some(m) => Some(
            Mailbox::parse_optional(kind, m)
                .map_err(|e| Usage(format!("--mailbox: {e}")))?
                .ok_or_else(|| Usage("--mailbox: empty".to_owned()))?
                .as_str()
                .to_owned(),
        ),
        None => None,
    };
    let trust = read_trust(args)?;
    Ok(Target {
        kind,
        host,
        port,
        connect: args.connect,
        dns_configured: !args.no_dns,
        trust,
        credentials,
        mailbox,
        calendar_folder: args
            .calendar_folder
            .clone()
            .unwrap_or_else(|| troubleshoot::DEFAULT_CALENDAR_FOLDER.to_owned()),
        auth: match args.auth.unwrap_or(AuthArg::Auto) {
            AuthArg::Auto => AuthMode::Auto,
            AuthArg::Basic => AuthMode::Basic,
        },
        timeout: Duration::from_secs(args.timeout),
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        // `check` reaches on-premises Exchange, which no proxy fronts.
        proxy: None,
    })
}

/// Runs `check` and returns its exit status.
pub async fn run(data_dir: &Path, args: &CheckArgs) -> u8 {
    let mut plan = match plan(args, |var| std::env::var(var).ok()) {
        Ok(p) => p,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
    };
    if args.trust.is_empty() {
        match data_dir_trust(data_dir).await {
            Ok(certs) => plan.set_trust(certs),
            Err(message) => {
                eprintln!("error: {message}");
                return EXIT_USAGE;
            }
        }
    }
    let report = plan.run().await;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.ok { EXIT_OK } else { EXIT_FAILED }
}

/// Without --trust, the data directory's trust store when there is one
/// (TS-7 builds it; until then there are no stored anchors).
async fn data_dir_trust(data_dir: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let db: PathBuf = crate::config::database_path(data_dir);
    if !db.exists() {
        return Ok(Vec::new());
    }
    crate::store::trust::read_only_anchors(&db)
        .await
        .map_err(|e| format!("cannot read the trust store in {}: {e}", db.display()))
}
