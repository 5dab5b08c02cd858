//! `sandfs run -t`: the program gets a terminal of its own, a pty of the
//! container's own devpts (made by the sandbox and its master handed to the
//! runtime, as runc's console socket does), which sandfs relays to and from the
//! caller's terminal. The program never
//! holds a descriptor of the caller's terminal, so nothing it does (TIOCSTI, a
//! changed mode, a job-control signal) reaches it: only its output is copied out.
//! The caller's terminal is put in raw mode for the run (keys, ^C included, go to
//! the program's pty, whose line discipline acts on them) and restored after, and
//! its window size follows the caller's.

use anyhow::{Context, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::termios::{OptionalActions, Termios};
use std::io::{Read, Write};

/// The caller's terminal in raw mode for the run; its mode is restored when this is
/// dropped (after the relay, or when the run fails before it).
pub struct Raw(Option<Termios>);

impl Raw {
    /// Put the caller's terminal (when stdin is one) in raw mode.
    pub fn enter() -> Result<Raw> {
        let stdin = std::io::stdin();
        if !rustix::termios::isatty(stdin.as_fd()) {
            return Ok(Raw(None));
        }
        let old = rustix::termios::tcgetattr(stdin.as_fd()).context("read the terminal's mode")?;
        let mut raw = old.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &raw).context("raw mode")?;
        Ok(Raw(Some(old)))
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        if let Some(t) = self.0.take() {
            let _ = rustix::termios::tcsetattr(std::io::stdin().as_fd(), OptionalActions::Now, &t);
        }
    }
}

/// The pty of a run and the caller's terminal, restored when the relay is done.
pub struct Relay {
    master: OwnedFd,
    _raw: Raw,
}

impl Relay {
    /// Relay the program's terminal `master` for the caller's terminal `raw`.
    pub fn new(master: OwnedFd, raw: Raw) -> Relay {
        resize(&master);
        Relay { master, _raw: raw }
    }

    /// A descriptor of the program's terminal for [`resize`] (the signal thread's).
    pub fn resizer(&self) -> Result<OwnedFd> {
        Ok(self.master.try_clone()?)
    }

    /// Start copying: the caller's input to the program (a thread that ends with
    /// the process), the program's output to the caller (joined by [`Relay::finish`]).
    pub fn start(&self) -> Result<std::thread::JoinHandle<()>> {
        let to_program = self.master.try_clone().context("dup the pty")?;
        std::thread::Builder::new().name("tty-in".into()).spawn(move || {
            let mut input = std::io::stdin();
            let mut buf = [0u8; 4096];
            while let Ok(n) = input.read(&mut buf) {
                if n == 0 || rustix::io::write(&to_program, &buf[..n]).is_err() {
                    break;
                }
            }
        })?;
        let from_program = self.master.try_clone().context("dup the pty")?;
        let out = std::thread::Builder::new().name("tty-out".into()).spawn(move || {
            let mut buf = [0u8; 4096];
            let mut stdout = std::io::stdout();
            // EIO: every holder of the program's terminal has gone.
            while let Ok(n) = rustix::io::read(&from_program, &mut buf) {
                if n == 0 || stdout.write_all(&buf[..n]).is_err() {
                    break;
                }
                let _ = stdout.flush();
            }
        })?;
        Ok(out)
    }

    /// Wait for the program's last output and give the caller its terminal back.
    pub fn finish(self, out: std::thread::JoinHandle<()>) {
        let _ = out.join();
        drop(self);
    }
}

/// Copy the caller's window size to the program's terminal `master` (on SIGWINCH).
pub fn resize(master: &OwnedFd) {
    if let Ok(ws) = rustix::termios::tcgetwinsize(std::io::stdin().as_fd()) {
        let _ = rustix::termios::tcsetwinsize(master, ws);
    }
}
