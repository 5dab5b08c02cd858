//! The `sandfs` command: run programs on a sandboxed, in-memory-overlaid view of a
//! filesystem. Subcommands arrive with the layers they drive.

mod gofer;
mod info;
mod mount;
mod oci;
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
    /// The state directory of containers (default /run/sandfs; rootless
    /// $XDG_RUNTIME_DIR/sandfs).
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<std::path::PathBuf>,
    /// Also write errors (and the monitor's warnings) to FILE, as engines read them.
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<std::path::PathBuf>,
    /// How --log writes: text or json (one object per line, as runc's).
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// cgroupsPath is systemd's slice:prefix:name; sandfs makes the cgroup where
    /// systemd would put it, itself (it does not ask systemd).
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// The writable layers: none | root:MEDIUM | all:MEDIUM, optionally ,size=N;
    /// MEDIUM: memory, self (a hidden store file in the mount source) or dir=PATH.
    /// Default root:memory.
    #[arg(long, global = true, value_name = "SPEC")]
    overlay2: Option<String>,
    /// File access mode of the root: exclusive (default) or shared.
    #[arg(long, global = true, value_name = "MODE")]
    file_access: Option<String>,
    /// File access mode of bind mounts: exclusive or shared (default).
    #[arg(long, global = true, value_name = "MODE")]
    file_access_mounts: Option<String>,
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
    /// Create a container from a bundle; its program waits for `start`.
    Create(oci::CreateArgs),
    /// Let a created container's program run.
    Start(oci::IdArg),
    /// Print a container's OCI state JSON.
    State(oci::IdArg),
    /// Send a signal to a container's pid 1 (or every process with --all).
    Kill(oci::KillArgs),
    /// Free a stopped container (--force: kill it first).
    Delete(oci::DeleteArgs),
    /// List containers.
    List(oci::ListArgs),
    /// List a container's processes.
    Ps(oci::PsArgs),
    /// Freeze a container's processes.
    Pause(oci::IdArg),
    /// Thaw a paused container.
    Resume(oci::IdArg),
    /// Change a live container's resources.
    Update(oci::UpdateArgs),
    /// Run another process in a container.
    Exec(oci::ExecArgs),
    /// Print what this runtime implements (the OCI features JSON).
    Features,
    /// The container process (started by `sandfs run`, not by users).
    #[command(name = "__sandbox", hide = true)]
    Sandbox {
        /// The descriptor to read the parameters from (JSON): never the command
        /// line, which any user can read (`ps`), and the environment is in them.
        params_fd: i32,
    },
}

/// How `--log` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// `time level msg` lines.
    Text,
    /// JSON objects with level, msg and time, one per line.
    Json,
}

fn main() {
    let cli = Cli::parse();
    let debug = cli.debug;
    let log = cli.log.clone().map(|p| (p, cli.log_format));
    // User errors are one line (the chain of contexts); the backtrace anyhow keeps
    // when RUST_BACKTRACE is set is printed only with --debug.
    if let Err(e) = run(cli) {
        if debug {
            eprintln!("sandfs: {e:?}");
        } else {
            eprintln!("sandfs: {e:#}");
        }
        if let Some((path, format)) = log {
            write_log(&path, format, &format!("{e:#}"));
        }
        std::process::exit(1);
    }
}

/// Appends an error to the `--log` file.
fn write_log(path: &std::path::Path, format: LogFormat, msg: &str) {
    sandfs_runtime::log_line(path, format == LogFormat::Json, "error", msg);
}

/// The runtime flags, with their defaults.
fn global(cli: &Cli) -> sandfs_runtime::lifecycle::Global {
    let root = cli.root.clone().unwrap_or_else(|| {
        match std::env::var_os("XDG_RUNTIME_DIR").filter(|_| !rustix::process::geteuid().is_root()) {
            Some(d) => std::path::PathBuf::from(d).join("sandfs"),
            None => "/run/sandfs".into(),
        }
    });
    sandfs_runtime::lifecycle::Global {
        root,
        overlay2: cli.overlay2.clone().unwrap_or_else(|| sandfs_runtime::run::DEFAULT_OVERLAY2.into()),
        file_access: cli
            .file_access
            .clone()
            .unwrap_or_else(|| sandfs_runtime::run::DEFAULT_FILE_ACCESS.into()),
        file_access_mounts: cli
            .file_access_mounts
            .clone()
            .unwrap_or_else(|| sandfs_runtime::run::DEFAULT_FILE_ACCESS_MOUNTS.into()),
        systemd_cgroup: cli.systemd_cgroup,
        log: cli.log.clone(),
        log_json: cli.log_format == LogFormat::Json,
    }
}

/// The container a command acts on, for its error message.
fn container_of(c: &Option<Command>) -> Option<&str> {
    Some(match c.as_ref()? {
        Command::Create(a) => a.id(),
        Command::Start(a) | Command::State(a) | Command::Pause(a) | Command::Resume(a) => &a.id,
        Command::Kill(a) => a.id(),
        Command::Delete(a) => a.id(),
        Command::Ps(a) => a.id(),
        Command::Update(a) => a.id(),
        Command::Exec(a) => a.id(),
        _ => return None,
    })
}

fn run(cli: Cli) -> Result<()> {
    // Errors of the OCI commands name their container, as runc's do.
    let id = container_of(&cli.command).map(String::from);
    run_command(cli).map_err(|e| match id {
        Some(id) if !format!("{e:#}").contains(&id) => e.context(format!("container {id}")),
        _ => e,
    })
}

fn run_command(cli: Cli) -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SANDFS_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let g = global(&cli);
    match cli.command {
        Some(Command::Gofer(args)) => gofer::run(args),
        Some(Command::Mount(mut args)) => {
            if let Some(o) = cli.overlay2 {
                args.overlay2 = o;
            }
            if let Some(f) = cli.file_access {
                args.file_access = f;
            }
            mount::run(args)
        }
        Some(Command::Run(mut args)) => {
            (args.fs.overlay2, args.fs.file_access, args.fs.file_access_mounts) =
                (g.overlay2, g.file_access, g.file_access_mounts);
            let code = run::run(args)?;
            std::process::exit(code)
        }
        Some(Command::Create(a)) => oci::create(&g, &a),
        Some(Command::Start(a)) => sandfs_runtime::lifecycle::start(&g, &a.id),
        Some(Command::State(a)) => {
            println!("{}", sandfs_runtime::lifecycle::state(&g, &a.id)?);
            Ok(())
        }
        Some(Command::Kill(a)) => oci::kill(&g, &a),
        Some(Command::Delete(a)) => oci::delete(&g, &a),
        Some(Command::List(a)) => oci::list(&g, &a),
        Some(Command::Ps(a)) => oci::ps(&g, &a),
        Some(Command::Pause(a)) => sandfs_runtime::lifecycle::pause(&g, &a.id),
        Some(Command::Resume(a)) => sandfs_runtime::lifecycle::resume(&g, &a.id),
        Some(Command::Update(a)) => oci::update(&g, &a),
        Some(Command::Features) => {
            println!("{}", serde_json::to_string_pretty(&sandfs_runtime::features::features())?);
            Ok(())
        }
        Some(Command::Exec(a)) => {
            let code = oci::exec(&g, a)?;
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
