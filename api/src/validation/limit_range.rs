//! LimitRange (v1): the rules of Kubernetes' validation and defaulting, and what a LimitRange
//! does to a pod (Kubernetes' LimitRanger admission), as pure functions the control plane's
//! admission link calls.
//!
//! - [`default_item`]: a Container item's `default` comes from `max`, its `defaultRequest` from
//!   `default`, then from `min` (Kubernetes' `SetDefaults_LimitRangeItem`).
//! - [`validate_limit_range`]: types `Container` and `Pod`; quantities; per resource
//!   `min <= defaultRequest <= default <= max`; no defaults on a Pod item; ratios at least 1.
//! - [`apply_defaults`]: a container's missing limits and requests from the Container items.
//! - [`check_pod`]: a pod's containers (and, for a Pod item, their sums) against min, max and the
//!   ratio, with Kubernetes' messages (`maximum memory usage per Container is 1Gi, but limit is
//!   2Gi`).
//!
//! Must not: read the store (the admission link lists the namespace's LimitRanges).

use std::collections::BTreeMap;

use super::{FieldErrors, check_quantity};
use crate::quantity::Quantity;
use crate::v1::{Container, LimitRange, LimitRangeItem, PodSpec, ResourceRequirements};

pub const CONTAINER: &str = "Container";
pub const POD: &str = "Pod";

type Resources = BTreeMap<String, String>;

/// Kubernetes' defaulting of a Container item (the server runs it before validation).
pub fn default_item(item: &mut LimitRangeItem) {
    if item.r#type != CONTAINER {
        return;
    }
    for (k, v) in &item.max {
        item.r#default.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in &item.r#default {
        item.default_request
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
    for (k, v) in &item.min {
        item.default_request
            .entry(k.clone())
            .or_insert_with(|| v.clone());
    }
}

/// Every item of `lr` defaulted.
pub fn default_limit_range(lr: &mut LimitRange) {
    if let Some(spec) = lr.spec.as_mut() {
        spec.limits.iter_mut().for_each(default_item);
    }
}

pub fn validate_limit_range(lr: &LimitRange, errors: &mut FieldErrors) {
    let Some(spec) = &lr.spec else {
        errors.add("spec", "required");
        return;
    };
    for (i, item) in spec.limits.iter().enumerate() {
        let path = format!("spec.limits[{i}]");
        match item.r#type.as_str() {
            CONTAINER | POD => {}
            "PersistentVolumeClaim" => errors.add(
                format!("{path}.type"),
                "\"PersistentVolumeClaim\" is not supported: skiff's claims request no storage size",
            ),
            "" => errors.add(format!("{path}.type"), "required: Container or Pod"),
            other => errors.add(
                format!("{path}.type"),
                format!("unsupported value {other:?}: supported values are \"Container\", \"Pod\""),
            ),
        }
        if item.r#type == POD {
            for (field, map) in [
                ("default", &item.r#default),
                ("defaultRequest", &item.default_request),
            ] {
                if !map.is_empty() {
                    errors.add(
                        format!("{path}.{field}"),
                        "may not be specified when `type` is 'Pod'",
                    );
                }
            }
        }
        let mut parsed: BTreeMap<&str, BTreeMap<&str, Quantity>> = BTreeMap::new();
        for (field, map) in [
            ("max", &item.max),
            ("min", &item.min),
            ("default", &item.r#default),
            ("defaultRequest", &item.default_request),
            ("maxLimitRequestRatio", &item.max_limit_request_ratio),
        ] {
            for (resource, value) in map {
                let qpath = format!("{path}.{field}[{resource}]");
                if !matches!(resource.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                    errors.add(
                        qpath.clone(),
                        format!("unsupported resource {resource:?}: supported are cpu, memory, ephemeral-storage"),
                    );
                }
                if let Some(q) = check_quantity(value, &qpath, errors) {
                    parsed.entry(field).or_default().insert(resource, q);
                }
            }
        }
        let get = |field: &str, r: &str| parsed.get(field).and_then(|m| m.get(r)).copied();
        let resources: std::collections::BTreeSet<&str> =
            parsed.values().flat_map(|m| m.keys().copied()).collect();
        for r in resources {
            let (min, max) = (get("min", r), get("max", r));
            let (default, request) = (get("default", r), get("defaultRequest", r));
            let ratio = get("maxLimitRequestRatio", r);
            let pairs = [
                (min, "min", max, "max"),
                (min, "min", request, "defaultRequest"),
                (request, "defaultRequest", default, "default"),
                (default, "default", max, "max"),
                (min, "min", default, "default"),
                (request, "defaultRequest", max, "max"),
            ];
            for (lo, lo_name, hi, hi_name) in pairs {
                if let (Some(lo), Some(hi)) = (lo, hi)
                    && lo > hi
                {
                    errors.add(
                        format!("{path}.{lo_name}[{r}]"),
                        format!("{lo_name} value {lo} is greater than {hi_name} value {hi}"),
                    );
                }
            }
            if let Some(ratio) = ratio
                && ratio.millis() < 1000
            {
                errors.add(
                    format!("{path}.maxLimitRequestRatio[{r}]"),
                    format!("ratio {ratio} is less than 1"),
                );
            }
        }
    }
}

