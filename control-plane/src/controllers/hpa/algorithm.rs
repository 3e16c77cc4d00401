//! Kubernetes' HorizontalPodAutoscaler arithmetic, pure: the replica count one metric proposes
//! ([`proposal`]: `ceil(current * usage / target)` with the 0.1 tolerance and the missing-pods
//! rule), then the behavior ([`Behavior::normalize`]): the stabilisation windows over past
//! recommendations, the scale-up and scale-down policies over past scale events (`selectPolicy`
//! Max, Min or Disabled) and the min/max clamp, each with the condition reason Kubernetes gives.
//!
//! Must not: read the clock or any object: callers pass `now` and plain numbers.

use std::time::{Duration, Instant};

use skiff_api::v1::{HorizontalPodAutoscalerBehavior, HpaScalingRules};

/// Kubernetes' `--horizontal-pod-autoscaler-tolerance`.
pub const TOLERANCE: f64 = 0.1;

/// One pod's reading of one metric: its value (none: the pod reported no figures), for a
/// utilization target its request of the resource, and whether it is unready (Pending: not
/// started yet), as Kubernetes groups pods.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodReading {
    pub value: Option<f64>,
    pub request: f64,
    pub unready: bool,
}

/// What a metric is compared with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(f64),
    /// Per pod.
    AverageValue(f64),
}

/// One metric's proposal and the figure it read (utilization in percent, or the average value).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    pub current: f64,
}

/// The usage ratio of `readings` that have a value (usage / target), and the current figure.
fn ratio(readings: &[(f64, f64)], target: Target) -> (f64, f64) {
    let used: f64 = readings.iter().map(|(v, _)| v).sum();
    match target {
        Target::Utilization(percent) => {
            let requested: f64 = readings.iter().map(|(_, r)| r).sum();
            let utilization = if requested > 0.0 {
                used * 100.0 / requested
            } else {
                0.0
            };
            (utilization / percent, utilization)
        }
        Target::AverageValue(per_pod) => {
            let average = used / readings.len().max(1) as f64;
            (average / per_pod, average)
        }
    }
}

fn ceil(x: f64) -> i32 {
    let c = x.ceil();
    if c >= f64::from(i32::MAX) {
        i32::MAX
    } else {
        c as i32
    }
}

/// The replicas one metric asks for, given `current` replicas and the target's pods' readings
/// (Kubernetes' `GetResourceReplicas`/`GetMetricReplicas`): within [`TOLERANCE`] of the target it
/// stays; ready pods without figures (missing) count as at the target when scaling down and as
/// idle when scaling up; unready pods are left out when scaling down and count as idle when
/// scaling up; a proposal those pods would reverse keeps `current`. `None` when no ready pod has
/// figures.
pub fn proposal(current: i32, readings: &[PodReading], target: Target) -> Option<Proposal> {
    let known: Vec<(f64, f64)> = readings
        .iter()
        .filter(|r| !r.unready)
        .filter_map(|r| r.value.map(|v| (v, r.request)))
        .collect();
    if known.is_empty() {
        return None;
    }
    let (usage_ratio, figure) = ratio(&known, target);
    let missing: Vec<f64> = readings
        .iter()
        .filter(|r| !r.unready && r.value.is_none())
        .map(|r| r.request)
        .collect();
    let unready: Vec<f64> = if usage_ratio > 1.0 {
        readings
            .iter()
            .filter(|r| r.unready)
            .map(|r| r.request)
            .collect()
    } else {
        Vec::new()
    };
    if missing.is_empty() && unready.is_empty() {
        let replicas = if (usage_ratio - 1.0).abs() <= TOLERANCE {
            current
        } else {
            ceil(usage_ratio * known.len() as f64)
        };
        return Some(Proposal {
            replicas,
            current: figure,
        });
    }
    let mut all = known.clone();
    for request in missing {
        let value = if usage_ratio < 1.0 {
            match target {
                Target::Utilization(percent) => request * percent / 100.0,
                Target::AverageValue(per_pod) => per_pod,
            }
        } else {
            0.0
        };
        all.push((value, request));
    }
    all.extend(unready.into_iter().map(|request| (0.0, request)));
    let (new_ratio, _) = ratio(&all, target);
    let keep = (new_ratio - 1.0).abs() <= TOLERANCE
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0);
    let mut replicas = if keep {
        current
    } else {
        ceil(new_ratio * all.len() as f64)
    };
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        replicas = current;
    }
    Some(Proposal {
        replicas,
        current: figure,
    })
}

