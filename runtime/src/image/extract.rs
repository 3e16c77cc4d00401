//! Finding one file — the image's `.wasm` entrypoint — in the layers of an ordinary OCI image.
//!
//! Layers are read top (last) layer first; the first layer that says anything about the target
//! decides: a regular file there is the module (the last tar entry for the path wins within a
//! layer); a whiteout of the file or of a directory above it, an opaque directory above it, or a
//! non-directory in place of a directory above it means the file was deleted. A symlink, hard
//! link or directory at the target path is refused: links are never followed.
//!
//! Tar entry paths are normalised the way containerd does (leading `/` and `./` dropped); an entry
//! whose path has a `..` component never matches anything. Only the target is ever written, to a
//! file the caller names, and never past the size cap.
//!
//! Must not: write any other entry, follow links, or do any I/O but reading the layer and
//! writing `out`. Synchronous: callers run it on a blocking thread.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use serde::Deserialize;

use super::media::LayerCompression;

/// The whiteout prefix (a deleted file `.wh.NAME`) and the opaque-directory marker.
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What one layer says about the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerOutcome {
    /// The target is a regular file of `size` bytes, written to `out`.
    Found { size: u64 },
    /// The target (or a directory above it) was deleted here: lower layers do not count.
    Deleted,
    /// The target is something else than a regular file here (`what`: "a symlink to x", ...).
    NotRegular { what: String },
    /// Nothing about the target: look in the layer below.
    Absent,
}

/// Why a layer could not be scanned.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The target is bigger than the cap.
    #[error("{path} is {size} bytes, more than the limit of {limit} bytes")]
    TooLarge { path: String, size: u64, limit: u64 },
    /// Reading the layer (bad gzip, bad tar) or writing `out`.
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// The image config fields that name the program.
#[derive(Debug, Default, Deserialize)]
struct ImageConfig {
    #[serde(default)]
    config: Option<ContainerConfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
}

/// The program an image config names: `Entrypoint[0]`, else `Cmd[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entrypoint {
    /// As written in the config.
    pub path: String,
    /// Its components from the root, `..`-free (`["app", "main.wasm"]`).
    pub components: Vec<String>,
    /// The config's `Entrypoint` and `Cmd`, for callers that build argv from them.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

/// Why an image config names no usable `.wasm` entrypoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntrypointError {
    #[error("the image config is not valid JSON: {0}")]
    BadJson(String),
    #[error("the image config has neither an Entrypoint nor a Cmd")]
    Missing,
    #[error("the image's entrypoint {0:?} is not a .wasm file")]
    NotWasm(String),
    #[error("the image's entrypoint {0:?} is not a path inside the image")]
    BadPath(String),
}

/// Reads the `.wasm` entrypoint from an OCI (or Docker) image config. A relative entrypoint is
/// taken from `WorkingDir` (default `/`).
pub fn entrypoint(config_json: &[u8]) -> Result<Entrypoint, EntrypointError> {
    let config: ImageConfig =
        serde_json::from_slice(config_json).map_err(|e| EntrypointError::BadJson(e.to_string()))?;
    let c = config.config.unwrap_or_default();
    let entrypoint = c.entrypoint.unwrap_or_default();
    let cmd = c.cmd.unwrap_or_default();
    let path = entrypoint
        .first()
        .or_else(|| cmd.first())
        .cloned()
        .ok_or(EntrypointError::Missing)?;
    if !path.ends_with(".wasm") {
        return Err(EntrypointError::NotWasm(path));
    }
    let full = if path.starts_with('/') {
        path.clone()
    } else {
        format!("{}/{path}", c.working_dir.as_deref().unwrap_or("/"))
    };
    let components =
        components(full.as_bytes()).ok_or_else(|| EntrypointError::BadPath(path.clone()))?;
    if components.is_empty() {
        return Err(EntrypointError::BadPath(path));
    }
    Ok(Entrypoint {
        path,
        components,
        entrypoint,
        cmd,
    })
}

/// The components of a path from the root: empty and `.` components dropped; `None` for a path
/// with a `..` component, a NUL, or a name that is not UTF-8.
pub fn components(path: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for part in path.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return None,
            _ if part.contains(&0) => return None,
            _ => out.push(String::from_utf8(part.to_vec()).ok()?),
        }
    }
    Some(out)
}

/// Scans one layer for `target`; if it is a regular file there, writes it to `out` (created
/// or truncated; removed again when a later entry of the layer replaces the file by something
/// else). At most `limit` bytes are ever written.
pub fn scan_layer(
    layer: impl Read,
    compression: LayerCompression,
    target: &[String],
    out: &Path,
    limit: u64,
) -> Result<LayerOutcome, ExtractError> {
    scan_tar(compression.decoder(layer)?, target, out, limit)
}

