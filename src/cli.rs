//! The command line: `serve` (the default) and the administration commands.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "presence-gateway",
    version,
    about = "Puts Microsoft Exchange calendars into presence; serves the administration console",
    long_about = None
)]
pub struct Cli {
    /// Directory holding the database, the secrets key and generated certificates.
    /// Back the database and the key up together.
    #[arg(
        long,
        global = true,
        env = "PRESENCE_GATEWAY_DATA_DIR",
        default_value = "./data"
    )]
    pub data_dir: PathBuf,

    /// The shared database of a cluster across hosts (CL-1):
    /// postgres://user[:password]@host[:port]/database (PostgreSQL 14 or
    /// later). Without it, the SQLite file in the data directory. Each node
    /// still keeps its secrets key in its data directory.
    #[arg(
        long,
        global = true,
        env = "PRESENCE_GATEWAY_DATABASE_URL",
        hide_env_values = true
    )]
    pub database: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the console and run this node's presence engine (the default).
    Serve(ServeArgs),
    /// Administrator account maintenance from the shell.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Run the seven troubleshooter checks (dns, tcp, tls, chain, validity,
    /// name, auth) against an Exchange server (--type ews|webdav --host) or
    /// Microsoft 365 (--type graph --tenant --client-id), without a running
    /// service. Exit status: 0 when no check failed, 1 when one did, 2 on
    /// usage errors.
    Check(CheckArgs),
    /// Show, start, stop or restart a node's Presence Engine through the
    /// store; the running service's node acts within a second. Exit status:
    /// 0 done, 1 refused, failed or not acted on, 2 on usage errors.
    Engine(EngineArgs),
    /// Bulk import and export of end users as CSV (US-4), on the data
    /// directory's database, with or without a running service.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Database maintenance (CL-2).
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Copy a single-host installation's SQLite database into an empty
    /// PostgreSQL database, in one transaction, and print the rows copied
    /// per table. Stop the service first. Exit status: 0 copied, 1 the
    /// target already holds data or the copy failed (nothing written), 2
    /// usage errors.
    Copy {
        /// The SQLite database: sqlite:PATH (data/presence-gateway.db).
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres://user[:password]@host[:port]/database.
        #[arg(long)]
        to: String,
    },
}

