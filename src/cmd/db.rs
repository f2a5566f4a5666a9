//! `db copy --from sqlite:PATH --to postgres://...` (CL-2): moves a
//! single-host installation into PostgreSQL. Exit status: 0 copied, 1 the
//! target already holds data or the copy failed (nothing written), 2 on
//! usage errors (a location that does not parse or cannot be opened).

use crate::cli::DbCommand;
use crate::store::{self, Location, copy::CopyOutcome};

pub const DB_COPIED: u8 = 0;
pub const DB_REFUSED: u8 = 1;
pub const DB_USAGE: u8 = 2;

pub async fn run(command: &DbCommand) -> u8 {
    match command {
        DbCommand::Copy { from, to } => copy(from, to).await,
    }
}

async fn copy(from: &str, to: &str) -> u8 {
    let source = match Location::parse(from) {
        Ok(Location::Sqlite(path)) if path.is_file() => Location::Sqlite(path),
        Ok(Location::Sqlite(path)) => {
            eprintln!("error: --from: no SQLite database at {}", path.display());
            return DB_USAGE;
        }
        Ok(Location::Postgres(_)) => {
            eprintln!("error: --from: give the SQLite file to copy (sqlite:PATH)");
            return DB_USAGE;
        }
        Err(e) => {
            eprintln!("error: --from: {e}");
            return DB_USAGE;
        }
    };
    let target = match Location::parse(to) {
        Ok(target @ Location::Postgres(_)) => target,
        Ok(Location::Sqlite(_)) => {
            eprintln!("error: --to: give the PostgreSQL database (postgres://user@host/database)");
            return DB_USAGE;
        }
        Err(e) => {
            eprintln!("error: --to: {e}");
            return DB_USAGE;
        }
    };
    // Opening migrates both to this version's schema: an installation of an
    // older version is brought up to date first, as its next start would.
    let source_pool = match store::open_at(&source).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: --from {}: {e}", source.display());
            return DB_USAGE;
        }
    };
    let target_pool = match store::open_at(&target).await {
        Ok(pool) => pool,
        Err(e) => {
            eprintln!("error: --to: {e}");
            return DB_USAGE;
        }
    };
    let outcome = store::copy::copy(&source_pool, &target_pool).await;
    source_pool.close().await;
    target_pool.close().await;
    match outcome {
        Ok(CopyOutcome::Copied(tables)) => {
            println!(
                "Copied {} into {} in one transaction:",
                source.display(),
                target.display()
            );
            let mut total = 0;
            for (table, rows) in &tables {
                println!("  {table:<22} {rows:>9} rows");
                total += rows;
            }
            println!("  {:<22} {total:>9} rows", "total");
            println!(
                "Sessions are not copied: everyone signs in again. Copy this installation's \
                 secrets.key into the data directory of every node that uses the new database, \
                 and start each node with --database (PRESENCE_GATEWAY_DATABASE_URL)."
            );
            DB_COPIED
        }
        Ok(CopyOutcome::TargetNotEmpty(tables)) => {
            eprintln!(
                "error: {} already holds data, so nothing was copied:",
                target.display()
            );
            for (table, rows) in tables {
                eprintln!("  {table}: {rows} rows");
            }
            eprintln!("Copy into a new, empty database (createdb).");
            DB_REFUSED
        }
        Err(e) => {
            eprintln!("error: the copy failed and nothing was written: {e:?}");
            DB_REFUSED
        }
    }
}
