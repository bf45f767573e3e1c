//! The `offstage` binary: parse flags, load configuration, start logging, run the server or a
//! tools command.

use anyhow::Context;
use clap::Parser;
use offstage::{
    cli::{Cli, Command},
    config::Config,
    server::{self, Server},
};

// glibc's malloc took about a sixth of the server's CPU per call under load (consolidating and
// unlinking chunks freed on other threads); jemalloc's per-thread caches do not.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli.sources()).context("invalid configuration")?;
    offstage::telemetry::init(&config.log, cli.command == Command::Serve);
    match &cli.command {
        Command::Serve => {
            let server = Server::start(config).await?;
            shutdown_signal().await;
            tracing::info!("shutting down");
            server.stop().await;
        }
        Command::Stdio => server::start_for_stdio(config).await?.serve_stdio().await?,
        Command::Tools(command) => {
            let printed = offstage::commands::tools(command, &config).await?;
            std::io::Write::write_all(&mut std::io::stdout(), printed.stdout.as_bytes())?;
            if !printed.success {
                std::process::exit(1);
            }
        }
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