/// The Container items' defaults, onto every container (init containers too) of `spec` that
/// does not set them. Returns whether anything changed.
pub fn apply_defaults(ranges: &[LimitRange], spec: &mut PodSpec) -> bool {
    let mut changed = false;
    let items: Vec<LimitRangeItem> = ranges
        .iter()
        .filter_map(|lr| lr.spec.as_ref())
        .flat_map(|s| s.limits.iter())
        .filter(|i| i.r#type == CONTAINER)
        .cloned()
        .map(|mut i| {
            default_item(&mut i);
            i
        })
        .collect();
    if items.is_empty() {
        return false;
    }
    for c in spec
        .init_containers
        .iter_mut()
        .chain(spec.containers.iter_mut())
    {
        let res = c
            .resources
            .get_or_insert_with(ResourceRequirements::default);
        for item in &items {
            for (k, v) in &item.r#default {
                if !res.limits.contains_key(k) {
                    res.limits.insert(k.clone(), v.clone());
                    changed = true;
                }
            }
            for (k, v) in &item.default_request {
                if !res.requests.contains_key(k) {
                    // A request above the container's own limit would make the pod invalid:
                    // Kubernetes takes the limit as the request then.
                    let value = match (res.limits.get(k), Quantity::parse(v)) {
                        (Some(limit), Ok(req)) if Quantity::parse(limit).is_ok_and(|l| l < req) => {
                            limit.clone()
                        }
                        _ => v.clone(),
                    };
                    res.requests.insert(k.clone(), value);
                    changed = true;
                }
            }
        }
        if res.limits.is_empty() && res.requests.is_empty() && !changed {
            c.resources = None;
        }
    }
    changed
}

fn quantity(map: &Resources, r: &str) -> Option<Quantity> {
    map.get(r).and_then(|v| Quantity::parse(v).ok())
}

fn requests_limits(c: &Container) -> (Resources, Resources) {
    c.resources
        .as_ref()
        .map(|r| (r.requests.clone(), r.limits.clone()))
        .unwrap_or_default()
}

