//! From a file on disk to a [`Prepared`] module or component, ready to instantiate.
//!
//! Owns [`WasmEngine::prepare`]: read and hash the file (blocking: `spawn_blocking`), accept
//! `.wat` text, tell a core module from a component by its header, compile or load the cached
//! artifact (blocking), check that it is a command (`_start`, or an export of `wasi:cli/run`
//! at 0.2.x or 0.3.x: [`super::p3::command_target`]) and link it against WASI (an unknown import
//! fails here, named). Must not: create stores or run guests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{ExternType, InstancePre, Module};
use wasmtime_wasi::p2::bindings::CommandPre;

use super::cache::{self, FileStamp};
use super::engine::{EngineInner, WasmEngine};
use super::error::{WasmError, chain};
use super::http::handler::Handler;
use super::p3::{self, Wasi};
use super::state::{ComponentState, ModuleState};

/// What a Wasm binary is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModuleKind {
    /// A core module: a WASI preview 1 command.
    Module,
    /// A component: `wasi:cli/command` (WASI 0.2 or 0.3, [`Prepared::wasi`]).
    Component,
}

/// Where [`WasmEngine::prepare`] found the compiled code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Compiled now (and written to the disk cache).
    Compiled,
    /// Loaded from the disk cache, without compiling.
    DiskCache,
    /// Already prepared in this process.
    Memory,
}

/// A module or component, compiled and linked: instantiating it is all that is left.
#[derive(Clone)]
pub struct Prepared {
    inner: Arc<PreparedInner>,
}

struct PreparedInner {
    digest: String,
    kind: ModuleKind,
    path: PathBuf,
    pre: Pre,
}

/// The linked code of either kind.
pub(crate) enum Pre {
    Module(InstancePre<ModuleState>),
    Component(CommandPre<ComponentState>),
    /// A WASI 0.3 command ([`super::p3`]).
    P3Command(wasmtime_wasi::p3::bindings::CommandPre<ComponentState>),
    /// A function: a `wasi:http` handler, served per request ([`super::http`]).
    Function(Handler),
}

/// What a prepared module or component does when started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Runs its entry point (`_start`, `wasi:cli/run`) to its end.
    Command,
    /// Serves HTTP requests with its `wasi:http/incoming-handler` export, an instance per request.
    Function,
}

/// Compiled, not yet linked.
pub(crate) enum Code {
    Module(Module),
    Component(Component),
}

impl Prepared {
    /// `sha256:<hex>` of the file's bytes.
    pub fn digest(&self) -> &str {
        &self.inner.digest
    }

    pub fn kind(&self) -> ModuleKind {
        self.inner.kind
    }

    /// The WASI it was linked against.
    pub fn wasi(&self) -> Wasi {
        match self.inner.pre {
            Pre::Module(_) => Wasi::Preview1,
            Pre::Component(_) => Wasi::P2,
            Pre::P3Command(_) => Wasi::P3,
            Pre::Function(Handler::P2(_)) => Wasi::P2,
            Pre::Function(Handler::P3(_)) => Wasi::P3,
        }
    }

    /// Whether it is a command or a function.
    pub fn role(&self) -> Role {
        match self.inner.pre {
            Pre::Function(_) => Role::Function,
            _ => Role::Command,
        }
    }

    /// The path it was first prepared from.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(crate) fn pre(&self) -> &Pre {
        &self.inner.pre
    }

    /// The component, if it is one (its imports are checked against a spec's grants).
    pub(crate) fn component(&self) -> Option<&Component> {
        match &self.inner.pre {
            Pre::Module(_) => None,
            Pre::Component(pre) => Some(pre.instance_pre().component()),
            Pre::P3Command(pre) => Some(pre.instance_pre().component()),
            Pre::Function(handler) => Some(handler.component()),
        }
    }
}

/// The result of [`WasmEngine::prepare`].
#[derive(Clone)]
pub struct PrepareOutcome {
    pub prepared: Prepared,
    pub origin: Origin,
    /// Time spent in this call.
    pub elapsed: Duration,
}

impl WasmEngine {
    /// Compiles the module or component at `path`, or finds it in the memory or disk cache.
    pub async fn prepare(&self, path: &Path) -> Result<PrepareOutcome, WasmError> {
        let started = Instant::now();
        let (digest, bytes) = self.read_digest(path).await?;
        let slot = self.inner.cache.slot(&digest);
        if let Some(prepared) = slot.get() {
            return Ok(PrepareOutcome {
                prepared: prepared.clone(),
                origin: Origin::Memory,
                elapsed: started.elapsed(),
            });
        }
        let mut origin = Origin::Memory;
        let prepared = slot
            .get_or_try_init(|| async {
                let inner = self.inner.clone();
                let path = path.to_path_buf();
                let digest = digest.clone();
                let (prepared, o) = tokio::task::spawn_blocking(move || {
                    let bytes = match bytes {
                        Some(b) => b,
                        None => read_file(&path)?.1,
                    };
                    compile_and_link(&inner, path, digest, bytes)
                })
                .await
                .map_err(|e| WasmError::Engine(format!("compile task: {e}")))??;
                origin = o;
                Ok::<_, WasmError>(prepared)
            })
            .await?
            .clone();
        Ok(PrepareOutcome {
            prepared,
            origin,
            elapsed: started.elapsed(),
        })
    }

