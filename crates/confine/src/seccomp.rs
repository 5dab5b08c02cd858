//! Seccomp filters: an OCI `linux.seccomp` profile, or sandfs's default profile,
//! compiled to a kernel filter and installed last before exec.
