//! Query parameters of a REST request (`labelSelector`, `fieldSelector`, `limit`, `continue`,
//! `watch`, `resourceVersion`, `timeoutSeconds`, `allowWatchBookmarks`, `fieldValidation`,
//! `dryRun`, `propagationPolicy`, `gracePeriodSeconds`, ...), decoded once.
//!
//! Must not: interpret them beyond their syntax (the handlers do).

use std::collections::BTreeMap;

use super::RestError;

/// Decoded query parameters (the last value of a repeated one wins, except `dryRun`).
#[derive(Debug, Clone, Default)]
pub struct Query(BTreeMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let mut map = BTreeMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            map.insert(k.into_owned(), v.into_owned());
        }
        Self(map)
    }

    /// The value of `name` ("" when absent).
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map(String::as_str).unwrap_or("")
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// A boolean parameter: `1`, `true` (as Kubernetes' conversion reads them).
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.get(name), "1" | "true" | "True" | "TRUE")
    }

    /// An integer parameter, or None when absent; a bad value is a 400 naming the parameter.
    pub fn int(&self, name: &str) -> Result<Option<i64>, RestError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if v.is_empty() => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| RestError::bad_request(format!("{name}: {v:?} is not an integer"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded() {
        let q = Query::parse(Some(
            "labelSelector=app%3Dweb%2Ctier+in+(a%2Cb)&watch=1&limit=500&timeoutSeconds=x",
        ));
        assert_eq!(q.get("labelSelector"), "app=web,tier in (a,b)");
        assert!(q.flag("watch"));
        assert!(!q.flag("allowWatchBookmarks"));
        assert_eq!(q.int("limit").unwrap(), Some(500));
        assert_eq!(q.int("gracePeriodSeconds").unwrap(), None);
        assert_eq!(q.int("timeoutSeconds").unwrap_err().code, 400);
        assert_eq!(Query::parse(None).get("x"), "");
    }
}
