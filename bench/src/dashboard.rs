//! `bench/run dashboard`: the web dashboard's pods page with 1,000 pods in a real headless
//! Chromium (the tests' `browser` and `dashboard` modules), against one `skiff server` (embedded
//! store, no nodes: the pods stay Pending).
//!
//! - First full render: a fresh load of `/dashboard/#/pods` (logged in: the token is in the tab's
//!   sessionStorage), from the navigation's start to `body[data-ready="1"]` on the pods view with
//!   every row in the table, read inside the page: the `skiff-ready:pods` performance mark the
//!   page sets as it turns ready (docs/dashboard.md), whose time counts from the navigation's
//!   start. One load not counted, then `LOADS`.
//! - Change → shown: a pod's status written through the API (gRPC `UpdateStatus`, phase Pending →
//!   Running) until the pod's row's status cell says `Running` in the page (`Date.now()` in the
//!   page against the wall clock just before the write; same machine, same clock). `CHANGES`
//!   pods, one at a time. Beside it, the same changes seen by a plain gRPC watch in the bench
//!   process (the anchor: what the page adds to the watch).
//!
//! Goals (issue 25): each under 1 s. Must not: be run as a timed test.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use skiff_api::client::ListParams;
use skiff_api::v1::{Pod, PodStatus};
use skiff_tests::Cluster;
use skiff_tests::dashboard::Dashboard;
use tokio_stream::StreamExt;

use crate::objects::pod;
use crate::stats::percentile;

const PODS: usize = 1_000;
const LOADS: usize = 5;
const CHANGES: usize = 20;
const GOAL: Duration = Duration::from_secs(1);

/// Arms a promise that resolves with `Date.now()` once the row `arguments[0]`'s status cell says
/// `arguments[1]`.
const ARM_CHANGE: &str = r#"const [name, want] = arguments;
window.skiffSeen = new Promise((resolve) => {
  let observer = null;
  const check = () => {
    const cell = document.querySelector('table#pods tr[data-name="' + CSS.escape(name) + '"] td[data-col=status]');
    if (cell && cell.innerText.trim() === want) {
      if (observer) observer.disconnect();
      resolve(Date.now());
      return true;
    }
    return false;
  };
  if (!check()) {
    observer = new MutationObserver(check);
    observer.observe(document.querySelector('table#pods'), { subtree: true, childList: true, characterData: true });
  }
});"#;

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn epoch_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64() * 1e3)
        .unwrap_or(0.0)
}

fn s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn create_pods(cluster: &Cluster) -> Result<(), String> {
    let workers = 32;
    let mut tasks = Vec::new();
    for w in 0..workers {
        let api = cluster.api::<Pod>("default");
        tasks.push(tokio::spawn(async move {
            for i in (w..PODS).step_by(workers) {
                api.create(pod(&format!("bench-{i:04}"))).await.map_err(s)?;
            }
            Ok::<_, String>(())
        }));
    }
    for t in tasks {
        t.await.map_err(s)??;
    }
    Ok(())
}

