//! The dashboard's page contract (docs/dashboard.md; the element ids, `data-*` attributes and
//! views the pages promise) as one handle over a real [`Browser`]: log in, show a view, read a
//! table's rows and cells, act on a row, read the notice and the logs. The dashboard's e2e tests,
//! the screenshots (`scripts/screenshots`) and `bench/run dashboard` all drive the pages through
//! it, so they agree on what the pages are.
//!
//! Must not: reach the API itself (tests check the cluster with their own clients), or change
//! what a page shows, beyond emptying `#notice` and `#login-error` before an action so the next
//! message is known to be the action's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::browser::{Browser, Error, Options, Result};

/// How long a view may take to render (a busy 2-core machine running a cluster and a browser).
pub const VIEW_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a fresh page may take to show its login form before it is loaded again.
const LOAD_TIMEOUT: Duration = Duration::from_secs(15);

/// How many times the page is loaded before `open` gives up.
const LOADS: usize = 4;

/// The dashboard's URL on an API (or `--dashboard-addr`) address.
pub fn url(addr: SocketAddr) -> String {
    format!("https://{addr}/dashboard/")
}

/// A browser on the dashboard of one server.
pub struct Dashboard {
    pub browser: Browser,
    pub base: String,
}

/// How a login ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// The views are shown.
    In,
    /// The form stays; `#login-error`'s text.
    Refused(String),
}

impl Dashboard {
    /// A new browser on `https://ADDR/dashboard/`, the login form shown.
    pub fn open(addr: SocketAddr) -> Result<Dashboard> {
        Dashboard::open_with(addr, Options::default())
    }

