//! A container's environment: literal values, ConfigMap and Secret keys (`valueFrom`, `envFrom`),
//! and the downward API fields, resolved in Kubernetes' order (the Services' variables
//! ([`super::service_env`]) first, then envFrom, then env, later names win; `$(VAR)` references
//! to earlier variables expanded).

use std::collections::BTreeMap;

use skiff_api::v1::*;

use super::sources::Sources as Watched;
use super::status::Ips;

/// The ConfigMaps and Secrets of one container start, from the node's watch-fed caches.
struct Sources<'a> {
    watched: &'a Watched,
    namespace: &'a str,
    /// The pod's uid: it keeps what it reads watched.
    user: &'a str,
    config_maps: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
    secrets: BTreeMap<String, Option<BTreeMap<String, Vec<u8>>>>,
}

impl Sources<'_> {
    async fn config_map(
        &mut self,
        name: &str,
    ) -> Result<Option<&BTreeMap<String, Vec<u8>>>, String> {
        if !self.config_maps.contains_key(name) {
            let found = self
                .watched
                .config_maps
                .get(self.namespace, name, self.user)
                .await?;
            let data = found.map(super::volumes::config_map_bytes);
            self.config_maps.insert(name.to_string(), data);
        }
        Ok(self.config_maps.get(name).and_then(Option::as_ref))
    }

    async fn secret(&mut self, name: &str) -> Result<Option<&BTreeMap<String, Vec<u8>>>, String> {
        if !self.secrets.contains_key(name) {
            let found = self
                .watched
                .secrets
                .get(self.namespace, name, self.user)
                .await?;
            self.secrets.insert(name.to_string(), found.map(|s| s.data));
        }
        Ok(self.secrets.get(name).and_then(Option::as_ref))
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Expands `$(NAME)` from the variables defined so far; `$$(NAME)` is a literal `$(NAME)`.
fn expand(value: &str, defined: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match defined.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

fn set(env: &mut Vec<(String, String)>, name: String, value: String) {
    env.retain(|(k, _)| *k != name);
    env.push((name, value));
}

/// The environment of `container`, over the Services' variables `services`; an error names the
/// missing object or key (`secret "db" not found`), as the container's
/// `CreateContainerConfigError` message.
pub async fn resolve(
    watched: &Watched,
    pod: &Pod,
    container: &Container,
    ips: &Ips,
    services: Vec<(String, String)>,
) -> Result<Vec<(String, String)>, String> {
    let meta = pod.metadata.clone().unwrap_or_default();
    let mut sources = Sources {
        watched,
        namespace: &meta.namespace,
        user: &meta.uid,
        config_maps: BTreeMap::new(),
        secrets: BTreeMap::new(),
    };
    let mut env: Vec<(String, String)> = services;
    for from in &container.env_from {
        if let Some(r) = &from.config_map_ref {
            match sources.config_map(&r.name).await? {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut env, format!("{}{k}", from.prefix), text(v));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secret(&r.name).await? {
                Some(data) => {
                    for (k, v) in data {
                        set(&mut env, format!("{}{k}", from.prefix), text(v));
                    }
                }
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for var in &container.env {
        let value = match &var.value_from {
            None => expand(&var.value, &env),
            Some(from) => {
                if let Some(r) = &from.config_map_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.config_map(&r.name).await? {
                        Some(data) => match data.get(&r.key) {
                            Some(v) => text(v),
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in ConfigMap {}/{}",
                                    r.key, meta.namespace, r.name
                                ));
                            }
                        },
                        None if optional => continue,
                        None => return Err(format!("configmap {:?} not found", r.name)),
                    }
                } else if let Some(r) = &from.secret_key_ref {
                    let optional = r.optional == Some(true);
                    match sources.secret(&r.name).await? {
                        Some(data) => match data.get(&r.key) {
                            Some(v) => text(v),
                            None if optional => continue,
                            None => {
                                return Err(format!(
                                    "couldn't find key {} in Secret {}/{}",
                                    r.key, meta.namespace, r.name
                                ));
                            }
                        },
                        None if optional => continue,
                        None => return Err(format!("secret {:?} not found", r.name)),
                    }
                } else if let Some(f) = &from.field_ref {
                    field(pod, &f.field_path, ips).ok_or_else(|| {
                        format!("env {}: unsupported fieldPath {:?}", var.name, f.field_path)
                    })?
                } else if let Some(r) = &from.resource_field_ref {
                    resource_field(container, &r.resource).ok_or_else(|| {
                        format!("env {}: unsupported resource {:?}", var.name, r.resource)
                    })?
                } else {
                    return Err(format!("env {}: valueFrom names no source", var.name));
                }
            }
        };
        set(&mut env, var.name.clone(), value);
    }
    Ok(env)
}

/// The downward API's pod fields.
fn field(pod: &Pod, path: &str, ips: &Ips) -> Option<String> {
    let meta = pod.metadata.as_ref()?;
    let spec = pod.spec.as_ref()?;
    Some(match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "spec.nodeName" => spec.node_name.clone(),
        "spec.serviceAccountName" => spec.service_account_name.clone(),
        "status.podIP" => ips.pod.clone(),
        "status.hostIP" => ips.host.clone(),
        p => {
            let key = p
                .strip_prefix("metadata.labels['")
                .or_else(|| p.strip_prefix("metadata.annotations['"))?
                .strip_suffix("']")?;
            if p.starts_with("metadata.labels") {
                meta.labels.get(key).cloned().unwrap_or_default()
            } else {
                meta.annotations.get(key).cloned().unwrap_or_default()
            }
        }
    })
}

fn resource_field(container: &Container, resource: &str) -> Option<String> {
    let r = container.resources.as_ref()?;
    let (map, key) = resource.split_once('.')?;
    let values = match map {
        "limits" => &r.limits,
        "requests" => &r.requests,
        _ => return None,
    };
    Some(values.get(key).cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expansion_follows_kubernetes() {
        let defined = vec![("A".to_string(), "1".to_string())];
        assert_eq!(expand("x$(A)y", &defined), "x1y");
        assert_eq!(expand("$(B)", &defined), "$(B)");
        assert_eq!(expand("$$(A)", &defined), "$(A)");
        assert_eq!(expand("cost $5", &defined), "cost $5");
    }
}