fn scan_tar(
    reader: impl Read,
    target: &[String],
    out: &Path,
    limit: u64,
) -> Result<LayerOutcome, ExtractError> {
    let display = format!("/{}", target.join("/"));
    let mut archive = tar::Archive::new(reader);
    // What the last entry at the target path was, if any.
    let mut at_target: Option<LayerOutcome> = None;
    let mut deleted = false;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let Some(path) = components(&entry.path_bytes()) else {
            continue;
        };
        let Some((name, dir)) = path.split_last() else {
            continue;
        };
        let kind = entry.header().entry_type();
        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) {
            if name == OPAQUE_MARKER {
                // Everything below `dir` in lower layers is hidden.
                if is_proper_prefix(dir, target) {
                    deleted = true;
                }
            } else if is_prefix(dir, target)
                && target.get(dir.len()).map(String::as_str) == Some(hidden)
            {
                // `.wh.NAME` deletes NAME: the target, or a directory above it.
                deleted = true;
            }
            continue;
        }
        if path.as_slice() == target {
            at_target = Some(match kind {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let size = entry.header().size()?;
                    if size > limit {
                        return Err(ExtractError::TooLarge {
                            path: display,
                            size,
                            limit,
                        });
                    }
                    let written = copy_capped(&mut entry, out, limit, &display)?;
                    LayerOutcome::Found { size: written }
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let link = entry
                        .link_name_bytes()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                        .unwrap_or_default();
                    let what = if kind == tar::EntryType::Symlink {
                        "a symlink"
                    } else {
                        "a hard link"
                    };
                    LayerOutcome::NotRegular {
                        what: format!("{what} to {link} (skiff does not follow links)"),
                    }
                }
                tar::EntryType::Directory => LayerOutcome::NotRegular {
                    what: "a directory".into(),
                },
                other => LayerOutcome::NotRegular {
                    what: format!("a tar entry of type {other:?}"),
                },
            });
        } else if is_proper_prefix(&path, target) && kind != tar::EntryType::Directory {
            // A file or a link where a directory above the target should be: the target is not
            // reachable from here down (links are not followed).
            deleted = true;
        }
    }
    let outcome = match at_target {
        Some(found) => found,
        None if deleted => LayerOutcome::Deleted,
        None => LayerOutcome::Absent,
    };
    if !matches!(outcome, LayerOutcome::Found { .. }) {
        match std::fs::remove_file(out) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(outcome)
}

/// Copies `entry` to `out`, failing past `limit` bytes whatever the header said.
fn copy_capped(
    entry: &mut impl Read,
    out: &Path,
    limit: u64,
    display: &str,
) -> Result<u64, ExtractError> {
    let mut file = File::create(out)?;
    let written = io::copy(&mut entry.take(limit.saturating_add(1)), &mut file)?;
    if written > limit {
        drop(file);
        let _ = std::fs::remove_file(out);
        return Err(ExtractError::TooLarge {
            path: display.to_string(),
            size: written,
            limit,
        });
    }
    file.flush()?;
    Ok(written)
}

fn is_prefix(prefix: &[String], path: &[String]) -> bool {
    path.len() >= prefix.len() && path[..prefix.len()] == *prefix
}

