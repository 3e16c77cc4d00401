//! What the pod loop sees of a container attempt the shims run: an [`Instance`], the events that
//! change it, and why a start failed. No shim or protobuf type appears here: these are also what
//! the pod loop's fakes produce.

use std::collections::BTreeMap;
use std::time::SystemTime;

/// One attempt of a container, as the runtime knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// `<pod uid>/<container>/<attempt>`.
    pub id: String,
    pub pod_uid: String,
    pub container: String,
    pub attempt: u32,
    pub running: bool,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub started_at: SystemTime,
    pub finished_at: SystemTime,
    /// The container's `imageID`.
    pub digest: String,
}

impl Instance {
    /// Attempt `labels`, running since `started_at`; `digest` is its `imageID`.
    pub fn running(labels: &Labels, started_at: SystemTime, digest: String) -> Self {
        Instance {
            id: labels.instance_id(),
            pod_uid: labels.pod_uid.clone(),
            container: labels.container.clone(),
            attempt: labels.attempt,
            running: true,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            started_at,
            finished_at: std::time::UNIX_EPOCH,
            digest,
        }
    }

    /// Marks it ended with `code` at `at`, for `reason` and `message`.
    pub fn end(&mut self, code: i32, at: SystemTime, (reason, message): (String, String)) {
        self.running = false;
        self.exit_code = code;
        self.reason = reason;
        self.message = message;
        self.finished_at = at;
    }
}

/// What changed in the runtime.
#[derive(Debug, Clone)]
pub enum RuntimeEvent {
    Changed(Instance),
    Removed(Instance),
    /// Events may have been missed (a lagging subscriber): relist.
    Relist,
}

/// A start that did not happen: the message names the cause (bad module, missing file, ...).
#[derive(Debug, Clone)]
pub struct StartFailure {
    pub message: String,
    /// The runtime could not be reached (a shim is restarting): try again, it is not the
    /// workload's fault.
    pub retry: bool,
}

/// Annotations the agent puts in every bundle, to know the task's container again after a
/// restart (a task id is not always long enough to spell them).
pub const LABEL_POD_UID: &str = "skiff.dev/pod-uid";
pub const LABEL_CONTAINER: &str = "skiff.dev/container";
pub const LABEL_ATTEMPT: &str = "skiff.dev/attempt";
pub const LABEL_POD: &str = "skiff.dev/pod";
/// The container's `imageID` (a pulled image's manifest digest, or a module's digest).
pub const LABEL_IMAGE_ID: &str = "skiff.dev/image-id";

/// Whose a container attempt is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Labels {
    pub pod_uid: String,
    /// `namespace/name`.
    pub pod: String,
    pub container: String,
    pub attempt: u32,
    pub image_id: String,
}

impl Labels {
    /// The pod loop's id of this attempt.
    pub fn instance_id(&self) -> String {
        format!("{}/{}/{}", self.pod_uid, self.container, self.attempt)
    }

    pub fn to_annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_POD_UID.to_string(), self.pod_uid.clone()),
            (LABEL_POD.to_string(), self.pod.clone()),
            (LABEL_CONTAINER.to_string(), self.container.clone()),
            (LABEL_ATTEMPT.to_string(), self.attempt.to_string()),
            (LABEL_IMAGE_ID.to_string(), self.image_id.clone()),
        ])
    }

    /// The labels in a bundle's annotations; `None` if it is not the agent's.
    pub fn from_annotations<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        Some(Labels {
            pod_uid: get(LABEL_POD_UID)?.to_string(),
            pod: get(LABEL_POD).unwrap_or_default().to_string(),
            container: get(LABEL_CONTAINER)?.to_string(),
            attempt: get(LABEL_ATTEMPT)?.parse().ok()?,
            image_id: get(LABEL_IMAGE_ID).unwrap_or_default().to_string(),
        })
    }
}

/// The shim task id of an attempt: `<uid>_<container>_<attempt>` when that fits containerd's
/// 76 characters (uids and container names hold no `_`), else the container's name is shortened
/// to a hash of it. The labels in the bundle, not the id, say whose a task is.
pub fn task_id(labels: &Labels) -> String {
    let plain = format!("{}_{}_{}", labels.pod_uid, labels.container, labels.attempt);
    if plain.len() <= 76
        && plain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return plain;
    }
    use sha2::Digest;
    let hash = sha2::Sha256::digest(format!("{}/{}", labels.pod_uid, labels.container));
    let short: String = hash.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let uid: String = labels
        .pod_uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    format!("{uid}_{short}_{}", labels.attempt)
}

/// The reason and message a container's exit is reported with, as kubelet words them.
pub fn exit_reason(code: i32, oom: bool, stopped: bool) -> (String, String) {
    match code {
        0 => ("Completed".into(), String::new()),
        _ if oom => ("OOMKilled".into(), "the memory limit was reached".into()),
        _ if stopped => ("Error".into(), "stopped".into()),
        c if c > 128 => ("Error".into(), format!("killed by signal {}", c - 128)),
        _ => ("Error".into(), String::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(container: &str) -> Labels {
        Labels {
            pod_uid: "0d6b3c1e-8f0e-4b7a-9a51-3c1f2d4e5f60".into(),
            pod: "default/p".into(),
            container: container.into(),
            attempt: 3,
            image_id: "sha256:ab".into(),
        }
    }

    #[test]
    fn task_ids_are_containerd_ids_and_distinct() {
        let short = task_id(&labels("app"));
        assert_eq!(short, "0d6b3c1e-8f0e-4b7a-9a51-3c1f2d4e5f60_app_3");
        let long_a = task_id(&labels(&"a".repeat(63)));
        let long_b = task_id(&labels(&format!("{}b", "a".repeat(62))));
        for id in [&short, &long_a, &long_b] {
            crate::shim::records::check_id("task", id).unwrap();
        }
        assert_ne!(long_a, long_b);
    }

    #[test]
    fn labels_round_trip_through_annotations() {
        let l = labels("app");
        let a = l.to_annotations();
        assert_eq!(
            Labels::from_annotations(|k| a.get(k).map(String::as_str)),
            Some(l)
        );
        assert_eq!(Labels::from_annotations(|_| None), None);
    }

    #[test]
    fn exits_are_worded_as_kubelet_does() {
        assert_eq!(exit_reason(0, false, false).0, "Completed");
        assert_eq!(exit_reason(137, true, false).0, "OOMKilled");
        assert_eq!(exit_reason(143, false, true).1, "stopped");
        assert_eq!(exit_reason(137, false, false).1, "killed by signal 9");
    }
}
