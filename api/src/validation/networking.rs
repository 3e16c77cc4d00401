//! Validation of networking.k8s.io/v1 kinds: Ingress and IngressClass, as Kubernetes'
//! `ValidateIngressSpec` and `ValidateIngressClass`, with Kubernetes' messages and field paths
//! (`spec.rules[0].http.paths[1].pathType: Required value: pathType must be specified`).
//!
//! What skiff does not serve is refused with a reason rather than stored and ignored: resource
//! backends, and parameters on an IngressClass of skiff's own controller.

use super::names::{is_dns1123_label, is_dns1123_subdomain};
use super::{FieldErrors, quoted};
use crate::v1::{Ingress, IngressBackend, IngressClass, IngressTls, ServiceBackendPort};

/// The controller of skiff's router, and the class the server creates for it.
pub const INGRESS_CONTROLLER: &str = "skiff.dev/ingress";
pub const INGRESS_CLASS: &str = "skiff";
/// The annotation that marks the default IngressClass (value `"true"`).
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";
/// The class annotation older Ingresses carry instead of `spec.ingressClassName`.
pub const CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

pub const PATH_TYPES: &[&str] = &["Exact", "ImplementationSpecific", "Prefix"];

pub fn validate_ingress(ingress: &Ingress, errors: &mut FieldErrors) {
    let Some(spec) = &ingress.spec else {
        errors.add(
            "spec",
            "Invalid value: either `defaultBackend` or `rules` must be specified",
        );
        return;
    };
    if spec.rules.is_empty() && spec.default_backend.is_none() {
        errors.add(
            "spec",
            "Invalid value: either `defaultBackend` or `rules` must be specified",
        );
    }
    if let Some(class) = &spec.ingress_class_name {
        if !is_dns1123_subdomain(class) {
            errors.add(
                "spec.ingressClassName",
                format!("Invalid value: {class:?}: {SUBDOMAIN}"),
            );
        }
        if let Some(annotated) = ingress
            .metadata
            .as_ref()
            .and_then(|m| m.annotations.get(CLASS_ANNOTATION))
            && annotated != class
        {
            errors.add(
                format!("metadata.annotations[{CLASS_ANNOTATION}]"),
                format!(
                    "Invalid value: {annotated:?}: can not be set when the class field is also set"
                ),
            );
        }
    }
    if let Some(backend) = &spec.default_backend {
        validate_backend(backend, "spec.defaultBackend", errors);
    }
    for (i, tls) in spec.tls.iter().enumerate() {
        validate_tls(tls, &format!("spec.tls[{i}]"), errors);
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        if !rule.host.is_empty() {
            check_host(&rule.host, &format!("{path}.host"), errors);
        }
        let Some(http) = &rule.http else {
            // A rule with no `http` only names a host; it routes nothing (as Kubernetes).
            continue;
        };
        if http.paths.is_empty() {
            errors.add(format!("{path}.http.paths"), "Required value");
        }
        for (j, p) in http.paths.iter().enumerate() {
            let path = format!("{path}.http.paths[{j}]");
            validate_path(&p.path, &p.path_type, &path, errors);
            match &p.backend {
                Some(b) => validate_backend(b, &format!("{path}.backend"), errors),
                None => errors.add(format!("{path}.backend"), "Required value"),
            }
        }
    }
}

const SUBDOMAIN: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";

/// A rule's or a TLS entry's host: a DNS name, `*.` allowed as the whole first label; never an IP.
fn check_host(host: &str, path: &str, errors: &mut FieldErrors) {
    if host.parse::<std::net::IpAddr>().is_ok() {
        errors.add(
            path,
            format!("Invalid value: {host:?}: must be a DNS name, not an IP address"),
        );
    } else if let Some(rest) = host.strip_prefix("*.") {
        if !is_dns1123_subdomain(rest) {
            errors.add(
                path,
                format!("Invalid value: {host:?}: a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character"),
            );
        }
    } else if !is_dns1123_subdomain(host) {
        errors.add(path, format!("Invalid value: {host:?}: {SUBDOMAIN}"));
    }
}