#[derive(Debug, Clone, Args)]
pub struct EngineArgs {
    #[arg(value_enum)]
    pub verb: EngineVerb,
    /// The node (default: the only node, or this host's name).
    #[arg(long)]
    pub node: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineVerb {
    Status,
    Start,
    Stop,
    Restart,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Import end users from a CSV file (header
    /// user_id,first_name,last_name,mailbox,node,locale,calendar). Prints a
    /// report per row; writes nothing if any row is bad. Exit status: 0
    /// applied (or a clean dry run), 1 rows in error, 2 usage errors.
    Import {
        /// The CSV file, at most 16 MiB.
        file: PathBuf,
        /// Check and report only; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Export every end user as CSV, in the import format, sorted by user ID.
    Export {
        /// Write to this file instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Exchange - EWS Server (Exchange 2007/2010 and later).
    Ews,
    /// Exchange - WebDAV (Exchange 2003/2007).
    Webdav,
    /// Microsoft 365 - Graph (Exchange Online): --tenant, --client-id,
    /// --secret-env, and --cloud or --signin-url with --graph-url.
    Graph,
}

/// The Microsoft clouds `--cloud` names; Custom is `--signin-url` with
/// `--graph-url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CloudArg {
    /// Global (login.microsoftonline.com, graph.microsoft.com).
    Global,
    /// US Government GCC High.
    Usgov,
    /// US Government DoD.
    Usgovdod,
    /// China (operated by 21Vianet).
    China,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthArg {
    /// NTLMv2 (bound to the TLS connection) when the server offers NTLM, else Basic.
    Auto,
    /// Basic only.
    Basic,
}

#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// The Presence Gateway type.
    #[arg(long = "type", value_enum)]
    pub kind: KindArg,
    /// ews, webdav: the server location as it would be entered as Presence
    /// Gateway, an FQDN or an IP address. Names in the certificate are checked
    /// against it. Required for ews and webdav; not taken by graph, whose
    /// hosts come from the cloud.
    #[arg(long)]
    pub host: Option<String>,
    /// ews, webdav: the port [default: 443].
    #[arg(long)]
    pub port: Option<u16>,
    /// Dial this IP address instead of resolving HOST (one server behind a
    /// load balancer); names are still checked against HOST.
    #[arg(long)]
    pub connect: Option<std::net::IpAddr>,
    /// Trusted certificates (PEM, one or many, or DER); may repeat. Without it
    /// the data directory's trust store is read, when there is one.
    #[arg(long)]
    pub trust: Vec<PathBuf>,
    /// DNS is not configured on this server: HOST must be an IP address
    /// (or give --connect), and the certificate must name that address.
    #[arg(long)]
    pub no_dns: bool,
    /// The Exchange account (EWS: user@domain or domain\user; WebDAV:
    /// domain\user or user). Needs --password-env.
    #[arg(long, requires = "password_env")]
    pub account: Option<String>,
    /// The environment variable holding the account's password (never on the
    /// command line, where other users could read it).
    #[arg(long, requires = "account")]
    pub password_env: Option<String>,
    /// A mailbox to impersonate (EWS), open (WebDAV) or read the schedule of
    /// (graph, the Test Mailbox), proving the rights.
    #[arg(long)]
    pub mailbox: Option<String>,
    /// The calendar folder's (localized) name, for WebDAV.
    #[arg(long)]
    pub calendar_folder: Option<String>,
    /// ews, webdav: how to sign in [default: auto].
    #[arg(long, value_enum)]
    pub auth: Option<AuthArg>,
    /// graph: the Tenant, its directory (tenant) ID or a verified domain such
    /// as contoso.onmicrosoft.com.
    #[arg(long)]
    pub tenant: Option<String>,
    /// graph: the app registration's Application (client) ID, a GUID.
    #[arg(long)]
    pub client_id: Option<String>,
    /// graph: the environment variable holding the client secret's Value
    /// (never on the command line). Without it auth is skipped.
    #[arg(long)]
    pub secret_env: Option<String>,
    /// graph: the Microsoft cloud the tenant lives in [default: global].
    #[arg(long, value_enum, conflicts_with = "signin_url")]
    pub cloud: Option<CloudArg>,
    /// graph: the Custom cloud's Sign-in URL (https; with --graph-url), such
    /// as exchange-sim's https://localhost:PORT.
    #[arg(long, requires = "graph_url")]
    pub signin_url: Option<String>,
    /// graph: the Custom cloud's Graph URL (https; with --signin-url).
    #[arg(long, requires = "signin_url")]
    pub graph_url: Option<String>,
    /// Seconds each network step may take (the Exchange Timeout); the whole
    /// run is bounded by four of them.
    #[arg(long, default_value_t = 3)]
    pub timeout: u64,
    /// Print one JSON object instead of the text report.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on. Plain HTTP is served only on a loopback address;
    /// on any other address the console serves HTTPS.
    #[arg(
        long,
        env = "PRESENCE_GATEWAY_LISTEN",
        default_value = "127.0.0.1:8080"
    )]
    pub listen: SocketAddr,

    /// This node's name in the cluster (default: the host name).
    #[arg(long, env = "PRESENCE_GATEWAY_NODE_NAME")]
    pub node_name: Option<String>,

    /// PEM certificate chain for HTTPS (with --tls-key).
    #[arg(long, env = "PRESENCE_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key for HTTPS (with --tls-cert).
    #[arg(long, env = "PRESENCE_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Reset a user's password and end all of that user's sessions. Without
    /// --stdin a password is generated, printed once, and must be changed at
    /// the next sign-in. Also lifts a sign-in lockout on that user ID.
    SetPassword {
        /// The user ID whose password to reset.
        user: String,
        /// Read the new password from the first line of standard input.
        #[arg(long)]
        stdin: bool,
    },
}
