//! The web dashboard's server side: the page and its scripts and styles, embedded in the binary
//! and served under `/dashboard/` by the REST router, on the API port and on `--dashboard-addr`
//! (docs/dashboard.md).
//!
//! The assets are public (as the login page of any site): they hold no cluster data. Everything
//! the page shows or changes it asks of the Kubernetes REST API from the browser with the
//! logged-in user's own bearer token, so authorization holds in the page exactly as in kubectl.
//! Every response carries a strict Content-Security-Policy (scripts and connections to this
//! origin only, no inline script or style), `X-Frame-Options: DENY` and `nosniff`.
//!
//! Must not: read the store, act for the user, or take a token (this module never sees one: the
//! assets are served before authentication and the page's API calls go to the API's own routes).

use std::sync::LazyLock;

use bytes::Bytes;

use crate::rest::{Body, Response};

/// Where the dashboard is served.
pub const PREFIX: &str = "/dashboard/";

/// The policy of every dashboard response: this origin's scripts, styles, images and API only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'none'";

/// One embedded file.
struct Asset {
    /// Its name under [`PREFIX`] (`""`: the page itself).
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

const ASSETS: &[Asset] = &[
    Asset {
        name: "",
        content_type: "text/html; charset=utf-8",
        body: include_str!("assets/index.html"),
    },
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("assets/app.css"),
    },
    Asset {
        name: "icon.svg",
        content_type: "image/svg+xml",
        body: include_str!("assets/icon.svg"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/app.js"),
    },
    Asset {
        name: "api.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/api.js"),
    },
    Asset {
        name: "table.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/table.js"),
    },
    Asset {
        name: "format.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/format.js"),
    },
    Asset {
        name: "views.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/views.js"),
    },
    Asset {
        name: "chart.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("assets/chart.js"),
    },
];

/// Each asset's entity tag (a hash of its bytes, fixed for the life of the binary).
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|a| format!("\"{:016x}\"", fnv1a(a.body.as_bytes())))
        .collect()
});

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The size of every asset together, in bytes (for docs and the test that keeps it small).
pub fn total_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// The dashboard's answer to a request, or `None` when the request is not the dashboard's (the
/// API's router goes on). `/dashboard` redirects to `/dashboard/`; `/` redirects there too for
/// a browser (one that accepts `text/html`), so that `--dashboard-addr`'s root opens the page.
pub fn respond(req: &http::Request<Body>) -> Option<Response> {
    let path = req.uri().path();
    let header = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if path == "/dashboard" || (path == "/" && header(http::header::ACCEPT).contains("text/html")) {
        return Some(redirect(PREFIX));
    }
    let name = path.strip_prefix(PREFIX)?;
    if req.method() != http::Method::GET && req.method() != http::Method::HEAD {
        let mut refused = text(405, "the dashboard's files can only be read (GET, HEAD)");
        refused.headers_mut().insert(
            http::header::ALLOW,
            http::HeaderValue::from_static("GET, HEAD"),
        );
        return Some(refused);
    }
    let Some((index, asset)) = ASSETS.iter().enumerate().find(|(_, a)| a.name == name) else {
        return Some(text(404, "the dashboard has no such file"));
    };
    let etag = ETAGS.get(index).map(String::as_str).unwrap_or_default();
    let builder = secured(http::Response::builder())
        .header(http::header::ETAG, etag)
        .header(http::header::CONTENT_TYPE, asset.content_type);
    let response = if header(http::header::IF_NONE_MATCH) == etag {
        builder.status(304).body(Body::empty())
    } else if req.method() == http::Method::HEAD {
        builder
            .status(200)
            .header(http::header::CONTENT_LENGTH, asset.body.len())
            .body(Body::empty())
    } else {
        builder
            .status(200)
            .body(full(Bytes::from_static(asset.body.as_bytes())))
    };
    Some(response.unwrap_or_else(|_| http::Response::new(Body::empty())))
}

/// The security headers every dashboard response carries. The page is revalidated on every load
/// (an upgraded server serves its new page at once), cheaply thanks to the entity tags.
fn secured(builder: http::response::Builder) -> http::response::Builder {
    builder
        .header("content-security-policy", CONTENT_SECURITY_POLICY)
        .header("x-frame-options", "DENY")
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("cross-origin-opener-policy", "same-origin")
        .header(http::header::CACHE_CONTROL, "no-cache")
}

fn text(code: u16, why: &'static str) -> Response {
    secured(http::Response::builder())
        .status(code)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(full(Bytes::from_static(why.as_bytes())))
        .unwrap_or_else(|_| http::Response::new(Body::empty()))
}

fn redirect(to: &'static str) -> Response {
    secured(http::Response::builder())
        .status(308)
        .header(http::header::LOCATION, to)
        .body(Body::empty())
        .unwrap_or_else(|_| http::Response::new(Body::empty()))
}

fn full(bytes: Bytes) -> Body {
    Body::new(http_body_util::Full::new(bytes))
}

#[cfg(test)]
mod tests;
