//! `users import|export`: Bulk Administration from the shell, against the
//! data directory, with or without a running service (SQLite WAL lets both
//! work at once).

use std::path::Path;

use crate::error::AppResult;
use crate::store;

/// Exit statuses of `users`: done, rows in error, usage error.
const USERS_OK: u8 = 0;
const USERS_ROWS_BAD: u8 = 1;
const USERS_USAGE: u8 = 2;

/// `users import FILE [--dry-run]` and `users export [--output FILE]`
/// (US-4): the same checks and the same one transaction as the console's
/// Bulk Administration page. Returns the exit status.
pub async fn run(
    data_dir: &Path,
    database: Option<&str>,
    command: &crate::cli::UsersCommand,
) -> u8 {
    use crate::cli::UsersCommand;
    let db = match crate::config::existing_store(data_dir, database) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("error: {e}");
            return USERS_USAGE;
        }
    };
    let outcome = match command {
        UsersCommand::Import { file, dry_run } => import_users(&db, file, *dry_run).await,
        UsersCommand::Export { output } => export_users(&db, output.as_deref()).await,
    };
    match outcome {
        Ok(status) => status,
        Err(e) => {
            eprintln!("error: {e}");
            USERS_ROWS_BAD
        }
    }
}

async fn import_users(db: &store::Location, file: &Path, dry_run: bool) -> AppResult<u8> {
    use crate::domain::bulk::Outcome;
    use crate::store::bulk::Refused;

    let bytes = match read_bounded(file) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            eprintln!(
                "error: {} is larger than 16 MiB: nothing imported; split it into smaller files",
                file.display()
            );
            return Ok(USERS_USAGE);
        }
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", file.display());
            return Ok(USERS_USAGE);
        }
    };
    let work = store::bulk::Work::alone();
    let pool = store::open_at(db).await?;
    let print = |report: &crate::domain::bulk::Report| {
        println!("Rows are numbered as in a spreadsheet: the header is row 1.");
        for row in &report.rows {
            match &row.outcome {
                Outcome::Create(_) => println!("row {}: create {}", row.row, row.user_id),
                Outcome::Update {
                    unchanged: false, ..
                } => println!("row {}: update {}", row.row, row.user_id),
                Outcome::Update {
                    unchanged: true, ..
                } => println!("row {}: update {} (no change)", row.row, row.user_id),
                Outcome::Error(message) => {
                    println!("row {}: error {}: {message}", row.row, row.user_id)
                }
            }
        }
        let listed = report
            .rows
            .iter()
            .filter(|r| matches!(r.outcome, Outcome::Error(_)))
            .count();
        if report.errors > listed {
            println!(
                "{} more rows in error are not listed (the first {listed} are).",
                report.errors - listed
            );
        }
        println!("{}", report.summary());
    };
    let status = if dry_run {
        match store::bulk::check(&pool, bytes, &work).await? {
            Err(e) => {
                println!("{e}");
                USERS_ROWS_BAD
            }
            Ok(report) => {
                print(&report);
                if report.is_clean() {
                    println!("Dry run: nothing written.");
                    USERS_OK
                } else {
                    println!("Nothing written: fix the rows in error.");
                    USERS_ROWS_BAD
                }
            }
        }
    } else {
        let hash = store::bulk::unusable_password_hash().await?;
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        match store::bulk::apply(&pool, bytes, &hash, SHELL_ACTOR, now, None, &work).await? {
            Ok(applied) => {
                print(&applied.report);
                println!("Import applied: {}.", applied.summary());
                USERS_OK
            }
            Err(Refused::File(e)) => {
                println!("{e}");
                USERS_ROWS_BAD
            }
            Err(Refused::Rows(report)) => {
                print(&report);
                println!("Nothing written: fix the rows in error.");
                USERS_ROWS_BAD
            }
        }
    };
    pool.close().await;
    Ok(status)
}

/// The file's bytes, or None when it holds more than `MAX_BYTES`. The limit
/// counts the bytes actually read, not the length the file system reports:
/// a pipe, a device such as /dev/zero or a file still growing says nothing
/// true about its length, and is read only one byte past the limit.
fn read_bounded(file: &Path) -> std::io::Result<Option<bytes::Bytes>> {
    use crate::domain::bulk::MAX_BYTES;
    use std::io::Read;
    let limit = MAX_BYTES as u64 + 1;
    let opened = std::fs::File::open(file)?;
    // A regular file's length, when it is within the limit, sizes the
    // buffer once rather than by doubling; it is only a hint.
    let hint = opened.metadata().map(|m| m.len().min(limit)).unwrap_or(0);
    let mut bytes = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
    opened.take(limit).read_to_end(&mut bytes)?;
    if bytes.len() > MAX_BYTES {
        return Ok(None);
    }
    Ok(Some(bytes::Bytes::from(bytes)))
}

/// Who the audit log names for changes made from the shell.
const SHELL_ACTOR: &str = "shell (users import)";

async fn export_users(db: &store::Location, output: Option<&Path>) -> AppResult<u8> {
    use std::io::Write;
    let pool = store::open_at(db).await?;
    let csv = store::bulk::export(&pool).await?;
    pool.close().await;
    match output {
        Some(path) => {
            if let Err(e) = std::fs::write(path, &csv) {
                eprintln!("error: cannot write {}: {e}", path.display());
                return Ok(USERS_USAGE);
            }
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&csv)?;
            stdout.flush()?;
        }
    }
    Ok(USERS_OK)
}