    /// The digest of the file, and its bytes if they had to be read for it: one blocking task
    /// (each hop to the blocking pool and back costs a wake-up on both sides).
    async fn read_digest(&self, path: &Path) -> Result<(String, Option<Vec<u8>>), WasmError> {
        let inner = self.inner.clone();
        let path = path.to_path_buf();
        tokio::task::spawn_blocking(move || {
            let meta = std::fs::metadata(&path).map_err(|e| WasmError::read(&path, e))?;
            if let Some(d) = inner.cache.known_digest(&path, FileStamp::of(&meta)) {
                return Ok((d, None));
            }
            let (stamp, bytes) = read_file(&path)?;
            let digest = cache::digest(&bytes);
            inner.cache.remember_digest(&path, stamp, &digest);
            Ok((digest, Some(bytes)))
        })
        .await
        .map_err(|e| WasmError::Engine(format!("read task: {e}")))?
    }
}

/// Largest module file accepted (guards the host against a runaway file).
const MAX_MODULE_BYTES: u64 = 512 << 20;

/// The file's identity and bytes; blocking. Only a regular file is read (a device such as
/// `/dev/zero`, a FIFO or a directory is refused before any byte is read, and a FIFO is opened
/// without blocking), and never more than [`MAX_MODULE_BYTES`] of it, whatever its size said when
/// it was opened: a file growing under the reader is cut short and refused.
fn read_file(path: &Path) -> Result<(FileStamp, Vec<u8>), WasmError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| WasmError::read(path, e))?;
    let meta = file.metadata().map_err(|e| WasmError::read(path, e))?;
    if !meta.is_file() {
        let what = if meta.is_dir() {
            "is a directory"
        } else {
            "is not a regular file (a device, FIFO or socket)"
        };
        return Err(WasmError::read(path, std::io::Error::other(what)));
    }
    let too_big = |len: u64| WasmError::Invalid {
        path: path.to_path_buf(),
        message: format!(
            "{len} bytes is more than the {} MiB a module may have",
            MAX_MODULE_BYTES >> 20
        ),
    };
    if meta.len() > MAX_MODULE_BYTES {
        return Err(too_big(meta.len()));
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    (&file)
        .take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| WasmError::read(path, e))?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(too_big(bytes.len() as u64));
    }
    Ok((FileStamp::of(&meta), bytes))
}

/// Binary bytes of a `.wasm` or `.wat` file.
fn to_binary<'a>(path: &Path, bytes: &'a [u8]) -> Result<std::borrow::Cow<'a, [u8]>, WasmError> {
    if bytes.starts_with(b"\0asm") {
        return Ok(bytes.into());
    }
    let invalid = |message: String| WasmError::Invalid {
        path: path.to_path_buf(),
        message,
    };
    match std::str::from_utf8(bytes) {
        Ok(text) => wat::parse_str(text)
            .map(Into::into)
            // Only the first line: the rest quotes the file, which must not reach pod status
            // (a `file:` image may name any file on the node).
            .map_err(|e| {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                invalid(format!("not a wasm binary, and as wat text: {first}"))
            }),
        Err(_) => Err(invalid(
            "not a WebAssembly binary (bad magic number) nor wat text".to_string(),
        )),
    }
}

/// Core module or component, from the binary header (`\0asm`, version, layer).
fn kind_of(path: &Path, binary: &[u8]) -> Result<ModuleKind, WasmError> {
    match binary.get(4..8) {
        Some([1, 0, 0, 0]) => Ok(ModuleKind::Module),
        Some([_, _, 1, 0]) => Ok(ModuleKind::Component),
        _ => Err(WasmError::Invalid {
            path: path.to_path_buf(),
            message: "unknown binary version or layer".to_string(),
        }),
    }
}

/// Compiles (or loads) and links; blocking.
fn compile_and_link(
    inner: &EngineInner,
    path: PathBuf,
    digest: String,
    bytes: Vec<u8>,
) -> Result<(Prepared, Origin), WasmError> {
    let binary = to_binary(&path, &bytes)?;
    let kind = kind_of(&path, &binary)?;
    let (code, origin) = load_or_compile(inner, &path, &digest, kind, &binary)?;
    let pre = link(inner, &path, code)?;
    Ok((
        Prepared {
            inner: Arc::new(PreparedInner {
                digest,
                kind,
                path,
                pre,
            }),
        },
        origin,
    ))
}

