//! The `sandfs` command: run programs on a sandboxed, in-memory-overlaid view of a
//! filesystem. Subcommands arrive with the layers they drive; for now the command
//! reports what it is and what this build holds.

use anyhow::Result;
use clap::{Parser, Subcommand};

/// sandfs: a sandbox filesystem and container runtime with a user-space filesystem.
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Info) | None => {
            println!("sandfs {}", env!("CARGO_PKG_VERSION"));
            println!("layers built: vfs (mount namespaces, path walk, permissions), tmpfs");
            println!("not yet built: gofer, overlay, container setup, FUSE, `sandfs run`");
            Ok(())
        }
    }
}
