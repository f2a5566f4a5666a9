use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use presence_gateway::cli::{AdminCommand, Cli, Command};
use presence_gateway::cmd::{admin, check, db, engine, serve, users};
use presence_gateway::config::Settings;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("presence_gateway=info,tower_http=warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal: in a pipe, a file or
        // the journal they are noise that hides the text (ASVS 7.1).
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `check` has its own exit statuses (TS-9): 0 all good, 1 a check
    // failed, 2 a usage error.
    if let Some(Command::Check(args)) = &cli.command {
        return ExitCode::from(runtime.block_on(check::run(&cli.data_dir, args)));
    }
    if let Some(Command::Engine(args)) = &cli.command {
        return match runtime.block_on(engine::run(&cli.data_dir, cli.database.as_deref(), args)) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(1),
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    // `users` too: 0 done, 1 rows in error, 2 a usage error.
    if let Some(Command::Users(command)) = &cli.command {
        return ExitCode::from(runtime.block_on(users::run(
            &cli.data_dir,
            cli.database.as_deref(),
            command,
        )));
    }
    if let Some(Command::Db(command)) = &cli.command {
        return ExitCode::from(runtime.block_on(db::run(command)));
    }
    // A --database that does not parse is a usage error (exit status 2).
    let database = match presence_gateway::config::database(&cli.data_dir, cli.database.as_deref())
    {
        Ok(database) => database,
        Err(e) => {
            eprintln!("error: --database: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            None => serve::run(Settings::from_args(cli.data_dir, database, &cli.serve)).await,
            Some(Command::Serve(args)) => {
                serve::run(Settings::from_args(cli.data_dir, database, &args)).await
            }
            Some(Command::Admin(AdminCommand::SetPassword { user, stdin })) => {
                admin::set_password(&cli.data_dir, cli.database.as_deref(), &user, stdin).await
            }
            // Answered above.
            Some(Command::Check(_) | Command::Engine(_) | Command::Users(_) | Command::Db(_)) => {
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The database cannot be used (unreachable, refused, missing): a
        // configuration to correct, as a usage error is.
        Err(e @ presence_gateway::error::AppError::Unavailable(_)) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