/// What `spec` violates in the namespace's `ranges`, in Kubernetes' words.
pub fn check_pod(ranges: &[LimitRange], spec: &PodSpec) -> Vec<String> {
    let mut out = Vec::new();
    let items = ranges
        .iter()
        .filter_map(|lr| lr.spec.as_ref())
        .flat_map(|s| s.limits.iter());
    for item in items {
        let (scope, subjects): (&str, Vec<(Resources, Resources)>) = match item.r#type.as_str() {
            CONTAINER => (
                "Container",
                spec.init_containers
                    .iter()
                    .chain(&spec.containers)
                    .map(requests_limits)
                    .collect(),
            ),
            POD => {
                // The pod's sums over its app containers (init containers run one at a time).
                let mut requests = Resources::new();
                let mut limits = Resources::new();
                for c in &spec.containers {
                    let (r, l) = requests_limits(c);
                    add_into(&mut requests, &r);
                    add_into(&mut limits, &l);
                }
                ("Pod", vec![(requests, limits)])
            }
            _ => continue,
        };
        for (requests, limits) in subjects {
            for (r, min) in &item.min {
                let Ok(min) = Quantity::parse(min) else {
                    continue;
                };
                match quantity(&requests, r) {
                    None => out.push(format!(
                        "minimum {r} usage per {scope} is {min}.  No request is specified"
                    )),
                    Some(req) if req < min => out.push(format!(
                        "minimum {r} usage per {scope} is {min}, but request is {req}"
                    )),
                    _ => {}
                }
            }
            for (r, max) in &item.max {
                let Ok(max) = Quantity::parse(max) else {
                    continue;
                };
                match quantity(&limits, r) {
                    None => out.push(format!(
                        "maximum {r} usage per {scope} is {max}.  No limit is specified"
                    )),
                    Some(lim) if lim > max => out.push(format!(
                        "maximum {r} usage per {scope} is {max}, but limit is {lim}"
                    )),
                    _ => {}
                }
            }
            for (r, ratio) in &item.max_limit_request_ratio {
                let Ok(ratio) = Quantity::parse(ratio) else {
                    continue;
                };
                let (Some(lim), Some(req)) = (quantity(&limits, r), quantity(&requests, r)) else {
                    if quantity(&limits, r).is_none() {
                        out.push(format!("{r} max limit to request ratio per {scope} is {ratio}, but no limit is specified"));
                    } else {
                        out.push(format!("{r} max limit to request ratio per {scope} is {ratio}, but no request is specified or request is 0"));
                    }
                    continue;
                };
                if req.millis() <= 0 {
                    out.push(format!("{r} max limit to request ratio per {scope} is {ratio}, but no request is specified or request is 0"));
                    continue;
                }
                // limit / request > ratio, in integers: limit * 1000 > ratio_millis * request.
                let lhs = i128::from(lim.millis()) * 1000;
                let rhs = i128::from(ratio.millis()) * i128::from(req.millis());
                if lhs > rhs {
                    let shown = lhs as f64 / (i128::from(req.millis()) * 1000) as f64;
                    out.push(format!(
                        "{r} max limit to request ratio per {scope} is {ratio}, but provided ratio is {shown:.6}"
                    ));
                }
            }
        }
    }
    out
}

