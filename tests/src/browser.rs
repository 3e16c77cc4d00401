//! A real headless browser for the dashboard's tests, screenshots and benchmark: Debian's
//! `chromium` driven through `chromedriver` over the W3C WebDriver protocol.
//!
//! WebDriver is JSON over plain HTTP/1.1 on loopback, so the client is this file and [`wire`]:
//! one blocking request per command on a fresh `TcpStream`, bodies through serde_json.
//! No WebDriver crate, no HTTP client crate: nothing is added to the build.
//!
//! [`Browser::start`] runs `chromedriver --port=0` (it binds loopback only and prints the port it
//! took), opens one session of a headless Chromium with a fresh profile directory (removed when
//! the browser is dropped), `acceptInsecureCerts` (the cluster's CA is not in the browser's
//! store), and `--no-sandbox` only when running as root (Chromium's sandbox refuses root). Every
//! host but loopback (`localhost`, 127.0.0.1, ::1) resolves to nowhere, IP literals included, so
//! pages reach the cluster's loopback API and nothing off the machine. Dropping a [`Browser`] ends the session,
//! then the browser and the driver (by their pids).
//!
//! `$CHROMEDRIVER` and `$CHROMIUM` override the binaries (default `/usr/bin/chromedriver` and the
//! driver's own choice, Debian's `/usr/bin/chromium`).
//!
//! Must not: know the dashboard's pages (the tests and bench hold the page contract), or talk to
//! anything but its own driver.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

mod wire;
use wire::http;

/// The W3C key of an element reference in WebDriver JSON.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// How long one WebDriver command may take before the client gives up (a hung browser fails the
/// test instead of hanging it).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// What went wrong talking to the browser.
#[derive(Debug)]
pub enum Error {
    /// Starting or reaching `chromedriver` failed.
    Driver(String),
    /// The driver answered with a WebDriver error (`no such element`, `javascript error`, ...).
    WebDriver {
        command: String,
        error: String,
        message: String,
    },
    /// A [`Browser::wait`] ran out of time.
    Timeout { what: String, last: String },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Driver(message) => write!(f, "chromedriver: {message}"),
            Error::WebDriver {
                command,
                error,
                message,
            } => {
                // The first line only: chromedriver appends its session info and a native trace.
                let message = message.lines().next().unwrap_or_default();
                write!(f, "{command}: {error}: {message}")
            }
            Error::Timeout { what, last } => {
                write!(f, "timed out waiting for {what}")?;
                if !last.is_empty() {
                    write!(f, " (last: {last})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// The chromedriver binary: `$CHROMEDRIVER`, else Debian's.
pub fn driver_bin() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// Options of one browser.
#[derive(Debug, Clone)]
pub struct Options {
    /// The window's size in CSS pixels (screenshots are this size).
    pub width: u32,
    pub height: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            width: 1280,
            height: 900,
        }
    }
}

/// One headless Chromium and its driver; ended when dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
    /// The browser's own pid (`goog:processID`), to end it if the session's end did not.
    browser_pid: Option<i32>,
    profile: tempfile::TempDir,
}

/// An element of the current page (a WebDriver element reference).
pub struct Element<'a> {
    browser: &'a Browser,
    id: String,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with default [`Options`].
    pub fn start() -> Result<Browser> {
        Browser::start_with(Options::default())
    }