fn validate_tls(tls: &IngressTls, path: &str, errors: &mut FieldErrors) {
    for (i, host) in tls.hosts.iter().enumerate() {
        check_host(host, &format!("{path}.hosts[{i}]"), errors);
    }
    if !tls.secret_name.is_empty() && !is_dns1123_subdomain(&tls.secret_name) {
        errors.add(
            format!("{path}.secretName"),
            format!("Invalid value: {:?}: {SUBDOMAIN}", tls.secret_name),
        );
    }
}

/// `path` and `pathType` of one HTTP path, as Kubernetes' `validateHTTPIngressPath`.
fn validate_path(value: &str, path_type: &str, path: &str, errors: &mut FieldErrors) {
    match path_type {
        "" => errors.add(
            format!("{path}.pathType"),
            "Required value: pathType must be specified",
        ),
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errors.add(
                    format!("{path}.path"),
                    format!("Invalid value: {value:?}: must be an absolute path"),
                );
            }
            for bad in ["//", "/./", "/../", "%2f", "%2F"] {
                if value.contains(bad) {
                    errors.add(
                        format!("{path}.path"),
                        format!("Invalid value: {value:?}: must not contain '{bad}'"),
                    );
                }
            }
            for bad in ["/..", "/."] {
                if value.ends_with(bad) {
                    errors.add(
                        format!("{path}.path"),
                        format!("Invalid value: {value:?}: cannot end with '{bad}'"),
                    );
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errors.add(
                    format!("{path}.path"),
                    format!("Invalid value: {value:?}: must be an absolute path"),
                );
            }
        }
        other => errors.add(
            format!("{path}.pathType"),
            format!(
                "Unsupported value: {other:?}: supported values: {}",
                quoted(PATH_TYPES)
            ),
        ),
    }
}

/// A backend: exactly a Service (by name, and port by number or name). Resource backends are
/// Kubernetes' but no router of skiff's serves them.
fn validate_backend(backend: &IngressBackend, path: &str, errors: &mut FieldErrors) {
    if backend.resource.is_some() {
        errors.add(
            format!("{path}.resource"),
            "Forbidden: skiff's ingress routes to Services only; use `service`",
        );
    }
    let Some(service) = &backend.service else {
        if backend.resource.is_none() {
            errors.add(
                path,
                "Invalid value: one backend (`service`) must be specified",
            );
        }
        return;
    };
    if service.name.is_empty() {
        errors.add(format!("{path}.service.name"), "Required value");
    } else if !is_dns1123_label(&service.name)
        || !service.name.starts_with(|c: char| c.is_ascii_lowercase())
    {
        errors.add(
            format!("{path}.service.name"),
            format!("Invalid value: {:?}: a lowercase RFC 1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character", service.name),
        );
    }
    let port = service.port.clone().unwrap_or_default();
    validate_backend_port(&port, &format!("{path}.service.port"), errors);
}

fn validate_backend_port(port: &ServiceBackendPort, path: &str, errors: &mut FieldErrors) {
    match (port.name.is_empty(), port.number) {
        (true, 0) => errors.add(path, "Required value: port name or number is required"),
        (false, n) if n != 0 => errors.add(
            path,
            "Invalid value: cannot set both port name & port number",
        ),
        (false, _) => {
            if let Err(why) = iana_svc_name(&port.name) {
                errors.add(
                    format!("{path}.name"),
                    format!("Invalid value: {:?}: {why}", port.name),
                );
            }
        }
        (true, n) => {
            if !(1..=65535).contains(&n) {
                errors.add(
                    format!("{path}.number"),
                    format!("Invalid value: {n}: must be between 1 and 65535, inclusive"),
                );
            }
        }
    }
}

