//! `features`: what this runtime implements, as the OCI runtime spec's features
//! document describes it (engines read it to decide what to ask for). Every list
//! is what the code accepts; what it refuses is left out or marked disabled.

/// Architectures a profile may name; [`features`] lists those this build's
/// libseccomp takes beside the native one (it refuses another byte order).
const ARCHS: &[&str] = &[
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
];

/// The features document.
pub fn features() -> serde_json::Value {
    let archs: Vec<&str> = ARCHS
        .iter()
        .copied()
        .filter(|a| {
            let p =
                serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [a], "syscalls": []});
            sandfs_confine::seccomp::compile_json(&p).is_ok()
        })
        .collect();
    let caps = sandfs_confine::caps::all_names();
    let mut mount_options: Vec<&str> = sandfs_container::plan::GENERIC.to_vec();
    mount_options.extend(sandfs_container::plan::TMPFS_KEEP);
    let v2 = matches!(sandfs_confine::cgroup::detect(), Ok(sandfs_confine::cgroup::CgroupVersion::V2));
    serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": mount_options,
        "linux": {
            // A user namespace is always made (joining one by path is refused);
            // the rest are made or joined as the spec says.
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps,
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false},
            "seccomp": {
                "enabled": true,
                "actions": [
                    "SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                    "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"
                ],
                "operators": [
                    "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT",
                    "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"
                ],
                "archs": archs,
                "knownFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"
                ],
                // WAIT_KILLABLE_RECV is known but dropped with a warning: it only
                // changes a notifying filter, which sandfs does not install.
                "supportedFlags": [
                    "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"
                ]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": false},
            "mountExtensions": {"idmap": {"enabled": false}}
        },
        "annotations": {
            "io.github.sandfs.version": env!("CARGO_PKG_VERSION"),
            "io.github.sandfs.cgroup.devices": if v2 { "not enforced on v2 (see README)" } else { "enforced (v1)" },
            "io.github.sandfs.user-namespace": "always: root in the container is not root on the host"
        }
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_listed_seccomp_name_compiles_and_every_capability_is_known() {
        let f = super::features();
        for a in f["linux"]["seccomp"]["actions"].as_array().unwrap() {
            let profile = serde_json::json!({"defaultAction": a, "syscalls": []});
            assert!(sandfs_confine::seccomp::compile_json(&profile).is_ok(), "{a} is listed but refused");
        }
        for arch in f["linux"]["seccomp"]["archs"].as_array().unwrap() {
            let profile = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch], "syscalls": []});
            assert!(sandfs_confine::seccomp::compile_json(&profile).is_ok(), "{arch} is listed but refused");
        }
        let archs = f["linux"]["seccomp"]["archs"].as_array().unwrap();
        #[cfg(target_arch = "x86_64")]
        for native in ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"] {
            assert!(archs.iter().any(|a| a == native), "{native} missing from {archs:?}");
        }
        assert!(archs.len() < super::ARCHS.len(), "an arch of the other byte order was listed: {archs:?}");
        let caps = f["linux"]["capabilities"].as_array().unwrap();
        assert!(caps.len() >= 38, "{caps:?}");
        assert!(caps.iter().any(|c| c == "CAP_SYS_ADMIN"));
        for c in caps {
            let c = c.as_str().unwrap();
            assert!(sandfs_confine::caps::by_name(c).is_some(), "{c} is listed but refused");
        }
    }
}
