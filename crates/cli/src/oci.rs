//! The OCI runtime commands' command lines, as runc's (engines call them so), over
//! `sandfs_runtime::lifecycle`.

use anyhow::{Context, Result};
use clap::Args;
use sandfs_runtime::lifecycle::{self, Global};
use std::io::Read;
use std::path::PathBuf;

/// `create`.
#[derive(Args, Debug)]
pub struct CreateArgs {
    /// The bundle: config.json and its rootfs.
    #[arg(short, long, value_name = "DIR", default_value = ".")]
    bundle: PathBuf,
    /// Write pid 1's pid here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// A unix socket to send the terminal's master to (process.terminal).
    #[arg(long, value_name = "SOCK")]
    console_socket: Option<PathBuf>,
    /// Accepted for runc's callers; sandfs always pivot_roots into its view.
    #[arg(long)]
    no_pivot: bool,
    /// Accepted for runc's callers; sandfs makes no session keyring.
    #[arg(long)]
    no_new_keyring: bool,
    /// Accepted for runc's callers when 0; passing extra descriptors is refused.
    #[arg(long, value_name = "N", default_value_t = 0)]
    preserve_fds: u32,
    /// The container id.
    id: String,
}

impl CreateArgs {
    /// The lifecycle's arguments.
    pub fn lifecycle(&self) -> Result<lifecycle::CreateArgs> {
        if self.preserve_fds != 0 {
            anyhow::bail!(
                "--preserve-fds {}: passing descriptors into the container is not supported",
                self.preserve_fds
            );
        }
        let bundle = std::fs::canonicalize(&self.bundle)
            .with_context(|| format!("--bundle {}", self.bundle.display()))?;
        Ok(lifecycle::CreateArgs {
            id: self.id.clone(),
            bundle,
            pid_file: self.pid_file.as_ref().map(|p| absolute(p)),
            console_socket: self.console_socket.clone(),
        })
    }
}

fn absolute(p: &std::path::Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// `kill`.
#[derive(Args, Debug)]
pub struct KillArgs {
    /// Every process of the container, not only pid 1.
    #[arg(short, long)]
    all: bool,
    /// The container id.
    id: String,
    /// A signal name (TERM, SIGTERM) or number.
    #[arg(default_value = "TERM")]
    signal: String,
}

/// `delete`.
#[derive(Args, Debug)]
pub struct DeleteArgs {
    /// Kill a running container first.
    #[arg(short, long)]
    force: bool,
    /// The container id.
    id: String,
}

/// `list`.
#[derive(Args, Debug)]
pub struct ListArgs {
    /// table or json.
    #[arg(short, long, default_value = "table")]
    format: String,
    /// Ids only.
    #[arg(short, long)]
    quiet: bool,
}

/// `ps`.
#[derive(Args, Debug)]
pub struct PsArgs {
    /// table or json.
    #[arg(short, long, default_value = "table")]
    format: String,
    /// The container id.
    id: String,
    /// Arguments for ps (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

/// `update`.
#[derive(Args, Debug)]
pub struct UpdateArgs {
    /// A linux.resources JSON file, or - for stdin.
    #[arg(short, long, value_name = "FILE")]
    resources: Option<PathBuf>,
    /// The container id.
    id: String,
}

/// An id alone (`start`, `state`, `pause`, `resume`).
#[derive(Args, Debug)]
pub struct IdArg {
    /// The container id.
    pub id: String,
}

/// Runs `create`.
pub fn create(g: &Global, a: &CreateArgs) -> Result<()> {
    lifecycle::create(g, &a.lifecycle()?)
}

/// Runs `kill`.
pub fn kill(g: &Global, a: &KillArgs) -> Result<()> {
    lifecycle::kill(g, &a.id, &a.signal, a.all)
}

/// Runs `delete`.
pub fn delete(g: &Global, a: &DeleteArgs) -> Result<()> {
    lifecycle::delete(g, &a.id, a.force)
}

/// Runs `list`.
pub fn list(g: &Global, a: &ListArgs) -> Result<()> {
    if a.quiet {
        let store = sandfs_runtime::state::Store::open(&g.root)?;
        for id in store.ids()? {
            println!("{id}");
        }
        return Ok(());
    }
    print!("{}", lifecycle::list(g, a.format == "json")?);
    if a.format == "json" {
        println!();
    }
    Ok(())
}

/// Runs `ps`.
pub fn ps(g: &Global, a: &PsArgs) -> Result<()> {
    let json = a.format == "json";
    print!("{}", lifecycle::ps(g, &a.id, json, &a.ps_args)?);
    if json {
        println!();
    }
    Ok(())
}

/// Runs `update`.
pub fn update(g: &Global, a: &UpdateArgs) -> Result<()> {
    let mut data = Vec::new();
    match a.resources.as_deref() {
        None => anyhow::bail!("update: only --resources FILE|- is supported"),
        Some(p) if p.as_os_str() == "-" => {
            std::io::stdin().read_to_end(&mut data).context("--resources -")?;
        }
        Some(p) => data = std::fs::read(p).with_context(|| format!("--resources {}", p.display()))?,
    }
    for w in lifecycle::update(g, &a.id, &data)? {
        eprintln!("sandfs: warning: {w}");
    }
    Ok(())
}

/// `exec`.
#[derive(Args, Debug)]
pub struct ExecArgs {
    /// An OCI process JSON file (replaces the container's process and CMD).
    #[arg(short, long, value_name = "FILE")]
    process: Option<PathBuf>,
    /// Give the process a terminal.
    #[arg(short, long)]
    tty: bool,
    /// A unix socket to send the terminal's master to.
    #[arg(long, value_name = "SOCK")]
    console_socket: Option<PathBuf>,
    /// Write the process's pid here.
    #[arg(long, value_name = "FILE")]
    pid_file: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// Working directory in the container.
    #[arg(long, value_name = "DIR")]
    cwd: Option<PathBuf>,
    /// More environment (repeatable).
    #[arg(short, long, value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// uid[:gid] to run as.
    #[arg(short, long, value_name = "UID[:GID]")]
    user: Option<String>,
    /// More supplementary groups (repeatable).
    #[arg(short = 'g', long = "additional-gids", value_name = "GID")]
    additional_gids: Vec<u32>,
    /// The container id.
    id: String,
    /// The command.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    cmd: Vec<String>,
}

/// Runs `exec`; the status to exit with.
pub fn exec(g: &Global, a: ExecArgs) -> Result<i32> {
    sandfs_runtime::exec::exec(
        g,
        &sandfs_runtime::exec::ExecArgs {
            id: a.id,
            process: a.process,
            tty: a.tty,
            console_socket: a.console_socket,
            pid_file: a.pid_file,
            detach: a.detach,
            cwd: a.cwd,
            env: a.env,
            user: a.user,
            additional_gids: a.additional_gids,
            cmd: a.cmd,
        },
    )
}

/// The container id of each command's arguments.
macro_rules! id_of {
    ($($t:ty),*) => {$(
        impl $t {
            /// The container id.
            pub fn id(&self) -> &str {
                &self.id
            }
        }
    )*};
}
id_of!(CreateArgs, KillArgs, DeleteArgs, PsArgs, UpdateArgs, ExecArgs);