/// A port name (IANA_SVC_NAME): at most 15 of `[a-z0-9-]`, a letter among them, no `--`, and no
/// `-` at either end.
fn iana_svc_name(name: &str) -> Result<(), &'static str> {
    if name.len() > 15 {
        return Err("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        return Err("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        return Err("must not contain consecutive hyphens");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        return Err("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("must not begin or end with a hyphen");
    }
    Ok(())
}

pub fn validate_ingress_class(class: &IngressClass, errors: &mut FieldErrors) {
    let spec = class.spec.clone().unwrap_or_default();
    let controller = spec.controller.as_str();
    if controller.is_empty() {
        errors.add("spec.controller", "Required value");
    } else if controller.len() > 250 {
        errors.add("spec.controller", "Too long: must have at most 250 bytes");
    } else if !is_domain_prefixed_path(controller) {
        errors.add(
            "spec.controller",
            format!("Invalid value: {controller:?}: must be a domain-prefixed path (such as \"acme.io/foo\")"),
        );
    }
    let Some(p) = &spec.parameters else {
        return;
    };
    if controller == INGRESS_CONTROLLER {
        errors.add(
            "spec.parameters",
            format!("Forbidden: the {INGRESS_CONTROLLER} controller takes no parameters"),
        );
        return;
    }
    if p.kind.is_empty() {
        errors.add("spec.parameters.kind", "Required value");
    }
    if p.name.is_empty() {
        errors.add("spec.parameters.name", "Required value");
    }
    match (p.scope.as_deref(), p.namespace.as_deref()) {
        (None | Some("Cluster"), Some(_)) => errors.add(
            "spec.parameters.namespace",
            "Forbidden: `parameters.scope` is set to 'Cluster'",
        ),
        (Some("Namespace"), None) => errors.add(
            "spec.parameters.namespace",
            "Required value: `parameters.scope` is set to 'Namespace'",
        ),
        (Some("Namespace"), Some(ns)) if !is_dns1123_label(ns) => errors.add(
            "spec.parameters.namespace",
            format!("Invalid value: {ns:?}: not a valid namespace name"),
        ),
        (None | Some("Cluster") | Some("Namespace"), _) => {}
        (Some(other), _) => errors.add(
            "spec.parameters.scope",
            format!("Unsupported value: {other:?}: supported values: \"Cluster\", \"Namespace\""),
        ),
    }
}

/// `acme.io/foo`: a DNS subdomain, `/`, then a non-empty path.
fn is_domain_prefixed_path(s: &str) -> bool {
    s.split_once('/').is_some_and(|(domain, path)| {
        is_dns1123_subdomain(domain)
            && !path.is_empty()
            && path
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&c))
    })
}

/// Is this IngressClass marked the cluster's default?
pub fn is_default_class(class: &IngressClass) -> bool {
    class
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.get(DEFAULT_CLASS_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// The class an Ingress names: `spec.ingressClassName`, else the legacy annotation.
pub fn class_of(ingress: &Ingress) -> Option<&str> {
    ingress
        .spec
        .as_ref()
        .and_then(|s| s.ingress_class_name.as_deref())
        .or_else(|| {
            ingress
                .metadata
                .as_ref()
                .and_then(|m| m.annotations.get(CLASS_ANNOTATION))
                .map(String::as_str)
        })
}

/// The IngressClass that serves `ingress`: the one it names (`spec.ingressClassName`, else the
/// legacy annotation), else the default class (the newest, if several are marked). `None` when
/// the named class does not exist, or none is named and there is no default.
pub fn class_serving<'a>(
    ingress: &Ingress,
    classes: impl IntoIterator<Item = &'a IngressClass>,
) -> Option<&'a IngressClass> {
    let name = class_of(ingress);
    let created = |c: &IngressClass| {
        c.metadata
            .as_ref()
            .and_then(|m| m.creation_timestamp.as_ref())
            .map(|t| (t.seconds, t.nanos))
    };
    let mut default: Option<&IngressClass> = None;
    for class in classes {
        let class_name = class.metadata.as_ref().map_or("", |m| m.name.as_str());
        match name {
            Some(n) if n == class_name => return Some(class),
            Some(_) => {}
            None => {
                if is_default_class(class) && default.is_none_or(|d| created(class) > created(d)) {
                    default = Some(class);
                }
            }
        }
    }
    default
}

