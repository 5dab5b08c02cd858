//! Which sysctls a container may set: only those the kernel keeps per namespace
//! (ipc, uts, network when the container has its own), as runc allows. Anything
//! else would change the host and is refused before the run starts.

/// Whether sysctl `key` may be written inside the sandbox's namespaces; `own`
/// lists the namespaces (OCI type names) the sandbox does not share with the host.
pub fn check(key: &str, own: &[&str]) -> Result<(), String> {
    let has = |t: &str| own.contains(&t);
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if key.contains("..") || key.contains('/') || key.is_empty() {
        return Err(format!("linux.sysctl {key:?}: not a sysctl name"));
    }
    let needs = if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        "ipc"
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        "uts"
    } else if key.starts_with("net.") {
        "network"
    } else {
        return Err(format!("linux.sysctl {key:?}: not namespaced; setting it would change the host"));
    };
    if has(needs) {
        return Ok(());
    }
    Err(format!("linux.sysctl {key:?}: the container shares the host's {needs} namespace"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_pass() {
        let all = ["ipc", "uts", "network"];
        assert!(check("kernel.shmmax", &["ipc"]).is_ok());
        assert!(check("kernel.shmmax", &["network"]).unwrap_err().contains("host's ipc"));
        assert!(check("fs.mqueue.msg_max", &["ipc"]).is_ok());
        assert!(check("net.ipv4.ip_forward", &["network"]).is_ok());
        assert!(check("net.ipv4.ip_forward", &["ipc"]).unwrap_err().contains("host's network"));
        assert!(check("kernel.hostname", &["uts"]).is_ok());
        assert!(check("kernel.core_pattern", &all).unwrap_err().contains("not namespaced"));
        assert!(check("vm.overcommit_memory", &all).is_err());
        assert!(check("net/../kernel/x", &all).is_err());
    }
}
