//! The `sandfs` command: run programs on a sandboxed, in-memory-overlaid view of a
//! filesystem. Subcommands arrive with the layers they drive.

mod gofer;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// sandfs: run untrusted programs on a disposable, sandboxed filesystem view.
#[derive(Parser, Debug)]
#[command(name = "sandfs", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what this build of sandfs provides.
    Info,
    /// Serve host directories to a sandbox (started by the runtime, not by users).
    #[command(hide = true)]
    Gofer(gofer::GoferArgs),
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SANDFS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Gofer(args)) => gofer::run(args),
        Some(Command::Info) | None => {
            println!("sandfs {}", env!("CARGO_PKG_VERSION"));
            println!("layers built: vfs (mount namespaces, path walk, permissions), tmpfs, gofer");
            println!("not yet built: overlay, container setup, FUSE, `sandfs run`");
            Ok(())
        }
    }
}
