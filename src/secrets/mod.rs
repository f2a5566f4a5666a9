//! Secrets: files in the data directory that only the service account may
//! read (the secrets key, SY-4, and the initial administrator password,
//! SY-1), sealing with that key (`cipher`) and password hashing
//! (`password`).

pub mod api_token;
pub mod cipher;
pub mod password;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::error::{AppError, AppResult};

pub const KEY_FILE: &str = "secrets.key";
pub const KEY_LEN: usize = 32;
pub const INITIAL_ADMIN_PASSWORD_FILE: &str = "initial-admin-password";

/// Writes a new file readable and writable by the owner alone; refuses to
/// overwrite an existing one.
pub fn write_private(path: &Path, contents: &[u8]) -> AppResult<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()?;
    Ok(())
}

/// Creates the data directory (mode 0700) if it does not exist, then
/// refuses one that group or others may open.
pub fn ensure_data_dir(dir: &Path) -> AppResult<()> {
    if !dir.exists() {
        // Created 0700 at once (not chmod-ed after), so it is never open
        // to others, not even for a moment.
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    }
    refuse_if_shared(dir, "the data directory", 0o700)
}

/// Like OpenSSH with a private key: a secret that group or others may read
/// or change is no longer the service account's alone, so the service
/// refuses to start and names the `chmod` that fixes it rather than
/// silently tightening (someone chose those permissions, and may need to
/// know the secret was exposed).
fn refuse_if_shared(path: &Path, what: &str, wanted: u32) -> AppResult<()> {
    let mode = fs::metadata(path)
        .map_err(|e| AppError::Config(format!("cannot inspect {what} {}: {e}", path.display())))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(AppError::Config(format!(
            "{what} {} is open to group or others (mode {mode:04o}): only the service account \
             may use it; fix it with `chmod {wanted:o} {}`",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

pub fn key_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Reads the secrets key: `None` when the file does not exist. A key of the
/// wrong size is refused rather than replaced: secrets encrypted under the
/// old key would be lost (SY-4).
pub fn load_key(data_dir: &Path) -> AppResult<Option<Vec<u8>>> {
    let path = key_path(data_dir);
    match fs::read(&path) {
        Ok(key) if key.len() == KEY_LEN => {
            refuse_if_shared(&path, "the secrets key", 0o600)?;
            Ok(Some(key))
        }
        Ok(key) => Err(AppError::Config(format!(
            "the secrets key {} holds {} bytes instead of {KEY_LEN}: restore the key that \
             was backed up with this database",
            path.display(),
            key.len()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(AppError::Config(format!(
            "cannot read the secrets key {}: {e}",
            path.display()
        ))),
    }
}

/// Makes a new random key file (mode 0600); refuses to overwrite one.
pub fn create_key(data_dir: &Path) -> AppResult<Vec<u8>> {
    let mut key = vec![0u8; KEY_LEN];
    rand::rngs::OsRng.fill_bytes(&mut key);
    write_private(&key_path(data_dir), &key)?;
    Ok(key)
}
