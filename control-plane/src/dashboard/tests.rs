use http_body_util::BodyExt;

use super::*;

fn get(path: &str) -> http::Request<Body> {
    http::Request::get(path).body(Body::empty()).unwrap()
}

async fn body(r: Response) -> String {
    String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

fn header<'a>(r: &'a Response, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_and_the_security_headers() {
    for (path, kind) in [
        ("/dashboard/", "text/html"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/views.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ] {
        let r = respond(&get(path)).unwrap_or_else(|| panic!("{path} not served"));
        assert_eq!(r.status(), 200, "{path}");
        assert!(header(&r, "content-type").starts_with(kind), "{path}");
        assert_eq!(
            header(&r, "content-security-policy"),
            CONTENT_SECURITY_POLICY
        );
        assert_eq!(header(&r, "x-frame-options"), "DENY");
        assert_eq!(header(&r, "x-content-type-options"), "nosniff");
        assert!(!body(r).await.is_empty(), "{path}");
    }
}

#[test]
fn the_policy_allows_no_inline_script_and_no_other_origin() {
    let script = CONTENT_SECURITY_POLICY
        .split(';')
        .map(str::trim)
        .find(|d| d.starts_with("script-src"))
        .unwrap();
    assert_eq!(script, "script-src 'self'");
    assert!(CONTENT_SECURITY_POLICY.contains("connect-src 'self'"));
    assert!(CONTENT_SECURITY_POLICY.contains("frame-ancestors 'none'"));
    assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
}

#[test]
fn the_page_has_no_inline_script_or_style_and_loads_nothing_from_elsewhere() {
    for asset in ASSETS {
        let text = asset.body;
        let without_svg_namespace = text.replace("http://www.w3.org/2000/svg", "");
        assert!(
            !without_svg_namespace.contains("http://"),
            "{}: an absolute URL",
            asset.name
        );
        assert!(
            !text.contains("https://"),
            "{}: an absolute URL",
            asset.name
        );
        assert!(!text.contains("eval("), "{}: eval", asset.name);
        assert!(
            !text.contains("innerHTML"),
            "{}: innerHTML (markup from data)",
            asset.name
        );
    }
    let page = ASSETS[0].body;
    for opening in page.match_indices("<script").map(|(i, _)| &page[i..]) {
        let tag = &opening[..opening.find('>').unwrap()];
        assert!(tag.contains("src="), "inline script: {tag}");
    }
    assert!(!page.contains("<style"), "inline style");
    assert!(!page.contains(" style="), "inline style attribute");
    let handler = page.split(" on").skip(1).find(|rest| {
        let word: String = rest.chars().take_while(char::is_ascii_alphabetic).collect();
        !word.is_empty() && rest[word.len()..].starts_with('=')
    });
    assert!(handler.is_none(), "inline event handler: on{handler:?}");
}

#[test]
fn every_module_the_scripts_import_is_served() {
    for asset in ASSETS.iter().filter(|a| a.name.ends_with(".js")) {
        for line in asset.body.lines().filter(|l| l.starts_with("import ")) {
            let from = line.rsplit("from '").next().unwrap();
            let name = from.trim_end_matches("';").trim_start_matches("./");
            assert!(
                ASSETS.iter().any(|a| a.name == name),
                "{} imports {name}, which is not embedded",
                asset.name
            );
        }
    }
}

#[test]
fn the_assets_stay_small() {
    // The edge carries them in every binary (docs/dashboard.md gives the figure).
    assert!(total_size() < 96 * 1024, "{} bytes", total_size());
}

#[tokio::test]
async fn paths_outside_the_dashboard_are_left_to_the_api() {
    assert!(respond(&get("/api/v1/pods")).is_none());
    assert!(respond(&get("/dashboards/x")).is_none());
    assert!(respond(&get("/")).is_none(), "kubectl's / is the API's");
    let r = respond(&get("/dashboard/nothing.js")).unwrap();
    assert_eq!(r.status(), 404);
}

#[test]
fn the_bare_path_and_a_browsers_root_redirect_to_the_page() {
    let r = respond(&get("/dashboard")).unwrap();
    assert_eq!(r.status(), 308);
    assert_eq!(header(&r, "location"), "/dashboard/");
    let browser = http::Request::get("/")
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        header(&respond(&browser).unwrap(), "location"),
        "/dashboard/"
    );
}

#[tokio::test]
async fn a_known_version_is_not_sent_again_and_writes_are_refused() {
    let first = respond(&get("/dashboard/app.js")).unwrap();
    let etag = header(&first, "etag").to_string();
    assert!(etag.starts_with('"'));
    let again = http::Request::get("/dashboard/app.js")
        .header("if-none-match", &etag)
        .body(Body::empty())
        .unwrap();
    let r = respond(&again).unwrap();
    assert_eq!(r.status(), 304);
    assert!(body(r).await.is_empty());
    let post = http::Request::post("/dashboard/")
        .body(Body::empty())
        .unwrap();
    let r = respond(&post).unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(header(&r, "allow"), "GET, HEAD");
}
