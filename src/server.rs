//! `serve`: binds the listener (HTTP on loopback, HTTPS elsewhere), runs the
//! background chores and shuts down gracefully on SIGTERM or Ctrl-C.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::clock::{SharedClock, SystemClock};
use crate::config::Settings;
use crate::error::{AppError, AppResult};
use crate::startup::{self, FIRST_ADMIN, FirstAdmin};
use crate::state::AppState;

const HEARTBEAT: Duration = Duration::from_secs(10);
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn run(settings: Settings) -> AppResult<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    let https_cert = if settings.serves_https() {
        Some(crate::tls::console::load(
            &settings.data_dir,
            settings.tls_cert.as_deref(),
            settings.tls_key.as_deref(),
            &settings.node_name,
            settings.listen.ip(),
        )?)
    } else {
        None
    };
    let prepared = startup::prepare(settings, clock).await?;
    let state = prepared.state;
    let shutdown = shutdown_signal()?;
    announce_admin(&state, &prepared.first_admin);

    let listener = TcpListener::bind(state.settings.listen)
        .await
        .map_err(|e| {
            AppError::Config(format!("cannot listen on {}: {e}", state.settings.listen))
        })?;
    let local = listener.local_addr()?;
    let mut chores = spawn_chores(&state);
    chores.push(crate::engine::spawn(state.clone()));
    let app = crate::app(state.clone());
    let result = match https_cert {
        Some(cert) => {
            if let Some(path) = &cert.generated {
                println!(
                    "Generated a self-signed console certificate: {} \
                     (use --tls-cert and --tls-key for your own)",
                    path.display()
                );
            }
            println!(
                "presence-gateway listening on https://{local} (node {}, data directory {})",
                state.settings.node_name,
                state.settings.data_dir.display()
            );
            let listener = TlsListener::new(listener, TlsAcceptor::from(cert.config));
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            println!(
                "presence-gateway listening on http://{local} (node {}, data directory {})",
                state.settings.node_name,
                state.settings.data_dir.display()
            );
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    for chore in chores {
        chore.abort();
    }
    // The engine goes with the process; say so rather than leave it
    // "running" in the store. Whether it should run is kept for the next start.
    if let Err(e) = crate::store::engine::set_state(
        &state.pool,
        &state.settings.node_name,
        crate::store::engine::EngineState::Stopped,
        Some("the service stopped"),
        state.now(),
    )
    .await
    {
        tracing::warn!(error = %e, "cannot record the engine's stop");
    }
    state.pool.close().await;
    tracing::info!("stopped");
    Ok(result?)
}

fn announce_admin(state: &AppState, first_admin: &FirstAdmin) {
    match first_admin {
        FirstAdmin::Existing => {}
        FirstAdmin::FromEnvironment => println!(
            "Created the administrator {FIRST_ADMIN:?} with the password from {}.",
            crate::config::ADMIN_PASSWORD_ENV
        ),
        FirstAdmin::Generated(password) => println!(
            "Created the administrator {FIRST_ADMIN:?} with the password {} \
             (also written to {}); change it at first sign-in.",
            password.expose_secret(),
            state
                .settings
                .data_dir
                .join(crate::secrets::INITIAL_ADMIN_PASSWORD_FILE)
                .display()
        ),
    }
}

/// The node's heartbeat and the sweep of expired sessions.
fn spawn_chores(state: &AppState) -> Vec<JoinHandle<()>> {
    let heartbeat = {
        let state = state.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            loop {
                tick.tick().await;
                let now = state.now();
                if let Err(e) =
                    crate::store::nodes::heartbeat(&state.pool, &state.settings.node_name, now)
                        .await
                {
                    tracing::warn!(error = %e, "node heartbeat failed");
                }
            }
        })
    };
    let sweep = {
        let store = startup::session_store(&state.pool);
        tokio::spawn(async move {
            use tower_sessions::session_store::ExpiredDeletion;
            if let Err(e) = store
                .continuously_delete_expired(Duration::from_secs(300))
                .await
            {
                tracing::warn!(error = %e, "expired-session sweep stopped");
            }
        })
    };
    vec![heartbeat, sweep]
}

/// Listens for SIGTERM and Ctrl-C from now on: the handlers are installed
/// before the service announces it listens, so a signal sent right after
/// the announcement stops it gracefully instead of killing it.
pub fn shutdown_signal() -> AppResult<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())
        .map_err(|e| AppError::Config(format!("cannot listen for SIGTERM: {e}")))?;
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|e| AppError::Config(format!("cannot listen for Ctrl-C: {e}")))?;
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down");
    })
}

/// A listener that hands axum finished TLS connections. Handshakes run in
/// their own tasks, so a slow or silent client never holds up the others.
struct TlsListener {
    incoming: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    acceptor_task: JoinHandle<()>,
}

impl TlsListener {
    fn new(listener: TcpListener, acceptor: TlsAcceptor) -> Self {
        let local = listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let (tx, incoming) = mpsc::channel(64);
        let acceptor_task = tokio::spawn(async move {
            loop {
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
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        TlsListener {
            incoming,
            local,
            acceptor_task,
        }
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor_task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.incoming.recv().await {
            Some(conn) => conn,
            // The acceptor task only ends when aborted at shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}
