//! First start and every start (SY-1): the data directory, the database and
//! its migrations, the secrets key, this node's registration and the first
//! administrator. Shared by `serve` and by the tests, which build the same
//! state on a temporary directory.

use std::sync::Arc;

use secrecy::{ExposeSecret, SecretString};
use sqlx::SqlitePool;

use crate::clock::SharedClock;
use crate::config::{ADMIN_PASSWORD_ENV, Settings};
use crate::crypto::Cipher;
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
    let cipher = open_secrets(&pool, &settings.data_dir).await?;
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
            cipher,
            banner: Default::default(),
            gateways: Default::default(),
            gateway_rows_html: Default::default(),
            engine_wake: Default::default(),
        },
        first_admin,
    })
}

/// SY-4: the key that encrypts the Exchange passwords must be the one they
/// were encrypted under. With secrets stored and the key missing or
/// different, refuse to start rather than make a new key and lose them.
async fn open_secrets(pool: &SqlitePool, data_dir: &std::path::Path) -> AppResult<Cipher> {
    let stored = store::secrets::count_encrypted(pool).await?;
    let check = store::secrets::key_check(pool).await?;
    let path = secrets::key_path(data_dir);
    let cipher = match secrets::load_key(data_dir)? {
        Some(key) => Cipher::new(&key)?,
        None if stored > 0 => {
            return Err(AppError::Config(format!(
                "the database holds {stored} encrypted Exchange credential set(s) but the \
                 secrets key {} is missing: restore the key file that was backed up with this \
                 database (the data directory's database and key belong together)",
                path.display()
            )));
        }
        None => Cipher::new(&secrets::create_key(data_dir)?)?,
    };
    match check {
        Some(check) if cipher.matches_check(&check) => {}
        Some(_) if stored > 0 => {
            return Err(AppError::Config(format!(
                "the secrets key {} is not the key this database's {stored} encrypted Exchange \
                 credential set(s) were encrypted with: restore the key file that was backed up \
                 with this database",
                path.display()
            )));
        }
        // No secrets depend on the old key (or none was recorded): adopt this one.
        _ => store::secrets::set_key_check(pool, &cipher.key_check()?).await?,
    }
    Ok(cipher)
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
