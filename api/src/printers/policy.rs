//! policy/v1 PodDisruptionBudgets' columns: `N/A` for whichever of minAvailable/maxUnavailable is
//! unset, as kubectl prints them.

use serde_json::{Value, json};

use super::{Column, Printer, created, text};
use crate::resource::ResourceExt;
use crate::v1::PodDisruptionBudget;

impl Printer for PodDisruptionBudget {
    fn columns() -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Min Available",
                "The minimum number of pods that must be available",
            ),
            Column::new(
                "Max Unavailable",
                "The maximum number of pods that may be unavailable",
            ),
            Column::new(
                "Allowed Disruptions",
                "Calculated number of pods that may be disrupted at this time",
            )
            .integer(),
            Column::age(),
        ]
    }
    fn cells(&self) -> Vec<Value> {
        let spec = self.spec.clone().unwrap_or_default();
        let or_na =
            |v: Option<crate::IntOrString>| text(v.map_or("N/A".to_string(), |v| v.to_string()));
        vec![
            text(self.name()),
            or_na(spec.min_available),
            or_na(spec.max_unavailable),
            json!(self.status.as_ref().map_or(0, |s| s.disruptions_allowed)),
            created(self),
        ]
    }
}