pub fn run() -> Result<(), String> {
    let cluster = Cluster::start();
    let rt = tokio::runtime::Runtime::new().map_err(s)?;
    let _guard = rt.enter();
    let started = Instant::now();
    rt.block_on(create_pods(&cluster))?;
    eprintln!(
        "dashboard: {PODS} pods created in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let d = Dashboard::open(cluster.addr).map_err(s)?;
    d.login(&cluster.config().token).map_err(s)?;

    // First full render of the pods page, from a fresh load.
    let mut renders = Vec::new();
    for i in 0..=LOADS {
        d.browser.goto("about:blank").map_err(s)?;
        d.browser.goto(&format!("{}#/pods", d.base)).map_err(s)?;
        d.wait_view("pods").map_err(s)?;
        let v = d
            .browser
            .execute(
                "const m = performance.getEntriesByName('skiff-ready:pods');
                 return [m.length ? m[0].startTime : null,
                         document.querySelectorAll('table#pods tr[data-name]').length];",
                &[],
            )
            .map_err(s)?;
        let at = v[0]
            .as_f64()
            .ok_or("the page set no skiff-ready:pods mark")?;
        let rows = v[1].as_u64().unwrap_or(0) as usize;
        if rows < PODS {
            return Err(format!(
                "the pods view said ready with {rows} rows of {PODS}: not a full render"
            ));
        }
        if i > 0 {
            renders.push(Duration::from_secs_f64(at / 1e3));
        }
    }
    renders.sort();

    // Change → shown, beside a gRPC watch of the same pods.
    let api = cluster.api::<Pod>("default");
    let (_, meta) = rt.block_on(api.list(ListParams::default())).map_err(s)?;
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(String, f64)>();
    let watch_api = cluster.api::<Pod>("default");
    let watcher = rt.spawn(async move {
        let mut stream = watch_api
            .watch(ListParams::default(), &meta.resource_version)
            .await
            .map_err(s)?;
        while let Some(event) = stream.next().await {
            let pod = event.map_err(s)?.object;
            let running = pod.status.as_ref().is_some_and(|st| st.phase == "Running");
            if running {
                let name = pod.metadata.map(|m| m.name).unwrap_or_default();
                let _ = seen_tx.send((name, epoch_ms()));
            }
        }
        Ok::<_, String>(())
    });
    let mut page = Vec::new();
    let mut watch = Vec::new();
    for i in 0..CHANGES {
        let name = format!("bench-{:04}", i * (PODS / CHANGES));
        d.browser
            .execute(
                ARM_CHANGE,
                &[json!(format!("default/{name}")), json!("Running")],
            )
            .map_err(s)?;
        let mut p = rt.block_on(api.get(&name)).map_err(s)?;
        p.status.get_or_insert_with(PodStatus::default).phase = "Running".into();
        let t0 = epoch_ms();
        rt.block_on(api.update_status(p))
            .map_err(|e| format!("status of {name}: {e}"))?;
        let seen = d
            .browser
            .execute_async(
                "window.skiffSeen.then(arguments[arguments.length - 1]);",
                &[],
                Duration::from_secs(30),
            )
            .map_err(|e| format!("{name} never showed Running: {e}"))?;
        let at = seen.as_f64().ok_or("the page gave no time")?;
        page.push(Duration::from_secs_f64(((at - t0) / 1e3).max(0.0)));
        let watched = rt.block_on(async {
            loop {
                match tokio::time::timeout(Duration::from_secs(30), seen_rx.recv()).await {
                    Ok(Some((n, at))) if n == name => return Ok(at),
                    Ok(Some(_)) => continue,
                    _ => return Err(format!("the gRPC watch never saw {name} Running")),
                }
            }
        })?;
        watch.push(Duration::from_secs_f64(((watched - t0) / 1e3).max(0.0)));
    }
    watcher.abort();
    page.sort();
    watch.sort();

    let render_p50 = percentile(&renders, 0.5);
    let change_p50 = percentile(&page, 0.5);
    let watch_p50 = percentile(&watch, 0.5);
    println!("dashboard ({PODS} pods, headless chromium, pods page)");
    println!("| measure | runs | p50 | max |");
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| first full render (navigation start → {PODS} rows, ready) | {LOADS} | {} | {} |",
        ms(render_p50),
        ms(*renders.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "| pod status change → row shows it | {CHANGES} | {} | {} |",
        ms(change_p50),
        ms(*page.last().unwrap_or(&Duration::ZERO))
    );
    println!(
        "| anchor: same change → a gRPC watch sees it | {CHANGES} | {} | {} |",
        ms(watch_p50),
        ms(*watch.last().unwrap_or(&Duration::ZERO))
    );
    let goal = GOAL.as_secs_f64();
    println!(
        "dashboard: first render p50 {} and change shown p50 {} ({:.2}x and {:.2}x the 1 s goals; the gRPC watch sees the change in {})",
        ms(render_p50),
        ms(change_p50),
        render_p50.as_secs_f64() / goal,
        change_p50.as_secs_f64() / goal,
        ms(watch_p50),
    );
    Ok(())
}