fn is_proper_prefix(prefix: &[String], path: &[String]) -> bool {
    path.len() > prefix.len() && is_prefix(prefix, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression as Level;
    use flate2::write::GzEncoder;

    /// One entry of a test layer.
    enum E<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Symlink(&'a str, &'a str),
        HardLink(&'a str, &'a str),
    }

    /// A tar built with raw header names, so that `..` and absolute paths get through.
    fn layer(entries: &[E]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for e in entries {
            let mut h = tar::Header::new_gnu();
            let (name, kind, data, link): (&str, _, &[u8], Option<&str>) = match e {
                E::File(n, d) => (n, tar::EntryType::Regular, d, None),
                E::Dir(n) => (n, tar::EntryType::Directory, b"", None),
                E::Symlink(n, t) => (n, tar::EntryType::Symlink, b"", Some(t)),
                E::HardLink(n, t) => (n, tar::EntryType::Link, b"", Some(t)),
            };
            h.set_entry_type(kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            let raw = h.as_old_mut();
            raw.name[..name.len()].copy_from_slice(name.as_bytes());
            if let Some(t) = link {
                raw.linkname[..t.len()].copy_from_slice(t.as_bytes());
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = GzEncoder::new(Vec::new(), Level::fast());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn target(path: &str) -> Vec<String> {
        components(path.as_bytes()).unwrap()
    }

    fn scan(entries: &[E], path: &str) -> (LayerOutcome, Option<Vec<u8>>) {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let outcome = scan_layer(
            &layer(entries)[..],
            LayerCompression::None,
            &target(path),
            &out,
            1024,
        )
        .unwrap();
        (outcome, std::fs::read(&out).ok())
    }

    /// Layers bottom first; the top one that decides wins, as the store reads them.
    fn resolve(layers: &[Vec<E>], path: &str) -> (LayerOutcome, Option<Vec<u8>>) {
        for entries in layers.iter().rev() {
            let (outcome, bytes) = scan(entries, path);
            if outcome != LayerOutcome::Absent {
                return (outcome, bytes);
            }
        }
        (LayerOutcome::Absent, None)
    }

    #[test]
    fn finds_the_file_in_any_spelling_of_its_path() {
        for name in ["app.wasm", "./app.wasm", "/app.wasm", ".//app.wasm"] {
            let (outcome, bytes) = scan(&[E::File(name, b"\0asm-1")], "/app.wasm");
            assert_eq!(outcome, LayerOutcome::Found { size: 6 }, "{name}");
            assert_eq!(bytes.as_deref(), Some(&b"\0asm-1"[..]));
        }
        let (outcome, _) = scan(
            &[E::Dir("bin/"), E::File("bin/x.wasm", b"x")],
            "/bin/x.wasm",
        );
        assert_eq!(outcome, LayerOutcome::Found { size: 1 });
    }

    #[test]
    fn gzip_and_zstd_layers() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let plain = layer(&[E::File("a/b.wasm", b"\0asm")]);
        let zstd = zstd::encode_all(&plain[..], 3).unwrap();
        for (blob, compression) in [
            (gzip(&plain), LayerCompression::Gzip),
            (zstd, LayerCompression::Zstd),
        ] {
            let outcome =
                scan_layer(&blob[..], compression, &target("/a/b.wasm"), &out, 1024).unwrap();
            assert_eq!(outcome, LayerOutcome::Found { size: 4 }, "{compression:?}");
            assert_eq!(std::fs::read(&out).unwrap(), b"\0asm");
            std::fs::remove_file(&out).unwrap();
            // A tar that is not compressed so fails clearly rather than matching nothing.
            assert!(
                scan_layer(&plain[..], compression, &target("/a/b.wasm"), &out, 1024).is_err(),
                "{compression:?}"
            );
        }
    }

    #[test]
    fn last_layer_and_last_entry_win() {
        let layers = vec![
            vec![E::File("app.wasm", b"old")],
            vec![E::File("other", b"x")],
            vec![
                E::File("app.wasm", b"first"),
                E::File("app.wasm", b"second"),
            ],
        ];
        let (outcome, bytes) = resolve(&layers, "/app.wasm");
        assert_eq!(outcome, LayerOutcome::Found { size: 6 });
        assert_eq!(bytes.as_deref(), Some(&b"second"[..]));
        // Only in a lower layer: found there.
        let (_, bytes) = resolve(&layers[..2], "/app.wasm");
        assert_eq!(bytes.as_deref(), Some(&b"old"[..]));
    }

    #[test]
    fn whiteouts_delete_the_file_or_a_directory_above_it() {
        let base = || vec![E::File("opt/app/main.wasm", b"base")];
        for top in [
            vec![E::File("opt/app/.wh.main.wasm", b"")],
            vec![E::File("opt/.wh.app", b"")],
            vec![E::File(".wh.opt", b"")],
            vec![E::Dir("opt/app/"), E::File("opt/app/.wh..wh..opq", b"")],
            vec![E::File("opt/.wh..wh..opq", b"")],
            // A file where a directory above the target was.
            vec![E::File("opt", b"not a dir")],
            vec![E::Symlink("opt/app", "/elsewhere")],
        ] {
            let (outcome, bytes) = resolve(&[base(), top], "/opt/app/main.wasm");
            assert_eq!(outcome, LayerOutcome::Deleted);
            assert_eq!(bytes, None);
        }
        // Whiteouts of siblings or of other paths change nothing.
        for top in [
            vec![E::File("opt/app/.wh.other.wasm", b"")],
            vec![E::File("opt/app/main.wasm/.wh..wh..opq", b"")],
            vec![E::File(".wh.op", b"")],
            vec![E::File("opt/app/main.wasm.wh.", b"")],
        ] {
            let (outcome, bytes) = resolve(&[base(), top], "/opt/app/main.wasm");
            assert_eq!(outcome, LayerOutcome::Found { size: 4 });
            assert_eq!(bytes.as_deref(), Some(&b"base"[..]));
        }
        // An opaque directory keeps what its own layer puts in it.
        let top = vec![
            E::File("opt/app/.wh..wh..opq", b""),
            E::File("opt/app/main.wasm", b"new"),
        ];
        let (_, bytes) = resolve(&[base(), top], "/opt/app/main.wasm");
        assert_eq!(bytes.as_deref(), Some(&b"new"[..]));
        // Deleted, then added again above.
        let layers = vec![
            base(),
            vec![E::File("opt/.wh.app", b"")],
            vec![E::File("opt/app/main.wasm", b"again")],
        ];
        let (_, bytes) = resolve(&layers, "/opt/app/main.wasm");
        assert_eq!(bytes.as_deref(), Some(&b"again"[..]));
    }

    #[test]
    fn links_and_directories_at_the_target_are_refused() {
        for (entries, what) in [
            (
                vec![E::Symlink("app.wasm", "/etc/shadow")],
                "a symlink to /etc/shadow",
            ),
            (
                vec![E::HardLink("app.wasm", "etc/passwd")],
                "a hard link to etc/passwd",
            ),
            (vec![E::Dir("app.wasm/")], "a directory"),
            // The last entry wins: a file replaced by a link is a link.
            (
                vec![E::File("app.wasm", b"\0asm"), E::Symlink("app.wasm", "x")],
                "a symlink to x",
            ),
        ] {
            let (outcome, bytes) = scan(&entries, "/app.wasm");
            match outcome {
                LayerOutcome::NotRegular { what: w } => assert!(w.starts_with(what), "{w}"),
                other => panic!("{other:?}"),
            }
            assert_eq!(bytes, None, "nothing is left behind");
        }
    }

    #[test]
    fn dot_dot_entries_never_match_and_nothing_else_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let out = root.join("out");
        let entries = [
            E::File("../escape.wasm", b"evil"),
            E::File("x/../app.wasm", b"evil"),
            E::File("/../app.wasm", b"evil"),
            E::File("other.wasm", b"other"),
            E::Symlink("link", "/"),
            E::File("link/app.wasm", b"via link"),
        ];
        let outcome = scan_layer(
            &layer(&entries)[..],
            LayerCompression::None,
            &target("/app.wasm"),
            &out,
            64,
        )
        .unwrap();
        assert_eq!(outcome, LayerOutcome::Absent);
        // Nothing was written anywhere: not the target, not the escapes.
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
        assert!(!dir.path().join("escape.wasm").exists());
    }

    #[test]
    fn size_is_capped() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let big = vec![1u8; 100];
        let err = scan_layer(
            &layer(&[E::File("app.wasm", &big)])[..],
            LayerCompression::None,
            &target("/app.wasm"),
            &out,
            99,
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                ExtractError::TooLarge {
                    size: 100,
                    limit: 99,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!out.exists());
        // Exactly at the cap is fine.
        let outcome = scan_layer(
            &layer(&[E::File("app.wasm", &big)])[..],
            LayerCompression::None,
            &target("/app.wasm"),
            &out,
            100,
        )
        .unwrap();
        assert_eq!(outcome, LayerOutcome::Found { size: 100 });
    }

    #[test]
    fn entrypoints() {
        let cfg = |c: &str| format!(r#"{{"architecture":"amd64","os":"linux","config":{c}}}"#);
        let e = entrypoint(cfg(r#"{"Entrypoint":["/probe.wasm","x"],"Cmd":["y"]}"#).as_bytes())
            .unwrap();
        assert_eq!(e.path, "/probe.wasm");
        assert_eq!(e.components, ["probe.wasm"]);
        assert_eq!(e.entrypoint, ["/probe.wasm", "x"]);
        assert_eq!(e.cmd, ["y"]);
        // Cmd when there is no Entrypoint; relative paths from WorkingDir.
        let e =
            entrypoint(cfg(r#"{"Cmd":["bin/app.wasm"],"WorkingDir":"/srv"}"#).as_bytes()).unwrap();
        assert_eq!(e.components, ["srv", "bin", "app.wasm"]);
        let e = entrypoint(cfg(r#"{"Entrypoint":[],"Cmd":["./app.wasm"]}"#).as_bytes()).unwrap();
        assert_eq!(e.components, ["app.wasm"]);

        assert_eq!(
            entrypoint(cfg(r#"{"Cmd":["/bin/sh"]}"#).as_bytes()),
            Err(EntrypointError::NotWasm("/bin/sh".into()))
        );
        assert_eq!(
            entrypoint(cfg("{}").as_bytes()),
            Err(EntrypointError::Missing)
        );
        assert_eq!(entrypoint(b"{}"), Err(EntrypointError::Missing));
        assert!(matches!(
            entrypoint(b"nope"),
            Err(EntrypointError::BadJson(_))
        ));
        for bad in ["/../../etc/x.wasm", "../x.wasm", "/a/../x.wasm"] {
            let json = cfg(&format!(r#"{{"Entrypoint":["{bad}"]}}"#));
            assert_eq!(
                entrypoint(json.as_bytes()),
                Err(EntrypointError::BadPath(bad.into())),
                "{bad}"
            );
        }
    }
}
