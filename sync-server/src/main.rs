//! `sync-server`: run the sync service, or manage its users, databases and tokens.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use sync_server::admin::{self, DbCommand, TokenCommand, UserCommand};
use sync_server::config::{self, GlobalArgs, LogFormat, ServeArgs, ServerConfig};
use sync_server::{AppState, serve};

/// The session-sync server: serves databases over HTTP and manages who may use them.
///
/// With no command it runs `serve`. Settings come from flags, then SYNC_* environment
/// variables, then the --config TOML file, then defaults.
#[derive(Debug, Parser)]
#[command(name = "sync-server", version)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    /// `serve`'s options are accepted without the command too.
    #[command(
        flatten,
        next_help_heading = "Serve options (also accepted without a command)"
    )]
    serve: ServeArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default). On first start with an empty data directory and the
    /// embedded demo schema it creates user `demo`, database `demo` and a device token, and
    /// prints how to connect (never with --schema; --no-demo turns it off).
    Serve(Box<ServeArgs>),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage databases and grants.
    #[command(subcommand)]
    Db(DbCommand),
    /// Issue, revoke and list device tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

fn main() -> ExitCode {
    // Before anything touches SQLite (see the function's docs).
    sync_server::storage::tune_sqlite_process();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match cli.command {
        None => serve_command(&cli.global, &cli.serve),
        Some(Command::Serve(args)) => serve_command(&cli.global, &args.or(cli.serve)),
        Some(Command::User(cmd)) => Ok(admin::user(
            &config::data_dir_keyed(&cli.global)?,
            &cmd,
            &mut out,
        )?),
        Some(Command::Db(cmd)) => Ok(admin::db(
            &config::data_dir_keyed(&cli.global)?,
            &cmd,
            &mut out,
        )?),
        Some(Command::Token(cmd)) => Ok(admin::token(
            &config::data_dir_keyed(&cli.global)?,
            &cmd,
            &mut out,
        )?),
    }
}

fn init_logging(config: &ServerConfig) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log)
        .with_context(|| format!("invalid log filter {:?}", config.log))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // A log line that cannot be written (stderr on a full disk) is dropped: the default
        // reports the failure with eprintln!, which panics — and a panic in a request task
        // would leave the client with no answer at all.
        .log_internal_errors(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match config.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    Ok(())
}

fn serve_command(global: &GlobalArgs, args: &ServeArgs) -> anyhow::Result<()> {
    let config = ServerConfig::resolve(global, args)?;
    init_logging(&config)?;
    ensure_open_files(&config);
    let state = AppState::new(config.clone()).context("cannot start the server")?;
    // The demo belongs to the embedded demo schema: a server with the operator's own schema
    // never creates a user, a database or a token by itself (and never prints a token to a
    // service manager's journal).
    let demo_token = if config.demo && config.schema_dir.is_none() {
        admin::bootstrap_demo(&state.shared().data)
            .context("cannot create the demo user and database")?
    } else {
        None
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(config.blocking_threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = shutdown_signal().context("cannot install signal handlers")?;
        let mut out = std::io::stdout().lock();
        if let Some(token) = demo_token {
            let host = if addr.ip().is_unspecified() {
                format!("127.0.0.1:{}", addr.port())
            } else {
                addr.to_string()
            };
            // Every indented line after the token is a command that works as printed (README's
            // walk-through and the `readme` test run them).
            writeln!(
                out,
                "First start: created user \"{user}\", database \"{db}\" and a token for device \"{device}\":\n\n    \
                 {token}\n\n\
                 The token is shown only this once. Connect a client, from the session-sync source tree \
                 (the first\nline puts sync-cli on PATH, the second makes demo.db: a local copy with \
                 full-text search on notes):\n\n    \
                 {install}\n    \
                 sync-cli init demo.db --server http://{host} --token {token} --database {db} --fts {fts}\n",
                user = admin::DEMO_USER,
                db = admin::DEMO_DATABASE,
                device = admin::DEMO_DEVICE,
                install = admin::DEMO_INSTALL_CLI,
                fts = admin::DEMO_FTS,
            )?;
        }
        writeln!(out, "sync-server listening on http://{addr}")?;
        out.flush()?;
        drop(out);
        tracing::info!(%addr, data = %config.data_dir.display(), "listening");
        serve(listener, state, shutdown).await?;
        Ok(())
    })
}

/// Raises the open-files limit towards what a full database cache needs, and warns if that is
/// still not enough.
fn ensure_open_files(config: &ServerConfig) {
    let needed = sync_server::storage::files_needed(config.cache_capacity, config.readers);
    if let Some(now) = sync_server::storage::raise_open_files_limit(needed)
        && now < needed
    {
        tracing::warn!(
            open_files_limit = now,
            needed,
            cache_capacity = config.cache_capacity,
            "the open-files limit is too low for a full database cache: raise the hard limit \
             (ulimit -Hn, systemd LimitNOFILE=) or lower --cache-capacity"
        );
    }
}

/// Resolves on Ctrl-C or SIGTERM. The handlers are installed when this is called (not when
/// the future is first polled), so a signal that arrives once the server said it listens is
/// always a graceful shutdown.
#[cfg(unix)]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
    })
}

/// Resolves on Ctrl-C.
#[cfg(not(unix))]
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
