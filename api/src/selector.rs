//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy`) and field selectors
//! (`spec.nodeName=node-1`), parsed once and matched many times.

use std::collections::BTreeMap;

use crate::v1::LabelSelector as LabelSelectorSpec;

/// A parse error, naming the offending term.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {selector:?}: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let err = |reason: String| SelectorError {
            selector: input.to_string(),
            reason,
        };
        let mut requirements = Vec::new();
        for term in split_terms(input) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(checked_key(key.trim()).map_err(err)?)
            } else if words.len() == 2
                && (words[1].trim_start().starts_with("in ")
                    || words[1].trim_start().starts_with("in("))
            {
                Requirement::In(
                    checked_key(words[0]).map_err(err)?,
                    set_values(&words[1].trim_start()[2..]).map_err(err)?,
                )
            } else if words.len() == 2 && words[1].trim_start().starts_with("notin") {
                Requirement::NotIn(
                    checked_key(words[0]).map_err(err)?,
                    set_values(&words[1].trim_start()[5..]).map_err(err)?,
                )
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEq(checked_key(k.trim()).map_err(err)?, v.trim().to_string())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                Requirement::Eq(checked_key(k.trim()).map_err(err)?, v.trim().to_string())
            } else {
                Requirement::Exists(checked_key(term).map_err(err)?)
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// From a Deployment's or Service's structured selector.
    pub fn from_spec(spec: &LabelSelectorSpec) -> Result<Self, SelectorError> {
        let mut requirements: Vec<Requirement> = spec
            .match_labels
            .iter()
            .map(|(k, v)| Requirement::Eq(k.clone(), v.clone()))
            .collect();
        for e in &spec.match_expressions {
            let req = match e.operator.as_str() {
                "In" => Requirement::In(e.key.clone(), e.values.clone()),
                "NotIn" => Requirement::NotIn(e.key.clone(), e.values.clone()),
                "Exists" => Requirement::Exists(e.key.clone()),
                "DoesNotExist" => Requirement::NotExists(e.key.clone()),
                other => {
                    return Err(SelectorError {
                        selector: e.key.clone(),
                        reason: format!(
                            "unknown operator {other:?} (In, NotIn, Exists, DoesNotExist)"
                        ),
                    });
                }
            };
            requirements.push(req);
        }
        Ok(Self { requirements })
    }

    /// A selector of equalities (a Service's `selector:` map).
    pub fn from_map(map: &BTreeMap<String, String>) -> Self {
        Self {
            requirements: map
                .iter()
                .map(|(k, v)| Requirement::Eq(k.clone(), v.clone()))
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::Eq(k, v) => labels.get(k) == Some(v),
            Requirement::NotEq(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, vs) => labels.get(k).is_some_and(|l| vs.contains(l)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|l| !vs.contains(l)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::NotExists(k) => !labels.contains_key(k),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                terms.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&input[start..]);
    terms
}

fn checked_key(key: &str) -> Result<String, String> {
    if key.is_empty() || key.contains(|c: char| c.is_whitespace() || "=!(),".contains(c)) {
        return Err(format!("bad key {key:?}"));
    }
    Ok(key.to_string())
}

fn set_values(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, found {rest:?}"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

/// A parsed field selector: `path=value`, `path==value`, `path!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(input: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in input.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (path, eq, value) = if let Some((p, v)) = term.split_once("!=") {
                (p, false, v)
            } else if let Some((p, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (p, true, v)
            } else {
                return Err(SelectorError {
                    selector: input.to_string(),
                    reason: format!("term {term:?} is not path=value or path!=value"),
                });
            };
            terms.push((path.trim().to_string(), eq, value.trim().to_string()));
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The field paths this selector reads (the server rejects paths the kind does not support).
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.terms.iter().map(|(p, _, _)| p.as_str())
    }

    /// `field` reads a path of the object; an unsupported path never matches.
    pub fn matches(&self, field: impl Fn(&str) -> Option<String>) -> bool {
        self.terms
            .iter()
            .all(|(path, eq, value)| match field(path) {
                Some(actual) => (actual == *value) == *eq,
                None => false,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_forms() {
        let l = labels(&[("app", "web"), ("env", "prod")]);
        for (sel, want) in [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("app=web,env=dev", false),
            ("env in (prod, staging)", true),
            ("env notin (prod)", false),
            ("tier notin (db)", true),
            ("app", true),
            ("!app", false),
            ("!tier", true),
            ("app=web,env in (prod),!legacy", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&l),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("env in prod").is_err());
        assert!(LabelSelector::parse("=x").is_err());
    }

    #[test]
    fn field_selector_forms() {
        let f = |p: &str| (p == "spec.nodeName").then(|| "n1".to_string());
        assert!(FieldSelector::parse("spec.nodeName=n1").unwrap().matches(f));
        assert!(
            !FieldSelector::parse("spec.nodeName!=n1")
                .unwrap()
                .matches(f)
        );
        assert!(
            FieldSelector::parse("spec.nodeName==")
                .unwrap()
                .matches(|_| Some(String::new()))
        );
        assert!(!FieldSelector::parse("status.bogus=x").unwrap().matches(f));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
