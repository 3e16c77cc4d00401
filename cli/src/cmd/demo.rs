//! `skiff up --demo`: the examples a fresh cluster shows. `examples/hello` (a Wasm command
//! Deployment with its ConfigMap and Secret) and `examples/hello-http`, a Wasm HTTP microservice:
//! the wasi:http function of `hello.wat` behind a Service and the node's Ingress, answered by
//! the `curl` command `up` prints.
//!
//! The function's component is built here, from the sources compiled into the binary (the core
//! module's WAT text and the WIT world declaring its imports and export), with `wit-component`,
//! as a toolchain would: no compiler and no file of the repository are needed at run time. It
//! is written to `DATA_DIR/demo/hello-http.wasm`, which the manifest's `file:` image names.
//!
//! Must not: apply anything but the examples.

use std::path::{Path, PathBuf};

use skiff_api::client::Transport;
use skiff_node_agent::ingress::{IngressAddr, default_ports};

use super::apply::{ManifestSource, apply_sources};
use crate::error::{CliError, Result};

const HELLO_HTTP_WAT: &str = include_str!("../../../examples/hello-http/hello.wat");
const HELLO_HTTP_WIT: &str = include_str!("../../../examples/hello-http/world.wit");
const HELLO_HTTP_YAML: &str = include_str!("../../../examples/hello-http/hello.yaml");
/// The image the manifest names, replaced by the built component's path.
const HELLO_HTTP_IMAGE: &str = "file:examples/hello-http/hello-http.wasm";

/// The component of `examples/hello-http`: its core module (WAT) with the world of
/// `world.wit` embedded, encoded as a component.
pub fn hello_http_component() -> std::result::Result<Vec<u8>, String> {
    let mut module = wat::parse_str(HELLO_HTTP_WAT)
        .map_err(|e| format!("examples/hello-http/hello.wat: {e}"))?;
    let mut resolve = wit_parser::Resolve::default();
    let package = resolve
        .push_str("examples/hello-http/world.wit", HELLO_HTTP_WIT)
        .map_err(|e| format!("examples/hello-http/world.wit: {e:#}"))?;
    let world = resolve
        .select_world(&[package], Some("skiff:examples/hello-http"))
        .map_err(|e| format!("examples/hello-http/world.wit: {e:#}"))?;
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .map_err(|e| format!("embedding the world of examples/hello-http: {e:#}"))?;
    wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .and_then(|mut encoder| encoder.encode())
        .map_err(|e| format!("encoding examples/hello-http as a component: {e:#}"))
}

/// Builds the function into `DATA_DIR/demo/` and applies the examples.
pub async fn deploy(transport: &Transport, data_dir: &Path) -> Result<()> {
    let component = tokio::task::spawn_blocking(hello_http_component)
        .await
        .map_err(|e| CliError::failed(format!("error: building the demo function: {e}")))?
        .map_err(|e| CliError::failed(format!("error: {e}")))?;
    let dir = data_dir.join("demo");
    let path = dir.join("hello-http.wasm");
    std::fs::create_dir_all(&dir)
        .and_then(|()| write_atomic(&path, &component))
        .map_err(|e| CliError::failed(format!("error: {}: {e}", path.display())))?;
    let image = format!("file:{}", absolute(&path).display());
    let manifest: &'static str = Box::leak(
        HELLO_HTTP_YAML
            .replace(HELLO_HTTP_IMAGE, &image)
            .into_boxed_str(),
    );
    let files = ManifestSource::Embedded(vec![
        (
            "examples/hello/namespace.yaml",
            include_str!("../../../examples/hello/namespace.yaml"),
        ),
        (
            "examples/hello/hello.yaml",
            include_str!("../../../examples/hello/hello.yaml"),
        ),
        ("examples/hello-http/hello.yaml", manifest),
    ]);
    apply_sources(transport, files, None).await
}

/// What to try against the demo, for `up`'s greeting: a `curl` of the Ingress, or (without
/// one) a port-forward first.
pub fn try_it(ingress: &IngressAddr, node_ip: std::net::IpAddr) -> String {
    let url = match ingress {
        IngressAddr::Default => {
            let (port, _) = default_ports();
            Some(if port == 80 {
                format!("http://{node_ip}/hello")
            } else {
                format!("http://{node_ip}:{port}/hello")
            })
        }
        IngressAddr::At { http, .. } if http.port() != 0 => Some(format!("http://{http}/hello")),
        _ => None,
    };
    match url {
        Some(url) => format!(
            "The demo's Wasm HTTP function answers (once its pods are Ready):\n  curl {url}"
        ),
        None => "The demo's Wasm HTTP function answers (once its pods are Ready):\n  skiff port-forward -n demo svc/hello-http 8080:80 &\n  curl http://localhost:8080/hello".to_string(),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("wasm.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The demo's function is a component exporting the wasi:http incoming handler.
    #[test]
    fn the_demo_function_is_a_wasi_http_component() {
        let bytes = hello_http_component().unwrap();
        assert!(bytes.starts_with(b"\0asm\x0d\0\x01\0"), "a component");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("wasi:http/incoming-handler@0.2.0"));
        assert!(HELLO_HTTP_YAML.contains(HELLO_HTTP_IMAGE));
    }

    #[test]
    fn the_curl_command_names_the_ingress() {
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        let at: IngressAddr = "127.0.0.1:18080".parse().unwrap();
        assert!(try_it(&at, ip).contains("curl http://127.0.0.1:18080/hello"));
        assert!(try_it(&IngressAddr::Off, ip).contains("port-forward"));
    }
}
