//! Who is calling, as authorization sees it: a user or a service account, with its roles.
//! Reading a principal from a token by the configured claim paths is `tw_authz::PrincipalExtractor`.

use std::collections::BTreeSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalKind {
    User,
    ServiceAccount,
}

impl PrincipalKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalKind::User => "user",
            PrincipalKind::ServiceAccount => "service_account",
        }
    }
}

/// The caller, as authorization sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub kind: PrincipalKind,
    pub issuer: String,
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub username: Option<String>,
    /// Realm roles as is; client roles named by the configured format (`client:role`).
    pub roles: BTreeSet<String>,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn is_service_account(&self) -> bool {
        self.kind == PrincipalKind::ServiceAccount
    }

    /// A user whose token names them: `preferred_username` present, not blank and not a
    /// service-account name (`service-account-`, any case). Only such a token may pass through
    /// to an upstream that authorizes its users itself: a service account's token that lacks
    /// the claim (a client without the `profile` scope) is a "user" by kind, but must not skip
    /// authorization that way.
    pub fn is_named_user(&self) -> bool {
        self.kind == PrincipalKind::User
            && self
                .username
                .as_deref()
                .is_some_and(|u| !u.trim().is_empty() && !has_service_account_prefix(u))
    }

    /// Rate-limit and log key: the client id for service accounts, else issuer + subject.
    pub fn key(&self) -> String {
        match (self.kind, &self.client_id, &self.subject) {
            (PrincipalKind::ServiceAccount, Some(c), _) => format!("client:{c}"),
            (_, _, Some(s)) => format!("sub:{}|{s}", self.issuer),
            (_, Some(c), None) => format!("client:{c}"),
            _ => format!("issuer:{}", self.issuer),
        }
    }

    /// A short name for logs and the audit log.
    pub fn display(&self) -> String {
        match self.kind {
            PrincipalKind::ServiceAccount => format!(
                "service_account:{}",
                self.client_id
                    .as_deref()
                    .or(self.subject.as_deref())
                    .unwrap_or("-")
            ),
            PrincipalKind::User => format!(
                "user:{}",
                self.username
                    .as_deref()
                    .or(self.subject.as_deref())
                    .unwrap_or("-")
            ),
        }
    }
}

/// Keycloak's name of a client's service-account user, before the client id.
pub const SERVICE_ACCOUNT_PREFIX: &str = "service-account-";

/// `username` starts with Keycloak's service-account prefix, in any case.
pub fn has_service_account_prefix(username: &str) -> bool {
    username
        .as_bytes()
        .get(..SERVICE_ACCOUNT_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(SERVICE_ACCOUNT_PREFIX.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(username: Option<&str>, subject: Option<&str>) -> Principal {
        Principal {
            kind: PrincipalKind::User,
            issuer: "https://kc/realms/r".into(),
            subject: subject.map(str::to_owned),
            client_id: Some("web".into()),
            username: username.map(str::to_owned),
            roles: BTreeSet::new(),
            scopes: Vec::new(),
        }
    }

    #[test]
    fn service_account_prefix_ignores_case_only() {
        assert!(has_service_account_prefix("service-account-agent"));
        assert!(has_service_account_prefix("Service-Account-agent"));
        assert!(!has_service_account_prefix("service-accoun"));
        assert!(!has_service_account_prefix("service_account-agent"));
        // A multi-byte character across the prefix's end must not panic.
        assert!(!has_service_account_prefix("service-accounté"));
    }

    #[test]
    fn named_users_and_keys() {
        assert!(user(Some("alice"), Some("s1")).is_named_user());
        assert!(!user(Some("  "), Some("s1")).is_named_user());
        assert!(!user(Some("SERVICE-ACCOUNT-x"), Some("s1")).is_named_user());
        assert!(!user(None, Some("s1")).is_named_user());
        let alice = user(Some("alice"), Some("s1"));
        assert_eq!(alice.key(), "sub:https://kc/realms/r|s1");
        assert_eq!(alice.display(), "user:alice");
        let anonymous = user(None, None);
        assert_eq!(anonymous.key(), "client:web");
        assert_eq!(anonymous.display(), "user:-");
        let sa = Principal {
            kind: PrincipalKind::ServiceAccount,
            ..user(Some("service-account-web"), Some("s2"))
        };
        assert!(sa.is_service_account() && !sa.is_named_user());
        assert_eq!(sa.key(), "client:web");
        assert_eq!(sa.kind.as_str(), "service_account");
    }
}
