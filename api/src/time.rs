//! Timestamps as the API carries them (protobuf `Timestamp`, whole seconds like Kubernetes) and
//! the human forms the CLI prints (`5s`, `3m12s`, `2d`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pbjson_types::Timestamp;

/// Now, truncated to the second.
pub fn now() -> Timestamp {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    Timestamp {
        seconds: i64::try_from(secs).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// Time elapsed since `ts` (zero if in the future).
pub fn since(ts: &Timestamp) -> Duration {
    let then = UNIX_EPOCH + Duration::from_secs(u64::try_from(ts.seconds).unwrap_or(0));
    SystemTime::now().duration_since(then).unwrap_or_default()
}

/// kubectl's short age (Kubernetes' `HumanDuration`): `45s`, `3m12s`, `5m`, `5h`, `2d3h`,
/// `400d`, `2y30d`, `9y`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..120 => format!("{s}s"),
        120..600 if s.is_multiple_of(60) => format!("{}m", s / 60),
        120..600 => format!("{}m{}s", s / 60, s % 60),
        600..10800 => format!("{}m", s / 60),
        10800..172800 => {
            let (h, m) = (s / 3600, (s % 3600) / 60);
            if h < 8 && m > 0 {
                format!("{h}h{m}m")
            } else {
                format!("{h}h")
            }
        }
        172800..63072000 => {
            let (d, h) = (s / 86400, (s % 86400) / 3600);
            if d < 8 && h > 0 {
                format!("{d}d{h}h")
            } else {
                format!("{d}d")
            }
        }
        63072000..252288000 => {
            let (y, d) = (s / 86400 / 365, (s / 86400) % 365);
            if d > 0 {
                format!("{y}y{d}d")
            } else {
                format!("{y}y")
            }
        }
        _ => format!("{}y", s / 86400 / 365),
    }
}

/// The age column of `skiff get`: `<unknown>` when there is no timestamp.
pub fn age(ts: Option<&Timestamp>) -> String {
    ts.map_or_else(|| "<unknown>".to_string(), |t| human_duration(since(t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_like_kubectl() {
        assert_eq!(human_duration(Duration::from_secs(5)), "5s");
        assert_eq!(human_duration(Duration::from_secs(192)), "3m12s");
        assert_eq!(human_duration(Duration::from_secs(900)), "15m");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 120)), "3h2m");
        assert_eq!(
            human_duration(Duration::from_secs(86400 * 2 + 3600)),
            "2d1h"
        );
        assert_eq!(human_duration(Duration::from_secs(86400 * 400)), "400d");
        assert_eq!(human_duration(Duration::from_secs(300)), "5m");
        assert_eq!(human_duration(Duration::from_secs(86400 * 800)), "2y70d");
        assert_eq!(human_duration(Duration::from_secs(86400 * 365 * 9)), "9y");
    }
}
