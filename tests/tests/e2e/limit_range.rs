//! LimitRange end to end: `skiff apply` of a LimitRange (stored defaulted, listed by `skiff get
//! limitranges`); a Wasm pod without resources gets its default limit and request and runs; a pod
//! above the maximum is refused with Kubernetes' message (exit 1); a LimitRange whose min is above
//! its max is refused, naming the field (exit 2).

use std::time::Duration;

use skiff_tests::{Cluster, stderr, stdout, text, wait_for};

fn pod(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  runtimeClassName: wasm\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 0\n  containers:\n  - name: app\n    image: file:{}\n    command: [probe]\n    args: [echo, ok]\n{resources}",
        skiff_tests::guests::guest("probe").display()
    )
}

#[test]
fn limit_ranges_default_and_bound_pods() {
    let mut c = Cluster::start();
    c.add_agent("node-1");
    // Quantities as YAML numbers are taken as text here too.
    c.apply(
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: mem\nspec:\n  limits:\n  - type: Container\n    max: {memory: 256Mi}\n    default: {memory: 64Mi}\n    min: {cpu: 0.01}\n",
    );
    let lr = c.get_json("limitrange", "mem").expect("limitrange");
    assert_eq!(
        lr["spec"]["limits"][0]["defaultRequest"]["memory"], "64Mi",
        "{lr:#}"
    );
    assert_eq!(
        lr["spec"]["limits"][0]["defaultRequest"]["cpu"], "0.01",
        "{lr:#}"
    );
    let out = c.skiff(&["get", "limits"]);
    assert!(stdout(&out).contains("mem"), "{}", text(&out));

    c.apply(&pod("bare", ""));
    let p = c.get_json("pod", "bare").expect("pod");
    let res = &p["spec"]["containers"][0]["resources"];
    assert_eq!(res["limits"]["memory"], "64Mi", "{p:#}");
    assert_eq!(res["requests"]["memory"], "64Mi", "{p:#}");
    assert_eq!(res["requests"]["cpu"], "0.01", "{p:#}");
    wait_for("pod bare Succeeded", Duration::from_secs(60), || {
        let p = c.get_json("pod", "bare")?;
        (p["status"]["phase"] == "Succeeded").then_some(())
    });

    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        &pod("big", "    resources:\n      limits: {memory: 1Gi}\n"),
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        stderr(&out).contains("pods \"big\" is forbidden: [maximum memory usage per Container is 256Mi, but limit is 1Gi]"),
        "{}",
        text(&out)
    );

    let out = c.skiff_stdin(
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: odd\nspec:\n  limits:\n  - type: Container\n    max: {cpu: 1}\n    min: {cpu: 2}\n",
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("spec.limits[0].min[cpu]: min value 2 is greater than max value 1"),
        "{}",
        text(&out)
    );
}