    pub fn start_with(options: Options) -> Result<Browser> {
        let bin = driver_bin();
        if !bin.exists() {
            return Err(Error::Driver(format!(
                "{} not found (install Debian's chromium and chromium-driver: scripts/test does, or set $CHROMEDRIVER)",
                bin.display()
            )));
        }
        let mut driver = Command::new(&bin)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Error::Driver(format!("run {}: {e}", bin.display())))?;
        let port = match read_port(&mut driver) {
            Ok(port) => port,
            Err(e) => {
                let _ = driver.kill();
                let _ = driver.wait();
                return Err(e);
            }
        };
        let profile = tempfile::Builder::new()
            .prefix("skiff-browser-")
            .tempdir()
            .map_err(|e| Error::Driver(format!("profile dir: {e}")))?;
        let mut browser = Browser {
            driver,
            port,
            session: String::new(),
            browser_pid: None,
            profile,
        };
        let mut args = vec![
            "--headless=new".to_string(),
            format!("--user-data-dir={}", browser.profile.path().display()),
            format!("--window-size={},{}", options.width, options.height),
            // Containers have a small /dev/shm; Chromium then crashes tabs under load.
            "--disable-dev-shm-usage".into(),
            "--disable-gpu".into(),
            "--no-first-run".into(),
            "--disable-component-update".into(),
            "--disable-extensions".into(),
            // Every host but loopback resolves to nowhere (IP literals included): the page can
            // reach the cluster's loopback API and nothing off the machine.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE [::1]"
                .into(),
        ];
        // Chromium's sandbox refuses to run as root (as the test machines run); it is the only
        // reason for this flag.
        if nix::unistd::geteuid().is_root() {
            args.push("--no-sandbox".into());
        }
        let mut chrome = json!({ "args": args });
        if let Some(binary) = std::env::var_os("CHROMIUM") {
            chrome["binary"] = json!(binary.to_string_lossy());
        }
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "acceptInsecureCerts": true,
                    "pageLoadStrategy": "normal",
                    "goog:loggingPrefs": { "browser": "ALL" },
                    "goog:chromeOptions": chrome,
                }
            }
        });
        let answer = browser.request("POST", "/session", Some(&caps))?;
        browser.session = answer["sessionId"]
            .as_str()
            .ok_or_else(|| Error::Driver(format!("new session answered {answer}")))?
            .to_string();
        browser.browser_pid = answer["capabilities"]["goog:processID"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok());
        Ok(browser)
    }

    /// The profile directory (removed when the browser is dropped).
    pub fn profile_dir(&self) -> &Path {
        self.profile.path()
    }

    /// Navigates to `url` and returns once the page has loaded (its `load` event).
    pub fn goto(&self, url: &str) -> Result<()> {
        self.command("POST", "url", Some(&json!({ "url": url })))
            .map(drop)
    }

    /// The current page's URL.
    pub fn url(&self) -> Result<String> {
        let v = self.command("GET", "url", None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// Reloads the current page.
    pub fn refresh(&self) -> Result<()> {
        self.command("POST", "refresh", Some(&json!({}))).map(drop)
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns what it
    /// returns. WebDriver scripts run outside the page's Content-Security-Policy.
    pub fn execute(&self, script: &str, args: &[Value]) -> Result<Value> {
        self.command(
            "POST",
            "execute/sync",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// Runs an asynchronous `script`: it ends by calling `arguments[arguments.length - 1](value)`,
    /// within `timeout`.
    pub fn execute_async(&self, script: &str, args: &[Value], timeout: Duration) -> Result<Value> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.command("POST", "timeouts", Some(&json!({ "script": ms })))?;
        self.command(
            "POST",
            "execute/async",
            Some(&json!({ "script": script, "args": args })),
        )
    }

    /// The first element matching the CSS `selector`, if any.
    pub fn find(&self, selector: &str) -> Result<Option<Element<'_>>> {
        match self.command(
            "POST",
            "element",
            Some(&json!({ "using": "css selector", "value": selector })),
        ) {
            Ok(v) => Ok(Some(self.element(&v)?)),
            Err(Error::WebDriver { error, .. }) if error == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The first element matching `selector`; an error naming it when there is none.
    pub fn get(&self, selector: &str) -> Result<Element<'_>> {
        self.find(selector)?.ok_or_else(|| Error::WebDriver {
            command: format!("find {selector}"),
            error: "no such element".into(),
            message: format!("no element matches {selector:?}"),
        })
    }

    /// Every element matching `selector`.
    pub fn find_all(&self, selector: &str) -> Result<Vec<Element<'_>>> {
        let v = self.command(
            "POST",
            "elements",
            Some(&json!({ "using": "css selector", "value": selector })),
        )?;
        v.as_array()
            .into_iter()
            .flatten()
            .map(|e| self.element(e))
            .collect()
    }

    /// How many elements match `selector` (one script call, for large tables).
    pub fn count(&self, selector: &str) -> Result<usize> {
        let v = self.execute(
            "return document.querySelectorAll(arguments[0]).length;",
            &[json!(selector)],
        )?;
        Ok(v.as_u64().unwrap_or(0) as usize)
    }

    /// The rendered text (`innerText`) of the first element matching `selector`, if any.
    pub fn text_of(&self, selector: &str) -> Result<Option<String>> {
        let v = self.execute(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            &[json!(selector)],
        )?;
        Ok(v.as_str().map(str::to_string))
    }

    /// Polls `check` every 20 ms until it gives a value, for at most `timeout`. The error names
    /// `what` and the last error `check` returned (a failing check is retried, not fatal).
    pub fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Browser) -> Result<Option<T>>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut last = String::new();
        loop {
            match check(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e @ Error::Driver(_)) => return Err(e),
                Err(e) => last = e.to_string(),
            }
            if Instant::now() >= deadline {
                return Err(Error::Timeout {
                    what: what.to_string(),
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until an element matches `selector`.
    pub fn wait_for(&self, selector: &str, timeout: Duration) -> Result<Element<'_>> {
        let id = self.wait(selector, timeout, |b| Ok(b.find(selector)?.map(|e| e.id)))?;
        Ok(Element { browser: self, id })
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>> {
        let v = self.command("GET", "screenshot", None)?;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().unwrap_or_default())
            .map_err(|e| Error::Driver(format!("screenshot is not base64: {e}")))
    }

    /// Writes a PNG of the viewport to `path`.
    pub fn screenshot_to(&self, path: &Path) -> Result<()> {
        let png = self.screenshot()?;
        std::fs::write(path, png)
            .map_err(|e| Error::Driver(format!("write {}: {e}", path.display())))
    }

    /// The page's console messages since the last call (`LEVEL message` lines), for failure
    /// reports.
    pub fn console(&self) -> Result<Vec<String>> {
        let v = self.command("POST", "se/log", Some(&json!({ "type": "browser" })))?;
        Ok(v.as_array()
            .into_iter()
            .flatten()
            .map(|entry| {
                format!(
                    "{} {}",
                    entry["level"].as_str().unwrap_or_default(),
                    entry["message"].as_str().unwrap_or_default()
                )
            })
            .collect())
    }

    fn element(&self, v: &Value) -> Result<Element<'_>> {
        let id = v[ELEMENT_KEY]
            .as_str()
            .ok_or_else(|| Error::Driver(format!("not an element reference: {v}")))?;
        Ok(Element {
            browser: self,
            id: id.to_string(),
        })
    }

    /// A command of this session: `/session/{id}/{path}`.
    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.request(method, &format!("/session/{}/{path}", self.session), body)
    }

    /// One WebDriver request; the `value` of a success, the WebDriver error of a failure.
    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        let command = format!("{method} {}", path.rsplit('/').next().unwrap_or(path));
        let (status, text) = http(self.port, method, path, body)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            Error::Driver(format!("{command}: answer is not JSON ({e}): {text:.200}"))
        })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if status == 200 {
            return Ok(value);
        }
        Err(Error::WebDriver {
            command,
            error: value["error"]
                .as_str()
                .unwrap_or("unknown error")
                .to_string(),
            message: value["message"].as_str().unwrap_or_default().to_string(),
        })
    }
}