fn load_or_compile(
    inner: &EngineInner,
    path: &Path,
    digest: &str,
    kind: ModuleKind,
    binary: &[u8],
) -> Result<(Code, Origin), WasmError> {
    let engine = &inner.engine;
    let artifact = inner.cache.artifact_path(digest);
    if artifact.exists() {
        match cache::deserialize(engine, kind, &artifact) {
            Ok(code) => return Ok((code, Origin::DiskCache)),
            Err(e) => {
                tracing::warn!(artifact = %artifact.display(), error = %chain(&e), "unusable cached module; recompiling");
                let _ = std::fs::remove_file(&artifact);
            }
        }
    }
    let compiled = match kind {
        ModuleKind::Module => engine.precompile_module(binary),
        ModuleKind::Component => engine.precompile_component(binary),
    }
    .map_err(|e| WasmError::Invalid {
        path: path.to_path_buf(),
        message: chain(&e),
    })?;
    if let Err(e) = cache::write_atomic(&artifact, &compiled) {
        tracing::warn!(cache = %inner.cache.dir().display(), error = %e, "cannot write the module cache; compiling in memory");
        let code = match kind {
            ModuleKind::Module => Module::from_binary(engine, binary).map(Code::Module),
            ModuleKind::Component => Component::from_binary(engine, binary).map(Code::Component),
        }
        .map_err(|e| WasmError::Invalid {
            path: path.to_path_buf(),
            message: chain(&e),
        })?;
        return Ok((code, Origin::Compiled));
    }
    let code = cache::deserialize(engine, kind, &artifact).map_err(|e| WasmError::Cache {
        path: artifact.clone(),
        source: std::io::Error::other(chain(&e)),
    })?;
    Ok((code, Origin::Compiled))
}

fn link(inner: &EngineInner, path: &Path, code: Code) -> Result<Pre, WasmError> {
    let unknown = |e: wasmtime::Error| WasmError::UnknownImport {
        path: path.to_path_buf(),
        message: chain(&e),
    };
    match code {
        Code::Module(module) => {
            if !matches!(module.get_export("_start"), Some(ExternType::Func(_))) {
                return Err(WasmError::NoStart {
                    path: path.to_path_buf(),
                });
            }
            let pre = inner
                .module_linker
                .instantiate_pre(&module)
                .map_err(unknown)?;
            Ok(Pre::Module(pre))
        }
        Code::Component(component) => {
            let exports: Vec<String> = component
                .component_type()
                .exports(&inner.engine)
                .map(|(name, _)| name.to_string())
                .collect();
            let target = p3::command_target(&exports).map_err(|message| WasmError::Invalid {
                path: path.to_path_buf(),
                message,
            })?;
            let serves = exports.iter().any(|e| Handler::exported(e));
            if target.is_none() && !serves {
                return Err(WasmError::NotCommand {
                    path: path.to_path_buf(),
                    exports,
                });
            }
            let pre = inner
                .component_linker
                .instantiate_pre(&component)
                .map_err(|e| WasmError::UnknownImport {
                    path: path.to_path_buf(),
                    message: chain(&e) + &p3::draft_hint(&inner.engine, &component),
                })?;
            // A function first: a component that also exports wasi:cli/run is served.
            if let Some(handler) = Handler::detect(&exports, &pre) {
                return handler.map(Pre::Function).map_err(|e| WasmError::Invalid {
                    path: path.to_path_buf(),
                    message: format!("its wasi:http handler export: {}", chain(&e)),
                });
            }
            let Some(target) = target else {
                return Err(WasmError::NotCommand {
                    path: path.to_path_buf(),
                    exports,
                });
            };
            let not_command = |_| WasmError::NotCommand {
                path: path.to_path_buf(),
                exports: exports.clone(),
            };
            match target {
                Wasi::P3 => Ok(Pre::P3Command(p3::command_pre(pre).map_err(not_command)?)),
                _ => Ok(Pre::Component(CommandPre::new(pre).map_err(not_command)?)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_source_is_a_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo.wasm");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        // A device reads forever, a FIFO blocks: both are refused before a byte is read.
        for (path, why) in [
            (Path::new("/dev/zero"), "not a regular file"),
            (fifo.as_path(), "not a regular file"),
            (dir.path(), "is a directory"),
        ] {
            let Err(e) = read_file(path) else {
                panic!("{} was read", path.display());
            };
            let e = e.to_string();
            assert!(
                e.contains(why) && e.contains(&path.display().to_string()),
                "{e}"
            );
        }
        let ok = dir.path().join("m.wasm");
        std::fs::write(&ok, b"\0asm").unwrap();
        assert!(matches!(read_file(&ok), Ok((_, bytes)) if bytes == b"\0asm"));
    }

    #[test]
    fn kinds_from_headers() {
        let p = Path::new("x");
        let module = wat::parse_str("(module)").unwrap();
        let component = wat::parse_str("(component)").unwrap();
        assert_eq!(kind_of(p, &module).unwrap(), ModuleKind::Module);
        assert_eq!(kind_of(p, &component).unwrap(), ModuleKind::Component);
        assert!(kind_of(p, b"\0asm").is_err());
    }

    #[test]
    fn text_and_garbage() {
        let p = Path::new("m.wat");
        assert!(to_binary(p, b"(module)").unwrap().starts_with(b"\0asm"));
        let e = to_binary(p, b"(module").unwrap_err().to_string();
        assert!(
            e.starts_with("invalid wasm module m.wat: not a wasm binary, and as wat text"),
            "{e}"
        );
        let e = to_binary(p, &[0xff, 0xfe, 0, 1]).unwrap_err().to_string();
        assert!(e.contains("bad magic number"), "{e}");
    }
}
