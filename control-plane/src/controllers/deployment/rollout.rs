//! How a Deployment moves from its old ReplicaSets to the new one: pure arithmetic over counts,
//! the rules of Kubernetes' rolling update and recreate strategies. No I/O.
//!
//! Rolling update: the new set grows while all sets together stay within `replicas + maxSurge`;
//! old sets shrink while at least `replicas - maxUnavailable` pods stay available (unhealthy old
//! pods go first, since removing them costs no availability). Recreate: old sets go to zero, and
//! the new one grows once none of their pods remain.

/// What the planner needs to know of one ReplicaSet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetView {
    pub name: String,
    /// `spec.replicas`: what it is asked to run.
    pub desired: i32,
    /// `status.replicas`: active pods it has.
    pub current: i32,
    /// `status.availableReplicas`.
    pub available: i32,
    pub revision: i64,
}

/// `maxSurge` and `maxUnavailable` resolved against `replicas` (surge rounds up, unavailability
/// down, and both zero means one unavailable, as Kubernetes).
pub fn resolve_limits(
    replicas: i32,
    max_surge: Option<&skiff_api::IntOrString>,
    max_unavailable: Option<&skiff_api::IntOrString>,
) -> (i32, i32) {
    let quarter = skiff_api::IntOrString::string("25%");
    let surge = max_surge
        .unwrap_or(&quarter)
        .scaled_value(replicas, true)
        .unwrap_or(0)
        .max(0);
    let mut unavailable = max_unavailable
        .unwrap_or(&quarter)
        .scaled_value(replicas, false)
        .unwrap_or(0)
        .clamp(0, replicas.max(0));
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// New `spec.replicas` per set name (only the sets that change).
pub type Scaling = Vec<(String, i32)>;

/// One step of a rolling update. `olds` oldest first.
pub fn rolling(
    replicas: i32,
    surge: i32,
    unavailable: i32,
    new: &SetView,
    olds: &[SetView],
) -> Scaling {
    let mut out = Scaling::new();
    let old_desired: i32 = olds.iter().map(|s| s.desired).sum();
    // Scale the new set toward `replicas`, within the surge budget.
    if new.desired > replicas {
        out.push((new.name.clone(), replicas));
        return out;
    }
    if new.desired < replicas {
        let room = (replicas + surge) - (old_desired + new.desired);
        let target = (new.desired + room.max(0)).min(replicas);
        if target > new.desired {
            out.push((new.name.clone(), target));
            return out;
        }
    }
    // Scale old sets down, keeping `replicas - unavailable` available.
    let min_available = replicas - unavailable;
    let new_unavailable = (new.desired - new.available).max(0);
    let all = old_desired + new.desired;
    let mut budget = all - min_available - new_unavailable;
    if budget <= 0 {
        return out;
    }
    let mut desired: Vec<i32> = olds.iter().map(|s| s.desired).collect();
    // First the unhealthy old pods: removing them costs no availability.
    for (i, set) in olds.iter().enumerate() {
        if budget <= 0 {
            break;
        }
        let unhealthy = (desired[i] - set.available).max(0);
        let cut = unhealthy.min(budget);
        desired[i] -= cut;
        budget -= cut;
    }
    // Then healthy ones, as far as availability allows.
    let available: i32 = olds.iter().map(|s| s.available).sum::<i32>() + new.available;
    let mut healthy_budget = (available - min_available).min(budget);
    for (i, _) in olds.iter().enumerate() {
        if healthy_budget <= 0 {
            break;
        }
        let cut = desired[i].min(healthy_budget);
        desired[i] -= cut;
        healthy_budget -= cut;
    }
    for (set, d) in olds.iter().zip(desired) {
        if d != set.desired {
            out.push((set.name.clone(), d));
        }
    }
    out
}

/// One step of a recreate: old sets to zero; the new set up once no old pod remains.
pub fn recreate(replicas: i32, new: &SetView, olds: &[SetView]) -> Scaling {
    let shrink: Scaling = olds
        .iter()
        .filter(|s| s.desired > 0)
        .map(|s| (s.name.clone(), 0))
        .collect();
    if !shrink.is_empty() {
        return shrink;
    }
    if olds.iter().any(|s| s.current > 0) || new.desired == replicas {
        return Scaling::new();
    }
    vec![(new.name.clone(), replicas)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::IntOrString;

    fn set(name: &str, desired: i32, available: i32) -> SetView {
        SetView {
            name: name.into(),
            desired,
            current: desired,
            available,
            revision: 0,
        }
    }

    /// Runs a rollout to the end, pods becoming available as soon as they are asked for, and
    /// checks the invariants at every step.
    fn simulate(replicas: i32, surge: i32, unavailable: i32) -> usize {
        let mut new = set("new", 0, 0);
        let mut olds = vec![set("old", replicas, replicas)];
        for step in 0..100 {
            let plan = rolling(replicas, surge, unavailable, &new, &olds);
            if plan.is_empty() {
                assert_eq!(new.desired, replicas);
                assert!(olds.iter().all(|s| s.desired == 0), "{olds:?}");
                return step;
            }
            for (name, n) in plan {
                if name == "new" {
                    new.desired = n;
                } else if let Some(s) = olds.iter_mut().find(|s| s.name == name) {
                    s.desired = n;
                    s.available = s.available.min(n);
                }
            }
            let total: i32 = new.desired + olds.iter().map(|s| s.desired).sum::<i32>();
            let available: i32 = new.available + olds.iter().map(|s| s.available).sum::<i32>();
            assert!(total <= replicas + surge, "surge exceeded at step {step}");
            assert!(
                available >= replicas - unavailable,
                "availability {available} below {} at step {step}",
                replicas - unavailable
            );
            new.available = new.desired;
        }
        panic!("rollout did not finish");
    }

    #[test]
    fn rolling_update_keeps_surge_and_availability() {
        for (r, s, u) in [(3, 1, 0), (3, 0, 1), (10, 3, 2), (1, 1, 0), (9, 2, 0)] {
            simulate(r, s, u);
        }
    }

    #[test]
    fn unhealthy_old_pods_go_first() {
        // 3 old pods, none available: they can all go at once with maxUnavailable 1... and the
        // new set is already full and available.
        let new = set("new", 3, 3);
        let olds = vec![set("old", 3, 0)];
        assert_eq!(rolling(3, 1, 0, &new, &olds), vec![("old".into(), 0)]);
    }

    #[test]
    fn new_set_waits_for_availability_before_old_shrinks() {
        // Surge used, new pod not yet available, maxUnavailable 0: nothing to do.
        let new = set("new", 1, 0);
        let olds = vec![set("old", 3, 3)];
        assert!(rolling(3, 1, 0, &new, &olds).is_empty());
    }

    #[test]
    fn scale_down_of_the_new_set() {
        let new = set("new", 5, 5);
        assert_eq!(rolling(2, 1, 0, &new, &[]), vec![("new".into(), 2)]);
    }

    #[test]
    fn limits_resolve_like_kubernetes() {
        assert_eq!(resolve_limits(4, None, None), (1, 1));
        assert_eq!(resolve_limits(10, None, None), (3, 2));
        let zero = IntOrString::int(0);
        assert_eq!(resolve_limits(3, Some(&zero), Some(&zero)), (0, 1));
        let half = IntOrString::string("50%");
        assert_eq!(resolve_limits(3, Some(&half), Some(&half)), (2, 1));
    }

    #[test]
    fn recreate_waits_for_old_pods_to_go() {
        let new = set("new", 0, 0);
        let mut old = set("old", 2, 2);
        assert_eq!(
            recreate(2, &new, std::slice::from_ref(&old)),
            vec![("old".into(), 0)]
        );
        old.desired = 0;
        assert!(recreate(2, &new, std::slice::from_ref(&old)).is_empty());
        old.current = 0;
        assert_eq!(recreate(2, &new, &[old]), vec![("new".into(), 2)]);
    }
}
