//! `--network pasta` against the real pasta: a process in a new user and network
//! namespace gets an interface, an address and a default route, reaches a host
//! service on a non-loopback address, does not reach the host's loopback, and the
//! host's interfaces stay as they were. Needs root (to enter the namespace from a
//! test thread) and pasta (package passt); skips with the reason otherwise.

use sandfs_confine::pasta;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &[u8] = b"sandfs-pasta-token";

fn skip() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("not root".into());
    }
    if pasta::available().is_none() {
        return Some("pasta not installed (package passt)".into());
    }
    for tool in ["unshare", "sleep"] {
        if !sandfs_confine::userns::on_path(tool) {
            return Some(format!("{tool} not on PATH"));
        }
    }
    None
}

macro_rules! need {
    () => {
        if let Some(why) = skip() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// A process in a new user and network namespace (`unshare`), killed on drop.
struct Ns {
    child: Child,
}

impl Ns {
    fn new() -> Ns {
        let child = Command::new("unshare")
            .args(["--user", "--map-root-user", "--net", "sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let ns = Ns { child };
        let own = std::fs::read_link("/proc/self/ns/net").unwrap();
        let start = Instant::now();
        // Ready once it has its own network namespace and has exec'd sleep (unshare
        // writes the id maps before the exec).
        loop {
            let p = ns.pid();
            let net = std::fs::read_link(format!("/proc/{p}/ns/net")).unwrap();
            let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
            if net != own && comm.trim() == "sleep" {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "namespace of {p} never appeared");
            std::thread::yield_now();
        }
        ns
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/net", self.pid()))
    }

    fn userns(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/ns/user", self.pid()))
    }

    fn attach(&self) -> pasta::Pasta {
        pasta::attach(self.pid(), &self.netns(), Some(&self.userns())).unwrap()
    }

    /// Run `f` on a thread that has joined this network namespace (sockets it makes
    /// live there; /proc/thread-self/net describes it).
    fn inside<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let net = std::fs::File::open(self.netns()).unwrap();
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(
                net.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The IPv4 default route of the calling thread's namespace: (interface, gateway).
fn default_route4(route_file: &str) -> Option<(String, Ipv4Addr)> {
    let text = std::fs::read_to_string(route_file).ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() < 3 || f[1] != "00000000" || f[0] == "lo" {
            return None;
        }
        let gw = u32::from_str_radix(f[2], 16).ok()?;
        Some((f[0].to_string(), Ipv4Addr::from(gw.to_le_bytes())))
    })
}

/// The source address the kernel picks toward `to` (a UDP connect sends nothing).
fn source_toward(to: Ipv4Addr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect((to, 9)).ok()?;
    match s.local_addr().ok()? {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(*a.ip()),
        _ => None,
    }
}

/// The host's address on the interface with its default route.
fn host_addr() -> Option<Ipv4Addr> {
    let (_, gw) = default_route4("/proc/net/route")?;
    source_toward(gw).filter(|a| !a.is_loopback())
}

fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Connect to `to` and read what the peer sends first (empty on failure or silence).
fn fetch(to: SocketAddr) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(10)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    Ok(buf)
}

/// Serve TOKEN to the first `n` clients of `l` on a thread.
fn serve(l: TcpListener, n: usize) -> std::thread::JoinHandle<Vec<SocketAddr>> {
    std::thread::spawn(move || {
        (0..n)
            .map(|_| {
                let (mut c, peer) = l.accept().unwrap();
                c.write_all(TOKEN).unwrap();
                peer
            })
            .collect()
    })
}

#[test]
fn namespace_gets_an_interface_an_address_and_a_default_route() {
    need!();
    if default_route4("/proc/net/route").is_none() {
        eprintln!("skipped: the host has no IPv4 default route");
        return;
    }
    let before = interfaces();
    let ns = Ns::new();
    let (ifaces, route) = ns.inside(|| {
        let dev = std::fs::read_to_string("/proc/thread-self/net/dev").unwrap();
        (dev, default_route4("/proc/thread-self/net/route"))
    });
    assert!(route.is_none(), "a default route before pasta: {route:?}");
    assert!(!ifaces.lines().skip(2).any(|l| !l.trim_start().starts_with("lo:")), "{ifaces}");
    let p = ns.attach();
    let (iface, gw, addr) = ns.inside(|| {
        let (iface, gw) =
            default_route4("/proc/thread-self/net/route").expect("no default route after pasta");
        (iface, gw, source_toward(gw))
    });
    assert_ne!(iface, "lo");
    assert_eq!(gw.to_string(), pasta::GATEWAY4);
    let addr = addr.expect("no address toward the gateway");
    assert_eq!(addr.to_string(), pasta::ADDR4);
    // The host's interfaces are as they were: pasta's tap is in the namespace only.
    assert_eq!(interfaces(), before);
    drop(p);
    assert_eq!(interfaces(), before);
}

#[test]
fn namespace_reaches_a_host_service_on_a_non_loopback_address() {
    need!();
    let Some(host) = host_addr() else {
        eprintln!("skipped: the host has no non-loopback address with a default route");
        return;
    };
    let l = TcpListener::bind((host, 0)).unwrap();
    let to = l.local_addr().unwrap();
    let server = serve(l, 1);
    let ns = Ns::new();
    let _p = ns.attach();
    let got = ns.inside(move || fetch(to));
    assert_eq!(got.as_deref(), Ok(TOKEN), "connect to {to} from inside");
    let peers = server.join().unwrap();
    // The connection arrives from pasta on the host, not from the sandbox's address.
    assert_ne!(peers[0].ip().to_string(), pasta::ADDR4);
}

#[test]
fn namespace_does_not_reach_the_host_loopback() {
    need!();
    if default_route4("/proc/net/route").is_none() {
        eprintln!("skipped: the host has no IPv4 default route");
        return;
    }
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let port = l.local_addr().unwrap().port();
    let ns = Ns::new();
    let _p = ns.attach();
    let (via_gw, via_lo) = ns.inside(move || {
        sandfs_confine::net::loopback_up().unwrap();
        let (_, gw) = default_route4("/proc/thread-self/net/route").unwrap();
        // pasta's default maps the gateway to the host's 127.0.0.1 (--no-map-gw
        // stops it) and forwards the host's bound ports to the namespace's own
        // loopback (-T none stops it).
        (fetch(SocketAddr::from((gw, port))), fetch(SocketAddr::from(([127, 0, 0, 1], port))))
    });
    // Whatever answered (nothing, or some real host at the gateway address), it
    // was not the test's loopback server, which saw no connection at all.
    assert_ne!(via_gw.as_deref().ok(), Some(TOKEN));
    assert!(via_lo.is_err(), "the namespace's 127.0.0.1:{port} answered: {via_lo:?}");
    let e = l.accept().expect_err("the host loopback server got a connection");
    assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
}

#[test]
fn pasta_is_gone_after_the_namespace_exits_and_it_drops() {
    need!();
    if default_route4("/proc/net/route").is_none() {
        eprintln!("skipped: the host has no IPv4 default route");
        return;
    }
    let mut ns = Ns::new();
    let p = ns.attach();
    let pid = p.pid();
    assert_eq!(p.target(), ns.pid());
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert!(comm.starts_with("pas"), "pid {pid} is {comm:?}");
    ns.child.kill().unwrap();
    ns.child.wait().unwrap();
    drop(p);
    // Dropped means killed and reaped: the pid is free (or, if already reused, not pasta).
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert!(!comm.starts_with("pas"), "pasta {pid} still there");
}

#[test]
fn missing_pasta_is_an_error_naming_passt() {
    if std::env::var_os("SANDFS_PASTA_CHILD").is_some() {
        let e = pasta::attach(1, "/proc/1/ns/net".as_ref(), None).unwrap_err();
        assert!(e.contains("passt"), "{e}");
        assert!(pasta::available().is_none());
        return;
    }
    // PATH is process-wide: the check runs in a copy of this test binary.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "missing_pasta_is_an_error_naming_passt", "--nocapture"])
        .env("PATH", "/nonexistent")
        .env("SANDFS_PASTA_CHILD", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
}
