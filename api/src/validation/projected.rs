//! Validation of `projected` volumes (Kubernetes' `validateProjectedVolumeSource`): each source
//! sets exactly one of secret, configMap, downwardAPI, serviceAccountToken; file paths are
//! relative, without `..`, and unique across the sources; a token lives at least 10 minutes.
//!
//! The downward API gives only the pod's own metadata (`metadata.namespace`, `metadata.name`,
//! `metadata.uid`, `metadata.labels`, `metadata.annotations`): other field paths are refused.

use std::collections::BTreeSet;
use std::path::{Component, Path};

use super::FieldErrors;
use crate::v1::{KeyToPath, ProjectedVolumeSource};

/// The shortest token lifetime a pod may ask for (Kubernetes' own floor).
pub const MIN_TOKEN_EXPIRATION_SECONDS: i32 = 600;

/// The field paths of the downward API a projected volume may name.
pub const DOWNWARD_FIELDS: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "metadata.uid",
    "metadata.labels",
    "metadata.annotations",
];

fn check_path(file: &str, path: &str, seen: &mut BTreeSet<String>, errors: &mut FieldErrors) {
    let p = Path::new(file);
    if file.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        errors.add(
            path,
            format!("Invalid value: {file:?}: must be a relative path without '..'"),
        );
    } else if !seen.insert(file.to_string()) {
        errors.add(
            path,
            format!("Invalid value: {file:?}: conflicting duplicate paths"),
        );
    }
}

fn check_items(
    items: &[KeyToPath],
    path: &str,
    seen: &mut BTreeSet<String>,
    errors: &mut FieldErrors,
) {
    for (i, item) in items.iter().enumerate() {
        if item.key.is_empty() {
            errors.add(format!("{path}.items[{i}].key"), "Required value");
        }
        check_path(&item.path, &format!("{path}.items[{i}].path"), seen, errors);
    }
}

pub fn validate_projected(source: &ProjectedVolumeSource, path: &str, errors: &mut FieldErrors) {
    let mut seen = BTreeSet::new();
    if let Some(mode) = source.default_mode
        && !(0..=0o777).contains(&mode)
    {
        errors.add(
            format!("{path}.defaultMode"),
            "must be a file mode between 0 and 0777",
        );
    }
    for (i, s) in source.sources.iter().enumerate() {
        let spath = format!("{path}.sources[{i}]");
        let set = [
            s.secret.is_some(),
            s.config_map.is_some(),
            s.downward_api.is_some(),
            s.service_account_token.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if set != 1 {
            errors.add(
                spath.clone(),
                "exactly one of secret, configMap, downwardAPI, serviceAccountToken must be given",
            );
        }
        if let Some(secret) = &s.secret {
            if secret.name.is_empty() {
                errors.add(format!("{spath}.secret.name"), "Required value");
            }
            check_items(&secret.items, &format!("{spath}.secret"), &mut seen, errors);
        }
        if let Some(cm) = &s.config_map {
            if cm.name.is_empty() {
                errors.add(format!("{spath}.configMap.name"), "Required value");
            }
            check_items(&cm.items, &format!("{spath}.configMap"), &mut seen, errors);
        }
        if let Some(downward) = &s.downward_api {
            for (j, item) in downward.items.iter().enumerate() {
                let ipath = format!("{spath}.downwardAPI.items[{j}]");
                check_path(&item.path, &format!("{ipath}.path"), &mut seen, errors);
                let field = item
                    .field_ref
                    .as_ref()
                    .map_or("", |f| f.field_path.as_str());
                if !DOWNWARD_FIELDS.contains(&field) {
                    errors.add(
                        format!("{ipath}.fieldRef.fieldPath"),
                        format!(
                            "Unsupported value: {field:?}: supported values: {}",
                            super::quoted(DOWNWARD_FIELDS)
                        ),
                    );
                }
            }
        }
        if let Some(token) = &s.service_account_token {
            let tpath = format!("{spath}.serviceAccountToken");
            check_path(&token.path, &format!("{tpath}.path"), &mut seen, errors);
            if token
                .expiration_seconds
                .is_some_and(|e| e < MIN_TOKEN_EXPIRATION_SECONDS)
            {
                errors.add(
                    format!("{tpath}.expirationSeconds"),
                    format!("may not specify a duration less than {MIN_TOKEN_EXPIRATION_SECONDS} seconds"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{
        DownwardApiProjection, DownwardApiVolumeFile, ObjectFieldSelector,
        ServiceAccountTokenProjection, VolumeProjection,
    };

    #[test]
    fn sources_paths_and_lifetimes_are_checked() {
        let token = |path: &str, secs| VolumeProjection {
            service_account_token: Some(ServiceAccountTokenProjection {
                path: path.into(),
                expiration_seconds: secs,
                ..Default::default()
            }),
            ..Default::default()
        };
        let source = ProjectedVolumeSource {
            sources: vec![
                token("token", Some(3607)),
                token("token", None),
                token("../x", Some(60)),
                VolumeProjection::default(),
                VolumeProjection {
                    downward_api: Some(DownwardApiProjection {
                        items: vec![DownwardApiVolumeFile {
                            path: "ns".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "spec.nodeName".into(),
                                ..Default::default()
                            }),
                            mode: None,
                        }],
                    }),
                    ..Default::default()
                },
            ],
            default_mode: Some(0o644),
        };
        let mut errors = FieldErrors::default();
        validate_projected(&source, "v", &mut errors);
        let paths: Vec<&str> = errors.0.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "v.sources[1].serviceAccountToken.path",
                "v.sources[2].serviceAccountToken.path",
                "v.sources[2].serviceAccountToken.expirationSeconds",
                "v.sources[3]",
                "v.sources[4].downwardAPI.items[0].fieldRef.fieldPath",
            ]
        );
    }
}
