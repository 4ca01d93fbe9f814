//! Permission codes (`events:read`) and grants that may be wildcards (`events:*`, `*`).

use std::collections::BTreeSet;

/// Does the granted code `grant` satisfy the required code `required`? `*` satisfies everything;
/// `events:*` satisfies `events:read` and `events:x:y` (not `events` itself); otherwise equality.
pub fn grant_satisfies(grant: &str, required: &str) -> bool {
    if grant == "*" || grant == required {
        return true;
    }
    match grant.strip_suffix(":*") {
        Some(prefix) => required
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with(':') && rest.len() > 1),
        None => false,
    }
}

/// A set of granted permission codes (wildcards allowed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<String>);

impl PermissionSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn insert(&mut self, code: impl Into<String>) {
        self.0.insert(code.into());
    }

    pub fn extend<I: IntoIterator<Item = S>, S: Into<String>>(&mut self, codes: I) {
        for c in codes {
            self.insert(c);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// The grant that satisfies `required`, if any (exact grants first).
    pub fn grant_for(&self, required: &str) -> Option<&str> {
        if self.0.contains(required) {
            return self.0.get(required).map(String::as_str);
        }
        self.iter().find(|g| grant_satisfies(g, required))
    }

    pub fn satisfies(&self, required: &str) -> bool {
        self.grant_for(required).is_some()
    }

    /// Space-separated, sorted: the upstream header value.
    pub fn header_value(&self) -> String {
        self.iter().collect::<Vec<_>>().join(" ")
    }

    pub fn to_vec(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

impl<S: Into<String>> FromIterator<S> for PermissionSet {
    fn from_iter<T: IntoIterator<Item = S>>(iter: T) -> Self {
        let mut s = Self::new();
        s.extend(iter);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(grant_satisfies("*", "events:read"));
        assert!(grant_satisfies("events:*", "events:read"));
        assert!(grant_satisfies("events:*", "events:read:own"));
        assert!(!grant_satisfies("events:*", "events"));
        assert!(!grant_satisfies("events:*", "event-statistics:read"));
        assert!(!grant_satisfies("events:*", "eventsx:read"));
        assert!(grant_satisfies("events:read", "events:read"));
        assert!(!grant_satisfies("events:read", "events:update"));
        assert!(!grant_satisfies("events:read", "events:*"));
        let set: PermissionSet = ["tickets:read", "events:*"].into_iter().collect();
        assert_eq!(set.grant_for("events:search"), Some("events:*"));
        assert_eq!(set.grant_for("tickets:read"), Some("tickets:read"));
        assert_eq!(set.grant_for("tickets:check-in"), None);
        assert_eq!(set.header_value(), "events:* tickets:read");
    }
}
