//! How the server serves the dashboard, over real HTTPS with curl (the browser tests are
//! dashboard.rs): the page and its scripts on the API address and on `--dashboard-addr` with the
//! security headers, without a token; the API on the dashboard address asks for one like the API
//! address does; the token a client sends is in no log; a bad `--dashboard-addr` is exit 2.

use std::process::Command;

use skiff_tests::{Cluster, ClusterOptions, skiff_bin, stderr, wait_for};

/// `curl` (HTTP/2, the cluster CA) of `url` with extra `args`: (status, headers, body).
fn curl(c: &Cluster, args: &[&str], url: &str) -> (u16, String, String) {
    let ca = c.data_dir().join("dashboard-ca.pem");
    std::fs::write(&ca, c.config().certificate_authority_data).unwrap();
    let headers = c.data_dir().join("dashboard-headers.txt");
    let out = Command::new("curl")
        .args(["-sS", "--http2", "--max-time", "30", "-w", "%{http_code}"])
        .arg("--cacert")
        .arg(&ca)
        .arg("-D")
        .arg(&headers)
        .args(args)
        .arg(url)
        .output()
        .expect("run curl (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (body, code) = text.split_at(text.len().saturating_sub(3));
    let head = std::fs::read_to_string(&headers).unwrap_or_default();
    (
        code.parse().unwrap_or(0),
        head.to_lowercase(),
        body.to_string(),
    )
}

fn header<'a>(head: &'a str, name: &str) -> &'a str {
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::trim)
        .unwrap_or("")
}

#[test]
fn the_dashboard_is_served_on_the_api_address_and_on_its_own_with_strict_headers() {
    let c = Cluster::start_with(ClusterOptions {
        server_args: vec!["--dashboard-addr".into(), "127.0.0.1:0".into()],
        ..Default::default()
    });
    // The server says where it bound the dashboard's own address.
    let page = wait_for(
        "the dashboard's address",
        std::time::Duration::from_secs(30),
        || {
            c.server_log()
                .lines()
                .find_map(|l| l.split("web dashboard at ").nth(1))
                .and_then(|rest| rest.split_whitespace().next())
                .map(str::to_string)
        },
    );
    let own = page.trim_end_matches("/dashboard/").to_string();
    assert_ne!(own, format!("https://{}", c.addr), "a second address");
    let api = format!("https://{}", c.addr);
    for base in [&api, &own] {
        let (code, head, body) = curl(&c, &[], &format!("{base}/dashboard/"));
        assert_eq!(code, 200, "{base}: {head}");
        assert!(body.contains("id=\"token\""), "{base}: the login form");
        let csp = header(&head, "content-security-policy");
        assert!(csp.contains("script-src 'self'"), "{csp}");
        assert!(csp.contains("connect-src 'self'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(header(&head, "x-frame-options"), "deny");
        assert_eq!(header(&head, "x-content-type-options"), "nosniff");
        let (code, head, body) = curl(&c, &[], &format!("{base}/dashboard/app.js"));
        assert_eq!(code, 200);
        assert!(header(&head, "content-type").starts_with("text/javascript"));
        assert!(body.contains("import"), "{base}: the app module");
        // A browser at the root is sent to the page; kubectl's root stays the API's.
        let (code, head, _) = curl(&c, &["-H", "Accept: text/html"], &format!("{base}/"));
        assert_eq!((code, header(&head, "location")), (308, "/dashboard/"));
        // The API on either address asks for a token and takes the admin's.
        let (code, _, body) = curl(&c, &[], &format!("{base}/api/v1/namespaces"));
        assert_eq!(code, 401, "{body}");
        let token = c.config().token;
        let auth = format!("Authorization: Bearer {token}");
        let (code, _, body) = curl(&c, &["-H", &auth], &format!("{base}/api/v1/namespaces"));
        assert_eq!(code, 200, "{body}");
        assert!(body.contains("\"default\""), "{body}");
    }
    let token = c.config().token;
    assert!(
        !c.server_log().contains(&token),
        "the admin token is in the server's log"
    );
}

#[test]
fn a_bad_dashboard_address_is_refused_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["nonsense", "127.0.0.1", "300.1.1.1:80"] {
        let out = Command::new(skiff_bin())
            .args(["server", "--data-dir"])
            .arg(dir.path())
            .args(["--listen", "127.0.0.1:0", "--dashboard-addr", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}: {}", stderr(&out));
        assert!(
            stderr(&out).contains("--dashboard-addr"),
            "{}",
            stderr(&out)
        );
    }
}