/// Is `ingress` served by the controller `controller` (skiff's: [`INGRESS_CONTROLLER`])?
pub fn served_by<'a>(
    ingress: &Ingress,
    classes: impl IntoIterator<Item = &'a IngressClass>,
    controller: &str,
) -> bool {
    class_serving(ingress, classes)
        .and_then(|c| c.spec.as_ref())
        .is_some_and(|s| s.controller == controller)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest;

    const TWO_HOSTS: &str = "\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: skiff
  tls:
  - hosts: [a.example.com]
    secretName: a-tls
  rules:
  - host: a.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: a, port: {number: 80}}}
  - host: \"*.b.example.com\"
    http:
      paths:
      - path: /api
        pathType: Exact
        backend: {service: {name: b, port: {name: http}}}
";

    fn errors_of(text: &str) -> String {
        let m = manifest::parse("i.yaml", text).unwrap();
        match m[0].info.kind {
            "Ingress" => m[0].decode_valid::<Ingress>("default").err(),
            _ => m[0].decode_valid::<IngressClass>("").err(),
        }
        .map(|e| e.message)
        .unwrap_or_default()
    }

    #[test]
    fn a_two_host_ingress_decodes_with_kubernetes_field_names() {
        let m = manifest::parse("i.yaml", TWO_HOSTS).unwrap();
        let ingress: Ingress = m[0].decode_valid("default").unwrap();
        let spec = ingress.spec.unwrap();
        assert_eq!(spec.ingress_class_name.as_deref(), Some("skiff"));
        assert_eq!(spec.tls[0].secret_name, "a-tls");
        let paths = &spec.rules[1].http.as_ref().unwrap().paths;
        assert_eq!(paths[0].path_type, "Exact");
        let port = paths[0].backend.as_ref().unwrap().service.as_ref().unwrap();
        assert_eq!(port.port.as_ref().unwrap().name, "http");
    }

    #[test]
    fn unknown_fields_are_refused_with_their_path() {
        let m = manifest::parse(
            "i.yaml",
            &TWO_HOSTS.replace("pathType: Exact", "kind: Exact"),
        )
        .unwrap();
        let err = m[0].decode::<Ingress>().unwrap_err();
        assert_eq!(err.path, "spec.rules[1].http.paths[0].kind");
        let m = manifest::parse("i.yaml", &TWO_HOSTS.replace("secretName", "secret")).unwrap();
        assert_eq!(
            m[0].decode::<Ingress>().unwrap_err().path,
            "spec.tls[0].secret"
        );
    }

    #[test]
    fn paths_and_path_types_are_checked_as_kubernetes_does() {
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("        pathType: Exact\n", "")),
            "spec.rules[1].http.paths[0].pathType: Required value: pathType must be specified"
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("pathType: Exact", "pathType: Regex")),
            "spec.rules[1].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("path: /api", "path: api")),
            "spec.rules[1].http.paths[0].path: Invalid value: \"api\": must be an absolute path"
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("path: /api", "path: /a//b")),
            "spec.rules[1].http.paths[0].path: Invalid value: \"/a//b\": must not contain '//'"
        );
        let implementation = TWO_HOSTS
            .replace("path: /api", "path: \"\"")
            .replace("pathType: Exact", "pathType: ImplementationSpecific");
        assert_eq!(errors_of(&implementation), "");
    }

    #[test]
    fn hosts_are_dns_names_with_an_optional_leading_wildcard() {
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("host: a.example.com", "host: 10.0.0.1")),
            "spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"
        );
        assert!(
            errors_of(&TWO_HOSTS.replace("\"*.b.example.com\"", "\"b.*.example.com\""))
                .starts_with("spec.rules[1].host: Invalid value: \"b.*.example.com\": a lowercase RFC 1123 subdomain")
        );
        assert!(
            errors_of(&TWO_HOSTS.replace("hosts: [a.example.com]", "hosts: [\"*\"]"))
                .starts_with("spec.tls[0].hosts[0]: Invalid value: \"*\"")
        );
    }

    #[test]
    fn backends_need_a_service_name_and_one_port() {
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("{name: a, port: {number: 80}}", "{port: {number: 80}}")),
            "spec.rules[0].http.paths[0].backend.service.name: Required value"
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("{number: 80}", "{}")),
            "spec.rules[0].http.paths[0].backend.service.port: Required value: port name or number is required"
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("{number: 80}", "{number: 80, name: http}")),
            "spec.rules[0].http.paths[0].backend.service.port: Invalid value: cannot set both port name & port number"
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("{number: 80}", "{number: 70000}")),
            "spec.rules[0].http.paths[0].backend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace("{name: http}", "{name: http--x}")),
            "spec.rules[1].http.paths[0].backend.service.port.name: Invalid value: \"http--x\": must not contain consecutive hyphens"
        );
        assert_eq!(
            errors_of(&TWO_HOSTS.replace(
                "{service: {name: a, port: {number: 80}}}",
                "{resource: {kind: Bucket, name: b}}"
            )),
            "spec.rules[0].http.paths[0].backend.resource: Forbidden: skiff's ingress routes to Services only; use `service`"
        );
        let empty =
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: e}\nspec: {}\n";
        assert_eq!(
            errors_of(empty),
            "spec: Invalid value: either `defaultBackend` or `rules` must be specified"
        );
    }

    #[test]
    fn ingress_classes_name_a_controller() {
        let class = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata:\n  name: skiff\n  annotations: {ingressclass.kubernetes.io/is-default-class: \"true\"}\nspec: {controller: skiff.dev/ingress}\n";
        let m = manifest::parse("c.yaml", class).unwrap();
        let parsed: IngressClass = m[0].decode_valid("").unwrap();
        assert!(is_default_class(&parsed));
        let ingress: Ingress = manifest::parse("i.yaml", TWO_HOSTS).unwrap()[0]
            .decode()
            .unwrap();
        assert!(served_by(&ingress, [&parsed], INGRESS_CONTROLLER));
        let mut unnamed = ingress.clone();
        unnamed.spec.as_mut().unwrap().ingress_class_name = None;
        assert!(served_by(&unnamed, [&parsed], INGRESS_CONTROLLER));
        let mut other = ingress.clone();
        other.spec.as_mut().unwrap().ingress_class_name = Some("nginx".into());
        assert!(!served_by(&other, [&parsed], INGRESS_CONTROLLER));
        let mut not_default = parsed.clone();
        not_default.metadata.as_mut().unwrap().annotations.clear();
        assert!(!served_by(&unnamed, [&not_default], INGRESS_CONTROLLER));
        assert_eq!(
            errors_of(&class.replace("skiff.dev/ingress", "ingress")),
            "spec.controller: Invalid value: \"ingress\": must be a domain-prefixed path (such as \"acme.io/foo\")"
        );
        assert_eq!(
            errors_of(&class.replace(
                "controller: skiff.dev/ingress",
                "controller: skiff.dev/ingress, parameters: {kind: K, name: n}"
            )),
            "spec.parameters: Forbidden: the skiff.dev/ingress controller takes no parameters"
        );
        assert_eq!(
            errors_of(&class.replace(
                "controller: skiff.dev/ingress",
                "controller: acme.io/lb, parameters: {kind: K, name: n, scope: Namespace}"
            )),
            "spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"
        );
    }
}