fn add_into(sum: &mut Resources, more: &Resources) {
    for (k, v) in more {
        let Ok(q) = Quantity::parse(v) else { continue };
        let total = match sum.get(k).and_then(|s| Quantity::parse(s).ok()) {
            Some(s) => Quantity::from_millis(s.millis().saturating_add(q.millis())),
            None => q,
        };
        sum.insert(k.clone(), total.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::LimitRangeSpec;

    fn map(pairs: &[(&str, &str)]) -> Resources {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn range(item: LimitRangeItem) -> LimitRange {
        LimitRange {
            metadata: None,
            spec: Some(LimitRangeSpec { limits: vec![item] }),
        }
    }

    fn container(name: &str, requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Container {
        Container {
            name: name.into(),
            image: "x".into(),
            resources: Some(ResourceRequirements {
                requests: map(requests),
                limits: map(limits),
            }),
            ..Default::default()
        }
    }

    fn errors_of(lr: &LimitRange) -> String {
        let mut errors = FieldErrors::default();
        validate_limit_range(lr, &mut errors);
        errors.to_string()
    }

    #[test]
    fn defaults_follow_kubernetes_and_bad_ranges_are_refused() {
        let mut item = LimitRangeItem {
            r#type: CONTAINER.into(),
            max: map(&[("memory", "1Gi")]),
            min: map(&[("cpu", "100m")]),
            ..Default::default()
        };
        default_item(&mut item);
        assert_eq!(item.r#default, map(&[("memory", "1Gi")]));
        assert_eq!(
            item.default_request,
            map(&[("memory", "1Gi"), ("cpu", "100m")])
        );
        assert_eq!(errors_of(&range(item)), "");

        let bad = range(LimitRangeItem {
            r#type: POD.into(),
            max: map(&[("memory", "1Gi")]),
            min: map(&[("memory", "2Gi"), ("gpu", "1")]),
            r#default: map(&[("cpu", "1")]),
            max_limit_request_ratio: map(&[("cpu", "500m")]),
            ..Default::default()
        });
        let e = errors_of(&bad);
        for want in [
            "spec.limits[0].default: may not be specified when `type` is 'Pod'",
            "spec.limits[0].min[gpu]: unsupported resource \"gpu\"",
            "spec.limits[0].min[memory]: min value 2Gi is greater than max value 1Gi",
            "spec.limits[0].maxLimitRequestRatio[cpu]: ratio 500m is less than 1",
        ] {
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = errors_of(&range(LimitRangeItem {
            r#type: "PersistentVolumeClaim".into(),
            ..Default::default()
        }));
        assert!(
            e.contains("spec.limits[0].type: \"PersistentVolumeClaim\" is not supported"),
            "{e}"
        );
    }

    #[test]
    fn containers_get_missing_limits_and_requests() {
        let ranges = [range(LimitRangeItem {
            r#type: CONTAINER.into(),
            r#default: map(&[("memory", "256Mi"), ("cpu", "500m")]),
            default_request: map(&[("memory", "128Mi"), ("cpu", "250m")]),
            ..Default::default()
        })];
        let mut spec = PodSpec {
            containers: vec![
                Container {
                    name: "bare".into(),
                    ..Default::default()
                },
                container("own", &[("cpu", "1")], &[("memory", "64Mi")]),
            ],
            ..Default::default()
        };
        assert!(apply_defaults(&ranges, &mut spec));
        let res = |i: usize| spec.containers[i].resources.clone().unwrap_or_default();
        assert_eq!(res(0).limits, map(&[("cpu", "500m"), ("memory", "256Mi")]));
        assert_eq!(
            res(0).requests,
            map(&[("cpu", "250m"), ("memory", "128Mi")])
        );
        // Its own values stay; a default request above its own limit becomes the limit.
        assert_eq!(res(1).limits, map(&[("cpu", "500m"), ("memory", "64Mi")]));
        assert_eq!(res(1).requests, map(&[("cpu", "1"), ("memory", "64Mi")]));
        assert!(
            !apply_defaults(&ranges, &mut spec),
            "a second pass changes nothing"
        );
    }

    #[test]
    fn pods_outside_the_bounds_are_named_in_kubernetes_words() {
        let ranges = [
            range(LimitRangeItem {
                r#type: CONTAINER.into(),
                max: map(&[("memory", "1Gi")]),
                min: map(&[("cpu", "100m")]),
                max_limit_request_ratio: map(&[("cpu", "2")]),
                ..Default::default()
            }),
            range(LimitRangeItem {
                r#type: POD.into(),
                max: map(&[("cpu", "1")]),
                ..Default::default()
            }),
        ];
        let spec = PodSpec {
            containers: vec![
                container(
                    "a",
                    &[("cpu", "50m")],
                    &[("memory", "2Gi"), ("cpu", "800m")],
                ),
                container(
                    "b",
                    &[("cpu", "200m")],
                    &[("memory", "1Gi"), ("cpu", "400m")],
                ),
            ],
            ..Default::default()
        };
        let found = check_pod(&ranges, &spec);
        assert_eq!(
            found,
            [
                "minimum cpu usage per Container is 100m, but request is 50m",
                "maximum memory usage per Container is 1Gi, but limit is 2Gi",
                "cpu max limit to request ratio per Container is 2, but provided ratio is 16.000000",
                "maximum cpu usage per Pod is 1, but limit is 1200m",
            ]
        );
        let fine = PodSpec {
            containers: vec![container(
                "a",
                &[("cpu", "200m")],
                &[("memory", "1Gi"), ("cpu", "400m")],
            )],
            ..Default::default()
        };
        assert!(check_pod(&ranges, &fine).is_empty());
    }
}