/// `selectPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Select {
    Max,
    Min,
    Disabled,
}

/// One policy: at most `value` pods (or percent) per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Pods { value: i32, period: Duration },
    Percent { value: i32, period: Duration },
}

impl Policy {
    fn period(self) -> Duration {
        match self {
            Policy::Pods { period, .. } | Policy::Percent { period, .. } => period,
        }
    }
}

/// One direction's rules, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub window: Duration,
    pub select: Select,
    pub policies: Vec<Policy>,
}

/// Both directions' rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub up: Rules,
    pub down: Rules,
}

fn secs(s: i32) -> Duration {
    Duration::from_secs(u64::try_from(s).unwrap_or(0))
}

fn rules(given: Option<&HpaScalingRules>, default: Rules) -> Rules {
    let Some(given) = given else { return default };
    Rules {
        window: given
            .stabilization_window_seconds
            .map_or(default.window, secs),
        select: match given.select_policy.as_str() {
            "Min" => Select::Min,
            "Disabled" => Select::Disabled,
            "Max" => Select::Max,
            _ => default.select,
        },
        policies: if given.policies.is_empty() {
            default.policies
        } else {
            given
                .policies
                .iter()
                .map(|p| match p.r#type.as_str() {
                    "Pods" => Policy::Pods {
                        value: p.value,
                        period: secs(p.period_seconds),
                    },
                    _ => Policy::Percent {
                        value: p.value,
                        period: secs(p.period_seconds),
                    },
                })
                .collect()
        },
    }
}

/// A scale event: when, and by how many replicas (always positive).
pub type ScaleEvent = (Instant, i32);

/// What one HPA remembers between syncs (Kubernetes keeps the same in its controller).
#[derive(Debug, Clone, Default)]
pub struct History {
    /// Each sync's proposal before stabilisation, and when.
    pub recommendations: Vec<(Instant, i32)>,
    pub ups: Vec<ScaleEvent>,
    pub downs: Vec<ScaleEvent>,
}

impl History {
    /// Records a rescale from `from` to `to` at `now`, forgetting events past every period.
    pub fn rescaled(&mut self, behavior: &Behavior, now: Instant, from: i32, to: i32) {
        if to > from {
            self.ups.push((now, to - from));
        } else if to < from {
            self.downs.push((now, from - to));
        }
        let keep = |rules: &Rules, events: &mut Vec<ScaleEvent>| {
            let longest = rules
                .policies
                .iter()
                .map(|p| p.period())
                .max()
                .unwrap_or_default();
            events.retain(|(at, _)| now.saturating_duration_since(*at) <= longest);
        };
        keep(&behavior.up, &mut self.ups);
        keep(&behavior.down, &mut self.downs);
    }
}

/// The outcome of [`Behavior::normalize`]: the replicas to scale to, and the reasons of the
/// `AbleToScale` and `ScalingLimited` conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    pub able: (&'static str, &'static str),
    /// (limited, reason, message).
    pub limited: (bool, &'static str, &'static str),
}

fn changed_within(events: &[ScaleEvent], now: Instant, period: Duration) -> i32 {
    events
        .iter()
        .filter(|(at, _)| now.saturating_duration_since(*at) < period)
        .map(|(_, n)| n)
        .sum()
}