    pub fn open_with(addr: SocketAddr, options: Options) -> Result<Dashboard> {
        let browser = Browser::start_with(options)?;
        let base = url(addr);
        let dashboard = Dashboard { browser, base };
        // Chromium fails the requests it has in flight when the host's network changes (an agent
        // adding a pod's interface): a page whose scripts were lost that way never starts. It is
        // loaded again: at once when Chromium shows its error page or the console says the
        // network changed, else after LOAD_TIMEOUT; the error has all the console said.
        let mut said = Vec::new();
        for _ in 0..LOADS {
            dashboard.browser.goto(&dashboard.base)?;
            let loaded = dashboard.browser.wait("the login form", LOAD_TIMEOUT, |b| {
                let state = b.execute(
                    "return [document.body.dataset.view, document.body.dataset.ready, location.protocol];",
                    &[],
                )?;
                if state[0] == json!("login") && state[1] == json!("1") {
                    return Ok(Some(true));
                }
                // The navigation itself failed: Chromium's error page.
                let error_page = state[2] == json!("chrome-error:");
                let console = b.console()?;
                let lost = error_page || console.iter().any(|l| l.contains("ERR_NETWORK_CHANGED"));
                said.extend(console);
                Ok(lost.then_some(false))
            });
            match loaded {
                Ok(true) => return Ok(dashboard),
                Ok(false) | Err(Error::Timeout { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Err(Error::Timeout {
            what: format!("the login form of {} ({LOADS} loads)", dashboard.base),
            last: format!("page console: {}", said.join(" | ")),
        })
    }

    /// Types `token` into the login form and submits it; [`Login::In`] once the first view is
    /// ready, or the refusal shown.
    pub fn try_login(&self, token: &str) -> Result<Login> {
        let b = &self.browser;
        b.execute(
            "document.querySelector('#login-error').textContent = '';",
            &[],
        )?;
        let field = b.get("input#token")?;
        field.clear()?;
        field.send_keys(token)?;
        b.get("button#login")?.click()?;
        b.wait("the login's outcome", VIEW_TIMEOUT, |b| {
            let state = b.execute(
                "const b = document.body; return [b.dataset.view, b.dataset.ready,
                   document.querySelector('#login-error').textContent.trim()];",
                &[],
            )?;
            let error = state[2].as_str().unwrap_or_default();
            if !error.is_empty() {
                return Ok(Some(Login::Refused(error.to_string())));
            }
            Ok((state[0] != json!("login") && state[1] == json!("1")).then_some(Login::In))
        })
    }

    /// Logs in; an error when the token is refused.
    pub fn login(&self, token: &str) -> Result<()> {
        match self.try_login(token)? {
            Login::In => Ok(()),
            Login::Refused(message) => Err(Error::Driver(format!(
                "the dashboard refused the token: {message}"
            ))),
        }
    }

    /// Shows the view `route` names (`pods`, `logs/default/web/main`) by the location hash, as
    /// a click on a link does, and waits for its first full render.
    pub fn show(&self, route: &str) -> Result<()> {
        self.browser
            .execute("location.hash = '#/' + arguments[0];", &[json!(route)])?;
        self.wait_view(route.split('/').next().unwrap_or(route))
    }

    /// Waits until `body[data-view=VIEW][data-ready="1"]`.
    pub fn wait_view(&self, view: &str) -> Result<()> {
        self.wait_view_within(view, VIEW_TIMEOUT)
    }

    fn wait_view_within(&self, view: &str, timeout: Duration) -> Result<()> {
        self.browser
            .wait(&format!("the {view} view to be ready"), timeout, |b| {
                let state = b.execute(
                    "return [document.body.dataset.view, document.body.dataset.ready];",
                    &[],
                )?;
                Ok((state[0] == json!(view) && state[1] == json!("1")).then_some(()))
            })
    }

    /// The `data-name`s of `table#TABLE`'s rows, in order.
    pub fn row_names(&self, table: &str) -> Result<Vec<String>> {
        let v = self.browser.execute(
            "const t = document.querySelector('table#' + arguments[0]);
             return t ? [...t.querySelectorAll('tr[data-name]')].map(r => r.dataset.name) : [];",
            &[json!(table)],
        )?;
        Ok(strings(&v))
    }

    /// The cells (`data-col` → text) of the row `name` of `table#TABLE`, if it is shown.
    pub fn row(&self, table: &str, name: &str) -> Result<Option<BTreeMap<String, String>>> {
        let v = self.browser.execute(
            "const t = document.querySelector('table#' + arguments[0]);
             const r = t && t.querySelector('tr[data-name=\"' + CSS.escape(arguments[1]) + '\"]');
             if (!r) return null;
             const cells = {};
             for (const td of r.querySelectorAll('td[data-col]')) cells[td.dataset.col] = td.innerText.trim();
             return cells;",
            &[json!(table), json!(name)],
        )?;
        Ok(v.as_object().map(|cells| {
            cells
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        }))
    }

    /// Waits until the row `name` of `table#TABLE` is shown and `pred` holds for its cells.
    pub fn wait_row(
        &self,
        table: &str,
        name: &str,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&BTreeMap<String, String>) -> bool,
    ) -> Result<BTreeMap<String, String>> {
        let mut last = None;
        let got = self.browser.wait(what, timeout, |_| {
            let row = self.row(table, name)?;
            let ok = row.as_ref().is_some_and(&pred);
            last = row.clone();
            Ok(if ok { row } else { None })
        });
        got.map_err(|e| match e {
            Error::Timeout { what, .. } => Error::Timeout {
                what: format!("{what} (row {table}/{name})"),
                last: format!("{last:?}"),
            },
            e => e,
        })
    }

    /// Empties `#notice`, so the next message is known to be the next action's.
    pub fn clear_notice(&self) -> Result<()> {
        self.browser.execute(
            "const n = document.querySelector('#notice'); n.textContent = ''; n.dataset.kind = '';",
            &[],
        )?;
        Ok(())
    }

    /// Waits for `#notice` to say something: its `data-kind` (`ok` or `error`) and its text.
    pub fn wait_notice(&self) -> Result<(String, String)> {
        self.browser.wait("a notice", VIEW_TIMEOUT, |b| {
            let v = b.execute(
                "const n = document.querySelector('#notice'); return [n.dataset.kind || '', n.innerText.trim()];",
                &[],
            )?;
            let kind = v[0].as_str().unwrap_or_default().to_string();
            let text = v[1].as_str().unwrap_or_default().to_string();
            Ok((!kind.is_empty() && !text.is_empty()).then_some((kind, text)))
        })
    }

    /// Scales the deployment `NS/NAME` from its row in the deployments view (shown first if it is
    /// not): the replicas field, then the scale button. The notice it gives.
    pub fn scale(&self, name: &str, replicas: u32) -> Result<(String, String)> {
        self.ensure_view("deployments")?;
        let row = row_selector("deployments", name);
        self.wait_row(
            "deployments",
            name,
            "the deployment's row",
            VIEW_TIMEOUT,
            |_| true,
        )?;
        self.clear_notice()?;
        let field = self
            .browser
            .get(&format!("{row} input[data-field=replicas]"))?;
        field.clear()?;
        field.send_keys(&replicas.to_string())?;
        self.browser
            .get(&format!("{row} button[data-action=scale]"))?
            .click()?;
        self.wait_notice()
    }

    /// Restarts the deployment `NS/NAME` from its row (as `kubectl rollout restart`).
    pub fn restart(&self, name: &str) -> Result<(String, String)> {
        self.ensure_view("deployments")?;
        self.click_in_row("deployments", name, "button[data-action=restart]")
    }

    /// Deletes the pod `NS/NAME` from its row in the pods view.
    pub fn delete_pod(&self, name: &str) -> Result<(String, String)> {
        self.ensure_view("pods")?;
        self.click_in_row("pods", name, "button[data-action=delete]")
    }

    /// The text of `pre#logs`.
    pub fn logs(&self) -> Result<String> {
        Ok(self.browser.text_of("pre#logs")?.unwrap_or_default())
    }

    /// The current view (`body[data-view]`).
    pub fn view(&self) -> Result<String> {
        let v = self
            .browser
            .execute("return document.body.dataset.view || '';", &[])?;
        Ok(v.as_str().unwrap_or_default().to_string())
    }

    fn ensure_view(&self, view: &str) -> Result<()> {
        if self.view()? == view {
            return Ok(());
        }
        self.show(view)
    }

    fn click_in_row(&self, table: &str, name: &str, what: &str) -> Result<(String, String)> {
        self.wait_row(table, name, "the row", VIEW_TIMEOUT, |_| true)?;
        self.clear_notice()?;
        self.browser
            .get(&format!("{} {what}", row_selector(table, name)))?
            .click()?;
        self.wait_notice()
    }
}

/// The CSS selector of the row `name` of `table#TABLE`.
pub fn row_selector(table: &str, name: &str) -> String {
    format!("table#{table} tr[data-name=\"{name}\"]")
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}
