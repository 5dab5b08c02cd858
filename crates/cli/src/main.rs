//! The `sandfs` command: run programs on a sandboxed, in-memory-overlaid view of a
//! filesystem. Subcommands arrive with the layers they drive.

mod gofer;
mod info;
mod mount;
mod spec;

use sandfs_runtime::{run, sandbox};

use anyhow::Result;
use clap::{Parser, Subcommand};

/// sandfs: run untrusted programs on a disposable, sandboxed filesystem view.
#[derive(Parser, Debug)]
#[command(name = "sandfs", version, about, long_about = None)]
struct Cli {
    /// Print errors with their full chain and backtrace (RUST_BACKTRACE alone does not).
    #[arg(long, global = true)]
    debug: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show what this build of sandfs provides and what this host allows.
    Info,
    /// Serve host directories to a sandbox (started by the runtime, not by users).
    #[command(hide = true)]
    Gofer(gofer::GoferArgs),
    /// Serve the composed view over FUSE at a mount point (foreground; --daemon).
    Mount(mount::MountArgs),
    /// Run a program on the sandboxed view (default: the host root as a read-only
    /// lower layer under an in-memory overlay).
    Run(run::RunArgs),
    /// Write a starter config.json (and, with --rootfs-busybox, a busybox rootfs).
    Spec(spec::SpecArgs),
    /// The container process (started by `sandfs run`, not by users).
    #[command(name = "__sandbox", hide = true)]
    Sandbox {
        /// The descriptor to read the parameters from (JSON): never the command
        /// line, which any user can read (`ps`), and the environment is in them.
        params_fd: i32,
    },
}

fn main() {
    let cli = Cli::parse();
    let debug = cli.debug;
    // User errors are one line (the chain of contexts); the backtrace anyhow keeps
    // when RUST_BACKTRACE is set is printed only with --debug.
    if let Err(e) = run(cli) {
        if debug {
            eprintln!("sandfs: {e:?}");
        } else {
            eprintln!("sandfs: {e:#}");
        }
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SANDFS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Command::Gofer(args)) => gofer::run(args),
        Some(Command::Mount(args)) => mount::run(args),
        Some(Command::Run(args)) => {
            let code = run::run(args)?;
            std::process::exit(code)
        }
        Some(Command::Spec(args)) => spec::run(args),
        Some(Command::Sandbox { params_fd }) => {
            let code = sandbox::run(params_fd)?;
            std::process::exit(code)
        }
        Some(Command::Info) => info::run(),
        None => {
            use clap::CommandFactory;
            Cli::command().print_help()?;
            Ok(())
        }
    }
}
