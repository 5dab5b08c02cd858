//! Which sysctls a container may set: only those the kernel keeps per namespace
//! (ipc, uts, network when the container has its own), as runc allows. Anything
//! else would change the host and is refused before the run starts.

/// Whether sysctl `key` may be written inside the sandbox's namespaces;
/// `own_network`: the sandbox has its own network namespace.
pub fn check(key: &str, own_network: bool) -> Result<(), String> {
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
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        return Ok(());
    }
    if key == "kernel.hostname" || key == "kernel.domainname" {
        return Ok(());
    }
    if key.starts_with("net.") {
        if own_network {
            return Ok(());
        }
        return Err(format!("linux.sysctl {key:?}: the container shares the host's network namespace"));
    }
    Err(format!("linux.sysctl {key:?}: not namespaced; setting it would change the host"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_namespaced_sysctls_pass() {
        assert!(check("kernel.shmmax", false).is_ok());
        assert!(check("fs.mqueue.msg_max", false).is_ok());
        assert!(check("net.ipv4.ip_forward", true).is_ok());
        assert!(check("net.ipv4.ip_forward", false).unwrap_err().contains("host's network"));
        assert!(check("kernel.core_pattern", true).unwrap_err().contains("not namespaced"));
        assert!(check("vm.overcommit_memory", true).is_err());
        assert!(check("net/../kernel/x", true).is_err());
    }
}
