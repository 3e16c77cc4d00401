//! The one rule for a preopen's guest name, as wasmtime's `--dir HOST::GUEST` takes it: an
//! absolute path (`/data`), or a relative name (`data`, `out/logs`, or `.`, the directory a
//! WASI program's relative paths resolve in). Every component of it is a real name: no `..`
//! (a guest must not be led to read `../x` as somewhere else), no `.` inside, no empty ones
//! (`a//b`, a trailing `/`), no NUL. The executor checks it for every preopen, whoever wrote
//! the spec (the agent's bundles, a plain containerd's).
//!
//! Must not: touch the file system.

/// Whether `guest` may name a preopen; the error says why not.
pub fn check_guest_path(guest: &str) -> Result<(), String> {
    if guest.is_empty() {
        return Err("empty guest path".into());
    }
    if guest.contains('\0') {
        return Err("contains a NUL byte".into());
    }
    if guest == "/" || guest == "." {
        return Ok(());
    }
    let relative = guest.strip_prefix('/').unwrap_or(guest);
    for part in relative.split('/') {
        match part {
            "" => return Err("has an empty component (a doubled or trailing '/')".into()),
            "." => {
                return Err(
                    "has a '.' component (only \".\" alone names the current directory)".into(),
                );
            }
            ".." => return Err("has a '..' component".into()),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_and_relative_names() {
        for ok in ["/", "/data", "/a/b", ".", "data", "out/logs", "..x", "x.."] {
            assert_eq!(check_guest_path(ok), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("", "empty"),
            ("..", "'..'"),
            ("../x", "'..'"),
            ("/a/../b", "'..'"),
            ("a/..", "'..'"),
            ("./a", "'.' component"),
            ("a/./b", "'.' component"),
            ("a//b", "empty component"),
            ("data/", "empty component"),
            ("/data/", "empty component"),
            ("a\0b", "NUL"),
        ] {
            let e = check_guest_path(bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
        }
    }
}