impl Element<'_> {
    pub fn click(&self) -> Result<()> {
        self.command("POST", "click", Some(&json!({}))).map(drop)
    }

    /// Types `text` into the element (after what it holds).
    pub fn send_keys(&self, text: &str) -> Result<()> {
        self.command("POST", "value", Some(&json!({ "text": text })))
            .map(drop)
    }

    /// Empties an input.
    pub fn clear(&self) -> Result<()> {
        self.command("POST", "clear", Some(&json!({}))).map(drop)
    }

    /// The element's rendered text.
    pub fn text(&self) -> Result<String> {
        let v = self.command("GET", "text", None)?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    /// An attribute's value, if the element has it.
    pub fn attr(&self, name: &str) -> Result<Option<String>> {
        let v = self.command("GET", &format!("attribute/{name}"), None)?;
        Ok(v.as_str().map(str::to_string))
    }

    /// A DOM property (`value` of an input, `disabled`).
    pub fn property(&self, name: &str) -> Result<Value> {
        self.command("GET", &format!("property/{name}"), None)
    }

    /// Whether the element is shown.
    pub fn displayed(&self) -> Result<bool> {
        Ok(self
            .command("GET", "displayed", None)?
            .as_bool()
            .unwrap_or(false))
    }

    /// The first descendant matching `selector`, if any.
    pub fn find(&self, selector: &str) -> Result<Option<Element<'_>>> {
        match self.command(
            "POST",
            "element",
            Some(&json!({ "using": "css selector", "value": selector })),
        ) {
            Ok(v) => Ok(Some(self.browser.element(&v)?)),
            Err(Error::WebDriver { error, .. }) if error == "no such element" => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn command(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value> {
        self.browser
            .command(method, &format!("element/{}/{path}", self.id), body)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        // The session's end closes the browser; if it did not (a hung browser), end it by the
        // pid the driver reported, or, when no session was made (the browser may still have
        // started), every process of this profile. Only processes whose command line names this
        // profile directory are signalled.
        let profile = format!("--user-data-dir={}", self.profile.path().display());
        let names_profile = |pid: i32| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&profile)
        };
        let pids: Vec<i32> = match self.browser_pid {
            Some(pid) => vec![pid],
            None => std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect(),
        };
        for pid in pids.into_iter().filter(|pid| names_profile(*pid)) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Reads chromedriver's stdout until it says which port it took.
fn read_port(driver: &mut Child) -> Result<u16> {
    let stdout = driver
        .stdout
        .take()
        .ok_or_else(|| Error::Driver("no stdout".into()))?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut said = String::new();
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(port) = line
                .split("started successfully on port ")
                .nth(1)
                .and_then(|rest| rest.trim_end_matches('.').trim().parse::<u16>().ok())
            {
                let _ = tx.send(Ok(port));
                // Keep draining so the driver never blocks on a full pipe.
                continue;
            }
            said.push_str(&line);
            said.push('\n');
        }
        let _ = tx.send(Err(said));
    });
    match rx.recv_timeout(Duration::from_secs(20)) {
        Ok(Ok(port)) => Ok(port),
        Ok(Err(said)) => Err(Error::Driver(format!("exited before listening: {said}"))),
        Err(_) => Err(Error::Driver("did not start listening within 20 s".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_the_first_line_of_the_driver_message() {
        let e = Error::WebDriver {
            command: "POST element".into(),
            error: "no such element".into(),
            message: "Unable to locate\n  (Session info: chrome=1)".into(),
        };
        assert_eq!(
            e.to_string(),
            "POST element: no such element: Unable to locate"
        );
    }

    /// The real browser: a page's elements, typing, clicking, scripts, screenshots and console;
    /// the browser, its driver and its profile are gone once it is dropped.
    #[test]
    fn a_browser_drives_a_page_and_leaves_nothing_behind() {
        let page = "data:text/html,<title>t</title><label>Name <input id=name></label>\
            <button id=go onclick=\"document.getElementById('out').textContent='hi '+document.getElementById('name').value;console.error('said')\">Go</button>\
            <p id=out></p>";
        let browser = Browser::start().expect("start the browser");
        browser.goto(page).expect("goto");
        assert!(browser.find("#missing").expect("find").is_none());
        browser.get("#name").unwrap().send_keys("ada").unwrap();
        assert_eq!(
            browser.get("#name").unwrap().property("value").unwrap(),
            json!("ada")
        );
        browser.get("#go").unwrap().click().unwrap();
        let said = browser
            .wait("the greeting", Duration::from_secs(5), |b| {
                Ok(b.text_of("#out")?.filter(|t| !t.is_empty()))
            })
            .unwrap();
        assert_eq!(said, "hi ada");
        assert_eq!(browser.count("input, button").unwrap(), 2);
        let sum = browser
            .execute("return arguments[0] + arguments[1];", &[json!(2), json!(3)])
            .unwrap();
        assert_eq!(sum, json!(5));
        let later = browser
            .execute_async(
                "const done = arguments[arguments.length - 1]; setTimeout(() => done('late'), 10);",
                &[],
                Duration::from_secs(5),
            )
            .unwrap();
        assert_eq!(later, json!("late"));
        let e = browser.execute("throw new Error('nope')", &[]).unwrap_err();
        assert!(e.to_string().contains("javascript error"), "{e}");
        let png = browser.screenshot().unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        assert!(
            browser
                .console()
                .unwrap()
                .iter()
                .any(|l| l.contains("said")),
            "the page's console.error is read back"
        );
        let timeout = browser
            .wait("nothing", Duration::from_millis(100), |_| Ok(None::<()>))
            .unwrap_err();
        assert!(matches!(timeout, Error::Timeout { .. }), "{timeout}");

        // Nothing off the machine resolves, not even an IP literal (TEST-NET-1 here).
        let off = browser.goto("http://192.0.2.1/").unwrap_err();
        assert!(off.to_string().contains("ERR_NAME_NOT_RESOLVED"), "{off}");

        let profile = browser.profile_dir().to_path_buf();
        let pid = browser
            .browser_pid
            .expect("the driver names the browser's pid");
        drop(browser);
        assert!(!profile.exists(), "{} is removed", profile.display());
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
        assert!(gone, "the browser (pid {pid}) ended with its session");
    }
}
