//! `serve`: prepares the data directory, the database, the secrets key,
//! this node and the first administrator (every start, SY-1; the tests
//! build the same state with `prepare`), then binds the listener (HTTP on
//! loopback, HTTPS elsewhere), runs the background chores and shuts down
//! gracefully on SIGTERM or Ctrl-C.

use crate::clock::{SharedClock, SystemClock};
use crate::config::{ADMIN_PASSWORD_ENV, Settings};
use crate::domain::user::{NewPassword, Role, UserId};
use crate::error::{AppError, AppResult};
use crate::secrets::cipher::Cipher;
use crate::secrets::{self, INITIAL_ADMIN_PASSWORD_FILE};
use crate::state::AppState;
use crate::store;
use secrecy::{ExposeSecret, SecretString};
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

pub use crate::domain::user::FIRST_ADMIN;

/// What the first start did about the administrator, for the start-up message.
#[derive(Debug)]
pub enum FirstAdmin {
    /// An administrator already existed.
    Existing,
    /// Created with the password from the environment.
    FromEnvironment,
    /// Created with a generated password, to be changed at first sign-in.
    Generated(SecretString),
}

pub struct Prepared {
    pub state: AppState,
    pub first_admin: FirstAdmin,
}

pub async fn prepare(settings: Settings, clock: SharedClock) -> AppResult<Prepared> {
    // Before the engine records anything.
    crate::telemetry::install();
    secrets::ensure_data_dir(&settings.data_dir)?;
    let pool = store::open_at(&settings.database).await?;
    let shared = matches!(settings.database, store::Location::Postgres(_));
    let cipher = open_secrets(&pool, &settings.data_dir, shared).await?;
    store::session_store(&pool).migrate().await?;
    let now = clock.unix();
    store::nodes::register(
        &pool,
        &settings.node_name,
        &settings.listen.to_string(),
        now,
    )
    .await?;
    let first_admin = ensure_admin(&pool, &settings, now).await?;
    let changes = store::notify::Hub::new(&settings.node_name, &settings.database);
    if let store::Location::Postgres(url) = &settings.database {
        tokio::spawn(store::notify::listen(url.clone(), changes.clone()));
    }
    Ok(Prepared {
        state: AppState {
            pool,
            settings: Arc::new(settings),
            clock,
            cipher,
            banner: Default::default(),
            gateways: Default::default(),
            gateway_rows_html: Default::default(),
            engine_wake: crate::engine::Wake::with(changes.engine_commands.clone()),
            changes,
            streams: Default::default(),
            feed: Default::default(),
            listener_limits: crate::net::Limits::notifications(),
            imports: Default::default(),
        },
        first_admin,
    })
}

/// SY-4: the key that encrypts the Exchange passwords must be the one they
/// were encrypted under. With secrets stored and the key missing or
/// different, refuse to start rather than make a new key and lose them.
async fn open_secrets(
    pool: &AnyPool,
    data_dir: &std::path::Path,
    shared: bool,
) -> AppResult<Cipher> {
    let stored = store::secrets::count_encrypted(pool).await?;
    // On a shared database (CL-1) the other nodes hold the right key.
    let remedy = |path: &std::path::Path| {
        if shared {
            format!(
                "copy secrets.key from the data directory of another node of this cluster to {}",
                path.display()
            )
        } else {
            "restore the key file that was backed up with this database".to_owned()
        }
    };
    let check = store::secrets::key_check(pool).await?;
    let path = secrets::key_path(data_dir);
    let cipher = match secrets::load_key(data_dir)? {
        Some(key) => Cipher::new(&key)?,
        None if stored > 0 => {
            return Err(AppError::Config(format!(
                "the database holds {stored} encrypted Exchange credential set(s) but the \
                 secrets key {} is missing: {} (the database and the key belong together)",
                path.display(),
                remedy(&path)
            )));
        }
        // Another node already keys the shared database: a new key here
        // would seal what the others cannot open.
        None if shared && check.is_some() => {
            return Err(AppError::Config(format!(
                "the secrets key {} is missing and this cluster's database is keyed by another \
                 node: {}",
                path.display(),
                remedy(&path)
            )));
        }
        None => Cipher::new(&secrets::create_key(data_dir)?)?,
    };
    match check {
        Some(check) if cipher.matches_check(&check) => {}
        // On a shared database the recorded key is the other nodes', in use
        // whether or not secrets are stored yet.
        Some(_) if shared || stored > 0 => {
            return Err(AppError::Config(format!(
                "the secrets key {} is not the key this database's {stored} encrypted Exchange \
                 credential set(s) were encrypted with: {}",
                path.display(),
                remedy(&path)
            )));
        }
        // No secrets depend on the old key (or none was recorded): adopt this one.
        _ => store::secrets::set_key_check(pool, &cipher.key_check()?).await?,
    }
    Ok(cipher)
}

async fn ensure_admin(pool: &AnyPool, settings: &Settings, now: i64) -> AppResult<FirstAdmin> {
    if store::users::count_admins(pool).await? > 0 {
        return Ok(FirstAdmin::Existing);
    }
    let user_id = UserId::parse(FIRST_ADMIN).map_err(AppError::Config)?;
    let (password, first_admin, must_change) = match &settings.admin_password {
        Some(given) => {
            let given = given.expose_secret();
            NewPassword::parse(given, given, FIRST_ADMIN)
                .map_err(|e| AppError::Config(format!("{ADMIN_PASSWORD_ENV}: {e}")))?;
            (
                SecretString::from(given.to_owned()),
                FirstAdmin::FromEnvironment,
                false,
            )
        }
        None => {
            let generated = crate::secrets::password::generate();
            let path = settings.data_dir.join(INITIAL_ADMIN_PASSWORD_FILE);
            // A leftover from an interrupted first start holds a password no
            // account has; replace it.
            if path.exists() {
                std::fs::remove_file(&path)?;
            }
            secrets::write_private(&path, format!("{generated}\n").as_bytes())?;
            let secret = SecretString::from(generated);
            (secret.clone(), FirstAdmin::Generated(secret), true)
        }
    };
    let hash = crate::secrets::password::hash(password).await?;
    store::users::create(
        pool,
        store::users::NewUser {
            user_id: &user_id,
            role: Role::Admin,
            first_name: "",
            last_name: "Administrator",
            password_hash: &hash,
            must_change_password: must_change,
        },
        now,
    )
    .await?;
    Ok(first_admin)
}

const HEARTBEAT: Duration = Duration::from_secs(10);

pub async fn run(settings: Settings) -> AppResult<()> {
    let clock: SharedClock = Arc::new(SystemClock);
    // Before anything sizes itself by it: the connection caps.
    let files = crate::net::raise_fd_limit();
    tracing::debug!(files, "open-file limit");
    // Before the console certificate, which is written inside it: otherwise
    // a first start off loopback would create the data directory 0755.
    secrets::ensure_data_dir(&settings.data_dir)?;
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
    let prepared = prepare(settings, clock).await?;
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
    chores.push(crate::engine::spawn(state.engine_context()));
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
            let tls = Some(TlsAcceptor::from(cert.config));
            crate::net::serve(listener, tls, app, crate::net::Limits::console(), shutdown).await
        }
        None => {
            println!(
                "presence-gateway listening on http://{local} (node {}, data directory {})",
                state.settings.node_name,
                state.settings.data_dir.display()
            );
            crate::net::serve(listener, None, app, crate::net::Limits::console(), shutdown).await
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
        let store = store::session_store(&state.pool);
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
