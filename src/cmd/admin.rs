//! `admin set-password`: resets a user's password from the shell, against
//! the data directory, with or without a running service.

use std::io::BufRead;
use std::path::Path;

use secrecy::SecretString;

use crate::domain::user::{NewPassword, throttle_key};
use crate::error::{AppError, AppResult};
use crate::store;

/// `admin set-password USER [--stdin]`: resets the password, ends the user's
/// sessions and lifts any sign-in lockout on that ID.
pub async fn set_password(
    data_dir: &Path,
    database: Option<&str>,
    user_id: &str,
    from_stdin: bool,
) -> AppResult<()> {
    let db = crate::config::existing_store(data_dir, database).map_err(AppError::Config)?;
    let pool = store::open_at(&db).await?;
    let user = store::users::find_by_user_id(&pool, user_id)
        .await?
        .ok_or_else(|| AppError::Config(format!("no user with the User ID {user_id:?}")))?;
    let (password, must_change) = if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        let line = line.trim_end_matches(['\r', '\n']);
        let password = NewPassword::parse(line, line, &user.user_id).map_err(AppError::Config)?;
        (password.expose().to_owned(), false)
    } else {
        (crate::secrets::password::generate(), true)
    };
    let hash = crate::secrets::password::hash(SecretString::from(password.clone())).await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    store::users::set_password(&pool, user.id, &hash, must_change, now).await?;
    store::throttle::clear(&pool, &throttle_key(&user.user_id)).await?;
    if must_change {
        println!(
            "The password of {} is now {password}; it must be changed at the next sign-in. \
             Their sessions have ended.",
            user.user_id
        );
    } else {
        println!(
            "The password of {} has been set. Their sessions have ended.",
            user.user_id
        );
    }
    pool.close().await;
    Ok(())
}