impl Behavior {
    /// The HPA's behavior with Kubernetes' defaults: scale up at once by at most 4 pods or 100%
    /// per 15 s (whichever is more), scale down after a 300 s window by up to 100% per 15 s.
    pub fn of(given: Option<&HorizontalPodAutoscalerBehavior>) -> Self {
        let up = Rules {
            window: Duration::ZERO,
            select: Select::Max,
            policies: vec![
                Policy::Pods {
                    value: 4,
                    period: secs(15),
                },
                Policy::Percent {
                    value: 100,
                    period: secs(15),
                },
            ],
        };
        let down = Rules {
            window: secs(300),
            select: Select::Max,
            policies: vec![Policy::Percent {
                value: 100,
                period: secs(15),
            }],
        };
        Behavior {
            up: rules(given.and_then(|b| b.scale_up.as_ref()), up),
            down: rules(given.and_then(|b| b.scale_down.as_ref()), down),
        }
    }

    fn up_limit(&self, current: i32, history: &History, now: Instant) -> i32 {
        let (mut result, pick): (i64, fn(i64, i64) -> i64) = match self.up.select {
            Select::Disabled => return current,
            Select::Min => (i64::MAX, i64::min),
            Select::Max => (i64::MIN, i64::max),
        };
        for policy in &self.up.policies {
            let period = policy.period();
            let start = i64::from(current) - i64::from(changed_within(&history.ups, now, period))
                + i64::from(changed_within(&history.downs, now, period));
            let proposed = match policy {
                Policy::Pods { value, .. } => start + i64::from(*value),
                Policy::Percent { value, .. } => {
                    (start as f64 * (1.0 + f64::from(*value) / 100.0)).ceil() as i64
                }
            };
            result = pick(result, proposed);
        }
        i32::try_from(result.clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
    }

    fn down_limit(&self, current: i32, history: &History, now: Instant) -> i32 {
        let (mut result, pick): (i64, fn(i64, i64) -> i64) = match self.down.select {
            Select::Disabled => return current,
            Select::Min => (i64::MIN, i64::max),
            Select::Max => (i64::MAX, i64::min),
        };
        for policy in &self.down.policies {
            let period = policy.period();
            let start = i64::from(current) - i64::from(changed_within(&history.ups, now, period))
                + i64::from(changed_within(&history.downs, now, period));
            let proposed = match policy {
                Policy::Pods { value, .. } => start - i64::from(*value),
                Policy::Percent { value, .. } => {
                    (start as f64 * (1.0 - f64::from(*value) / 100.0)) as i64
                }
            };
            result = pick(result, proposed);
        }
        i32::try_from(result.clamp(0, i64::from(i32::MAX))).unwrap_or(i32::MAX)
    }

    /// Kubernetes' `normalizeDesiredReplicasWithBehaviors`: stabilises `desired` over the
    /// recommendations of the windows (recording it in `history`), then limits it by the policies
    /// and `min`/`max`.
    pub fn normalize(
        &self,
        history: &mut History,
        now: Instant,
        current: i32,
        desired: i32,
        (min, max): (i32, i32),
    ) -> Normalized {
        let (mut up, mut down) = (desired, desired);
        for (at, recommended) in &history.recommendations {
            let age = now.saturating_duration_since(*at);
            if age < self.up.window {
                up = up.min(*recommended);
            }
            if age < self.down.window {
                down = down.max(*recommended);
            }
        }
        let stabilized = current.max(up).min(down);
        history.recommendations.push((now, desired));
        let longest = self.up.window.max(self.down.window);
        history
            .recommendations
            .retain(|(at, _)| now.saturating_duration_since(*at) <= longest);
        let able = if stabilized == desired {
            ("ReadyForNewScale", "recommended size matches current size")
        } else if stabilized < desired {
            (
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation",
            )
        } else {
            (
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation",
            )
        };
        let within = (
            false,
            "DesiredWithinRange",
            "the desired count is within the acceptable range",
        );
        let (replicas, limited) = if stabilized > current {
            let limit = self.up_limit(current, history, now).max(current);
            let (allowed, reason, message) = if max > limit {
                (
                    limit,
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )
            } else {
                (
                    max,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            };
            if stabilized > allowed {
                (allowed, (true, reason, message))
            } else {
                (stabilized, within)
            }
        } else if stabilized < current {
            let limit = self.down_limit(current, history, now).min(current);
            let (allowed, reason, message) = if min < limit {
                (
                    limit,
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                )
            } else {
                (
                    min,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            };
            if stabilized < allowed {
                (allowed, (true, reason, message))
            } else {
                (stabilized, within)
            }
        } else {
            (stabilized, within)
        };
        Normalized {
            replicas,
            able,
            limited,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::v1::HpaScalingPolicy;

    fn pods(values: &[Option<f64>], request: f64) -> Vec<PodReading> {
        values
            .iter()
            .map(|v| PodReading {
                value: *v,
                request,
                unready: false,
            })
            .collect()
    }

    #[test]
    fn desired_is_ceil_of_current_times_usage_over_target() {
        // 2 pods at 90% of their request against a 50% target: ceil(2 * 1.8) = 4.
        let p = proposal(
            2,
            &pods(&[Some(90.0), Some(90.0)], 100.0),
            Target::Utilization(50.0),
        );
        assert_eq!(p.unwrap().replicas, 4);
        assert_eq!(p.unwrap().current, 90.0);
        // Within the tolerance: stays.
        let p = proposal(3, &pods(&[Some(54.0); 3], 100.0), Target::Utilization(50.0));
        assert_eq!(p.unwrap().replicas, 3);
        // Average value: 3 pods with 25 requests in flight each, target 10: ceil(7.5) = 8.
        let p = proposal(3, &pods(&[Some(25.0); 3], 0.0), Target::AverageValue(10.0));
        assert_eq!(p.unwrap().replicas, 8);
        // Idle: zero.
        let p = proposal(2, &pods(&[Some(0.0); 2], 0.0), Target::AverageValue(10.0));
        assert_eq!(p.unwrap().replicas, 0);
        assert_eq!(
            proposal(2, &pods(&[None, None], 1.0), Target::AverageValue(1.0)),
            None
        );
    }

    #[test]
    fn pods_without_figures_hold_a_scale_down_back() {
        // One idle pod reports, one does not: counted at the target, 2 * (0 + 50) / 2 / 50 = 0.5.
        let p = proposal(
            2,
            &pods(&[Some(0.0), None], 100.0),
            Target::Utilization(50.0),
        );
        assert_eq!(p.unwrap().replicas, 1);
        // Scaling up: the silent pod counts as idle, 200% + 0 over two pods = 100% of 50% → 4.
        let p = proposal(
            2,
            &pods(&[Some(200.0), None], 100.0),
            Target::Utilization(50.0),
        );
        assert_eq!(p.unwrap().replicas, 4);
    }

    #[test]
    fn pending_pods_are_unready_left_out_of_a_scale_down_and_idle_in_a_scale_up() {
        let pending = PodReading {
            value: None,
            request: 100.0,
            unready: true,
        };
        // Two idle ready pods and a Pending one: the Pending one is not counted at the target
        // (as a missing pod would be, holding the scale down back): 2 * 0 / 50 → 0.
        let mut readings = pods(&[Some(0.0), Some(0.0)], 100.0);
        readings.push(pending);
        assert_eq!(
            proposal(3, &readings, Target::Utilization(50.0))
                .unwrap()
                .replicas,
            0
        );
        // A ready pod missing its figures instead holds it back at the target: (0 + 50) / 2 → 1.
        let missing = pods(&[Some(0.0), None], 100.0);
        assert_eq!(
            proposal(2, &missing, Target::Utilization(50.0))
                .unwrap()
                .replicas,
            1
        );
        // Scaling up, the Pending pod counts as idle: (200 + 0) / 2 = 100% of 50% → 4.
        let mut readings = pods(&[Some(200.0)], 100.0);
        readings.push(pending);
        assert_eq!(
            proposal(2, &readings, Target::Utilization(50.0))
                .unwrap()
                .replicas,
            4
        );
        // Only Pending pods: no figures to go by.
        assert!(proposal(1, &[pending], Target::Utilization(50.0)).is_none());
    }

    fn behavior(down_window: i32, down_policies: Vec<HpaScalingPolicy>) -> Behavior {
        Behavior::of(Some(&HorizontalPodAutoscalerBehavior {
            scale_up: None,
            scale_down: Some(HpaScalingRules {
                stabilization_window_seconds: Some(down_window),
                select_policy: String::new(),
                policies: down_policies,
            }),
        }))
    }

    #[test]
    fn scale_down_waits_for_its_window() {
        let b = behavior(10, vec![]);
        let mut h = History::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(b.normalize(&mut h, at(0), 4, 4, (1, 10)).replicas, 4);
        // Load gone: the window still holds the 4 recommended 3 s ago.
        let n = b.normalize(&mut h, at(3), 4, 1, (1, 10));
        assert_eq!(n.replicas, 4);
        assert_eq!(n.able.0, "ScaleDownStabilized");
        // Past the window: down to the highest recommendation inside it (1).
        let n = b.normalize(&mut h, at(11), 4, 1, (1, 10));
        assert_eq!(n.replicas, 1);
        assert_eq!(n.able.0, "ReadyForNewScale");
    }

    #[test]
    fn scale_up_is_limited_by_its_policies_and_max() {
        let b = Behavior::of(None);
        let mut h = History::default();
        let now = Instant::now();
        // Default: max(current + 4, 2 * current) per 15 s: 1 → 5 at most.
        let n = b.normalize(&mut h, now, 1, 20, (1, 30));
        assert_eq!(n.replicas, 5);
        assert_eq!(n.limited, (true, "ScaleUpLimit", n.limited.2));
        h.rescaled(&b, now, 1, 5);
        // Within the same period the start is still 1: no further.
        let n = b.normalize(&mut h, now + Duration::from_secs(5), 5, 20, (1, 30));
        assert_eq!(n.replicas, 5);
        // Max wins when it is the lower bound.
        let n = b.normalize(&mut History::default(), now, 4, 20, (1, 6));
        assert_eq!(n.replicas, 6);
        assert_eq!(n.limited.1, "TooManyReplicas");
    }

    #[test]
    fn scale_down_policies_and_min_zero() {
        let b = behavior(
            0,
            vec![HpaScalingPolicy {
                r#type: "Pods".into(),
                value: 1,
                period_seconds: 60,
            }],
        );
        let mut h = History::default();
        let now = Instant::now();
        let n = b.normalize(&mut h, now, 3, 0, (0, 5));
        assert_eq!((n.replicas, n.limited.1), (2, "ScaleDownLimit"));
        h.rescaled(&b, now, 3, 2);
        assert_eq!(b.normalize(&mut h, now, 2, 0, (0, 5)).replicas, 2);
        // Default policy (100% per 15 s), no window: straight to zero.
        let b = behavior(0, vec![]);
        let n = b.normalize(&mut History::default(), now, 3, 0, (0, 5));
        assert_eq!((n.replicas, n.limited.0), (0, false));
        // Min 1 stops it there.
        let n = b.normalize(&mut History::default(), now, 3, 0, (1, 5));
        assert_eq!((n.replicas, n.limited.1), (1, "TooFewReplicas"));
    }

    #[test]
    fn disabled_and_min_select_policies() {
        let mut b = Behavior::of(None);
        b.up.select = Select::Disabled;
        let now = Instant::now();
        assert_eq!(
            b.normalize(&mut History::default(), now, 2, 9, (1, 10))
                .replicas,
            2
        );
        b.up.select = Select::Min;
        // min(2 + 4, 2 * 2) = 4.
        assert_eq!(
            b.normalize(&mut History::default(), now, 2, 9, (1, 10))
                .replicas,
            4
        );
    }
}
