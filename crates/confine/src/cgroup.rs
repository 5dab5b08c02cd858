//! The sandbox's cgroup: program, FUSE server and gofers in one group of their own,
//! with the spec's resource limits, on cgroup v2 and v1/hybrid hosts.
