//! Makes `-lseccomp` link against the system's libseccomp.so.2 without the -dev package.
//!
//! libseccomp-sys (under the `libseccomp` crate) ships pre-generated bindings, so no
//! headers are needed, and its build script only asks for `-lseccomp`. The linker
//! resolves that through the unversioned `libseccomp.so`, which Debian and most
//! distributions ship only in libseccomp-dev; a fresh machine has just the runtime
//! `libseccomp.so.2`. When no `libseccomp.so` is on the usual library paths, this
//! script puts a `libseccomp.so` symlink to the runtime library in OUT_DIR and adds
//! that directory to the link search path (Cargo passes it on to every binary that
//! links this crate). The binary still records the library's soname, `libseccomp.so.2`,
//! so it loads the same file the package manager installed.
//!
//! Static linking is not used: it needs `libseccomp.a`, which is also only in -dev.
//! `LIBSECCOMP_LIB_PATH` / `LIBSECCOMP_LINK_TYPE` (libseccomp-sys's own settings) win:
//! when either is set this script does nothing.

use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=LIBSECCOMP_LIB_PATH");
    println!("cargo:rerun-if-env-changed=LIBSECCOMP_LINK_TYPE");
    if env::var_os("LIBSECCOMP_LIB_PATH").is_some() || env::var_os("LIBSECCOMP_LINK_TYPE").is_some() {
        return;
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let dirs = library_dirs();
    if dirs.iter().any(|d| d.join("libseccomp.so").exists()) {
        return; // the -dev package (or a local build) provides the link name
    }
    let Some(runtime) = dirs.iter().map(|d| d.join("libseccomp.so.2")).find(|p| p.exists()) else {
        println!(
            "cargo:warning=libseccomp.so.2 not found in {dirs:?}: install libseccomp2 (or set LIBSECCOMP_LIB_PATH)"
        );
        return;
    };
    let Some(out) = env::var_os("OUT_DIR") else {
        println!("cargo:warning=OUT_DIR is not set; cannot provide libseccomp.so");
        return;
    };
    let link_dir = Path::new(&out).join("libseccomp-link");
    let link = link_dir.join("libseccomp.so");
    if let Err(e) = std::fs::create_dir_all(&link_dir) {
        println!("cargo:warning=cannot create {}: {e}", link_dir.display());
        return;
    }
    // A stale link from an earlier build may point elsewhere: replace it.
    let _ = std::fs::remove_file(&link);
    if let Err(e) = std::os::unix::fs::symlink(&runtime, &link) {
        println!("cargo:warning=cannot link {} -> {}: {e}", link.display(), runtime.display());
        return;
    }
    println!("cargo:rustc-link-search=native={}", link_dir.display());
}

/// The directories the system linker searches for the target, multiarch ones first.
fn library_dirs() -> Vec<PathBuf> {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let little = env::var("CARGO_CFG_TARGET_ENDIAN").as_deref() == Ok("little");
    // Debian's multiarch tuple for the target.
    let tuple = match arch.as_str() {
        "" => String::new(),
        "x86" => "i386-linux-gnu".to_owned(),
        "arm" => "arm-linux-gnueabihf".to_owned(),
        "powerpc64" if little => "powerpc64le-linux-gnu".to_owned(),
        arch => format!("{arch}-linux-gnu"),
    };
    let mut dirs = Vec::new();
    if !tuple.is_empty() {
        dirs.push(PathBuf::from(format!("/usr/lib/{tuple}")));
        dirs.push(PathBuf::from(format!("/lib/{tuple}")));
    }
    for d in ["/usr/local/lib", "/usr/lib64", "/lib64", "/usr/lib", "/lib"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}
