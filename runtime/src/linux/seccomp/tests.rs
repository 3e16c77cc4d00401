use serde_json::json;

use super::bpf_eval::{Data, run_all};
use super::*;

const R_ALLOW: u32 = 0x7fff_0000;
const R_EPERM: u32 = 0x0005_0000 | nix::libc::EPERM as u32;
const R_ENOSYS: u32 = 0x0005_0000 | nix::libc::ENOSYS as u32;

fn filters(caps: &[&str]) -> Filters {
    let profile: LinuxSeccomp =
        serde_json::from_value(runtime_default(caps)).expect("an OCI seccomp profile");
    compile_profile(&profile).expect("compiles")
}

/// What the filters answer to syscall `nr` with `args` on this architecture.
fn answer(filters: &Filters, nr: i64, args: [u64; 6]) -> u32 {
    let arch = match std::env::consts::ARCH {
        "x86_64" => 62 | 0x8000_0000 | 0x4000_0000,
        "aarch64" => 183 | 0x8000_0000 | 0x4000_0000,
        other => panic!("architecture {other}"),
    };
    run_all(
        filters,
        &Data {
            nr: nr as u32,
            arch,
            args,
        },
    )
}

#[test]
fn the_default_profile_is_an_allow_list() {
    let f = filters(crate::linux::default_spec::DEFAULT_CAPS);
    use nix::libc::*;
    for nr in [
        SYS_read,
        SYS_write,
        SYS_openat,
        SYS_execve,
        SYS_exit_group,
        SYS_futex,
    ] {
        assert_eq!(answer(&f, nr, [0; 6]), R_ALLOW, "syscall {nr}");
    }
    for nr in [
        SYS_io_uring_setup,
        SYS_io_uring_enter,
        SYS_keyctl,
        SYS_add_key,
        SYS_unshare,
        SYS_setns,
        SYS_mount,
        SYS_bpf,
        SYS_userfaultfd,
        SYS_perf_event_open,
        SYS_kexec_load,
        SYS_init_module,
        SYS_open_by_handle_at,
        SYS_process_vm_readv,
    ] {
        assert_eq!(answer(&f, nr, [0; 6]), R_EPERM, "syscall {nr}");
    }
    // An unknown (future) call is refused too: that is what an allow-list is for.
    assert_eq!(answer(&f, 1000, [0; 6]), R_EPERM);
    // clone: threads and forks yes, new namespaces no; clone3 falls back to clone.
    let thread = (CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD) as u64;
    assert_eq!(answer(&f, SYS_clone, [thread, 0, 0, 0, 0, 0]), R_ALLOW);
    let newuser = (CLONE_NEWUSER as u64) | SIGCHLD as u64;
    assert_eq!(answer(&f, SYS_clone, [newuser, 0, 0, 0, 0, 0]), R_EPERM);
    assert_eq!(answer(&f, SYS_clone3, [0; 6]), R_ENOSYS);
    // Sockets of every family but vsock.
    assert_eq!(
        answer(&f, SYS_socket, [AF_INET as u64, 1, 0, 0, 0, 0]),
        R_ALLOW
    );
    assert_eq!(
        answer(&f, SYS_socket, [AF_VSOCK as u64, 1, 0, 0, 0, 0]),
        R_EPERM
    );
    assert_eq!(
        answer(&f, SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
        R_ALLOW
    );
    assert_eq!(
        answer(&f, SYS_personality, [0x0040_0000, 0, 0, 0, 0, 0]),
        R_EPERM
    );
}

#[test]
fn capabilities_open_their_calls() {
    use nix::libc::*;
    let plain = filters(crate::linux::default_spec::DEFAULT_CAPS);
    let mut caps = crate::linux::default_spec::DEFAULT_CAPS.to_vec();
    caps.extend(["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]);
    let admin = filters(&caps);
    for nr in [SYS_mount, SYS_unshare, SYS_setns, SYS_process_vm_readv] {
        assert_eq!(answer(&plain, nr, [0; 6]), R_EPERM, "syscall {nr}");
        assert_eq!(answer(&admin, nr, [0; 6]), R_ALLOW, "syscall {nr}");
    }
    let newuser = CLONE_NEWUSER as u64;
    assert_eq!(answer(&admin, SYS_clone, [newuser, 0, 0, 0, 0, 0]), R_ALLOW);
    assert_eq!(answer(&admin, SYS_clone3, [0; 6]), R_ALLOW);
    // Nothing opens io_uring or keyrings.
    assert_eq!(answer(&admin, SYS_io_uring_setup, [0; 6]), R_EPERM);
    assert_eq!(answer(&admin, SYS_keyctl, [0; 6]), R_EPERM);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_numbers_are_refused_by_every_profile() {
    use nix::libc::*;
    let x32 = |nr: i64| nr | i64::from(X32_SYSCALL_BIT);
    let f = filters(crate::linux::default_spec::DEFAULT_CAPS);
    assert_eq!(answer(&f, SYS_getpid, [0; 6]), R_ALLOW);
    assert_eq!(answer(&f, x32(SYS_getpid), [0; 6]), R_EPERM);
    // A permissive profile (default allow, one call denied): its x32 twin is refused as well,
    // and so is every other x32 number.
    let profile: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO"}]
    }))
    .expect("profile");
    let open = compile_profile(&profile).expect("compiles");
    assert_eq!(answer(&open, SYS_keyctl, [0; 6]), R_EPERM);
    assert_eq!(answer(&open, SYS_read, [0; 6]), R_ALLOW);
    assert_eq!(answer(&open, x32(SYS_keyctl), [0; 6]), R_EPERM);
    assert_eq!(answer(&open, x32(SYS_read), [0; 6]), R_EPERM);
    // The guard alone: only the x32 range.
    let guard = vec![x32_guard().expect("x86_64")];
    assert_eq!(answer(&guard, 0x3fff_ffff, [0; 6]), R_ALLOW);
    assert_eq!(answer(&guard, 0x4000_0000, [0; 6]), R_EPERM);
}

#[test]
fn an_allow_list_gets_a_base_filter() {
    let profile: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "write", "exit_group", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]
    }))
    .expect("profile");
    let guard = usize::from(x32_guard().is_some());
    assert_eq!(
        compile_profile(&profile).expect("compiles").len(),
        2 + guard
    );
    let bad: LinuxSeccomp = serde_json::from_value(json!({
        "defaultAction": "SCMP_ACT_NOTIFY"
    }))
    .expect("profile");
    assert!(compile_profile(&bad).is_err());
}
