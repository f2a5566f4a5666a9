//! `presence-gateway check` (TS-9): the seven checks against one host from
//! the shell, without a running service. Usage errors exit 2, a run with a
//! failing check exits 1, a clean run 0.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use secrecy::SecretString;

use crate::cli::{AuthArg, CheckArgs, KindArg};
use crate::domain::gateway::{AccountName, GatewayKind, Mailbox, ServerLocation};
use crate::troubleshoot::{self, AuthMode, Credentials, Target};

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

/// Turns the command line into a `Target`, refusing what TS-9 calls usage
/// errors.
pub fn target(args: &CheckArgs, env: impl Fn(&str) -> Option<String>) -> Result<Target, Usage> {
    let kind = match args.kind {
        KindArg::Ews => GatewayKind::Ews,
        KindArg::Webdav => GatewayKind::WebDav,
    };
    let host = ServerLocation::parse(&args.host).map_err(|e| Usage(format!("--host: {e}")))?;
    if args.no_dns && !host.is_ip() && args.connect.is_none() {
        return Err(Usage(format!(
            "--no-dns with the host name {host} needs --connect ADDRESS (or give an IP address \
             as --host)"
        )));
    }
    if args.port == 0 {
        return Err(Usage("--port must be from 1 to 65535".to_owned()));
    }
    if !(1..=60).contains(&args.timeout) {
        return Err(Usage("--timeout must be from 1 to 60 seconds".to_owned()));
    }
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
    let mut trust = Vec::new();
    for path in &args.trust {
        trust.extend(read_certificates(path).map_err(|e| Usage(format!("--trust: {e}")))?);
    }
    Ok(Target {
        kind,
        host,
        port: args.port,
        connect: args.connect,
        dns_configured: !args.no_dns,
        trust,
        credentials,
        mailbox,
        calendar_folder: args
            .calendar_folder
            .clone()
            .unwrap_or_else(|| troubleshoot::DEFAULT_CALENDAR_FOLDER.to_owned()),
        auth: match args.auth {
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
    let mut target = match target(args, |var| std::env::var(var).ok()) {
        Ok(t) => t,
        Err(Usage(message)) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
    };
    if args.trust.is_empty() {
        match data_dir_trust(data_dir).await {
            Ok(certs) => target.trust = certs,
            Err(message) => {
                eprintln!("error: {message}");
                return EXIT_USAGE;
            }
        }
    }
    let report = troubleshoot::run(&target).await;
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
