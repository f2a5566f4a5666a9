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
