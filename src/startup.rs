//! First start and every start (SY-1): the data directory, the database and
//! its migrations, the secrets key, this node's registration and the first
//! administrator. Shared by `serve` and by the tests, which build the same
//! state on a temporary directory.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::{ADMIN_PASSWORD_ENV, Settings};
use crate::domain::user::{NewPassword, Role, UserId};
use crate::error::{AppError, AppResult};
use crate::secrets::{self, INITIAL_ADMIN_PASSWORD_FILE};
use crate::state::AppState;
use crate::store;

pub const FIRST_ADMIN: &str = "admin";

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
    secrets::ensure_data_dir(&settings.data_dir)?;
    let pool = store::open(&settings.database_path()).await?;
    secrets::load_or_create_key(&settings.data_dir)?;
    session_store(&pool).migrate().await?;
    let now = clock.unix();
    store::nodes::register(
        &pool,
        &settings.node_name,
        &settings.listen.to_string(),
        now,
    )
    .await?;
    let first_admin = ensure_admin(&pool, &settings, now).await?;
    Ok(Prepared {
        state: AppState {
            pool,
            settings: Arc::new(settings),
            clock,
        },
        first_admin,
    })
}

pub fn session_store(pool: &SqlitePool) -> tower_sessions_sqlx_store::SqliteStore {
    tower_sessions_sqlx_store::SqliteStore::new(pool.clone())
}

async fn ensure_admin(pool: &SqlitePool, settings: &Settings, now: i64) -> AppResult<FirstAdmin> {
    if store::users::count_admins(pool).await? > 0 {
        return Ok(FirstAdmin::Existing);
    }
    let user_id = UserId::parse(FIRST_ADMIN).map_err(AppError::Config)?;
    let (password, first_admin, must_change) = match &settings.admin_password {
        Some(given) => {
            let given = given.expose_secret();
            NewPassword::parse(given, given)
                .map_err(|e| AppError::Config(format!("{ADMIN_PASSWORD_ENV}: {e}")))?;
            (
                SecretString::from(given.to_owned()),
                FirstAdmin::FromEnvironment,
                false,
            )
        }
        None => {
            let generated = crate::password::generate();
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
    let hash = crate::password::hash(password).await?;
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
