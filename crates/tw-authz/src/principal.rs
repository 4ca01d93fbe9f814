//! Who is calling: a user or a service account, with the roles found in the token's claims.
//! The [`Principal`] type itself lives in `tw-claims` (re-exported here); this module reads it
//! from a verified token as `[gateway.authz]` says ([`PrincipalExtractor`]).

use crate::settings::{AuthzConfig, ServiceAccountRules};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use tw_claims::{SERVICE_ACCOUNT_PREFIX, VerifiedToken, has_service_account_prefix};

pub use tw_claims::{Principal, PrincipalKind};

/// Reads principals from verified tokens, as configured.
#[derive(Debug, Clone)]
pub struct PrincipalExtractor {
    roles_claims: Vec<Vec<String>>,
    client_role_format: String,
    rules: ServiceAccountRules,
}

impl PrincipalExtractor {
    pub fn new(cfg: &AuthzConfig) -> Self {
        Self {
            roles_claims: cfg
                .roles_claims
                .iter()
                .map(|p| p.split('.').map(str::to_owned).collect())
                .collect(),
            client_role_format: cfg.client_role_format.clone(),
            rules: cfg.service_accounts.clone(),
        }
    }

    /// The principal of `token`. A service account is a token whose `preferred_username` is
    /// the service-account user of its own client (`service-account-<client id>`, any case, as
    /// Keycloak names it), a token of a client listed in `service_accounts.client_ids`, or one
    /// matching `service_accounts.claim`. Anything else is a user: a username that merely starts
    /// with `service-account-` does not make a user a service account of another client.
    pub fn principal(&self, token: &VerifiedToken) -> Principal {
        let service_account = names_own_service_account(token)
            || token
                .client_id
                .as_ref()
                .is_some_and(|c| self.rules.client_ids.contains(c))
            || self
                .rules
                .claim
                .as_ref()
                .is_some_and(|c| claim_at(&token.claims, &c.claim) == Some(&c.value));
        let mut roles = BTreeSet::new();
        for path in &self.roles_claims {
            self.collect(&token.claims, path, token.client_id.as_deref(), &mut roles);
        }
        Principal {
            kind: if service_account {
                PrincipalKind::ServiceAccount
            } else {
                PrincipalKind::User
            },
            issuer: token.issuer.clone(),
            subject: token.subject.clone(),
            client_id: token.client_id.clone(),
            username: token.username.clone(),
            roles,
            scopes: token.scopes.clone(),
        }
    }

    /// Walks `path` from `claims`; a `*` segment fans out over an object's keys and the key
    /// becomes the namespace, as does `${client_id}`. Strings and arrays of strings at the end
    /// are roles; anything else (numbers, objects, missing keys) is ignored.
    fn collect(
        &self,
        claims: &Map<String, Value>,
        path: &[String],
        client_id: Option<&str>,
        out: &mut BTreeSet<String>,
    ) {
        let mut frontier: Vec<(&Value, Option<String>)> = Vec::new();
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        step(claims, first, None, client_id, &mut frontier);
        for seg in rest {
            let mut next = Vec::new();
            for (value, ns) in frontier {
                if let Value::Object(obj) = value {
                    step(obj, seg, ns, client_id, &mut next);
                }
            }
            frontier = next;
        }
        for (value, ns) in frontier {
            let mut add = |role: &str| {
                if role.is_empty() {
                    return;
                }
                out.insert(match &ns {
                    Some(client) => self
                        .client_role_format
                        .replace("{client}", client)
                        .replace("{role}", role),
                    None => role.to_owned(),
                });
            };
            match value {
                Value::String(s) => add(s),
                Value::Array(items) => items.iter().filter_map(Value::as_str).for_each(&mut add),
                _ => {}
            }
        }
    }
}

/// `preferred_username` is `service-account-<the token's client id>`, compared without case
/// (Keycloak stores usernames in lower case).
fn names_own_service_account(token: &VerifiedToken) -> bool {
    let (Some(username), Some(client)) = (token.username.as_deref(), token.client_id.as_deref())
    else {
        return false;
    };
    if !has_service_account_prefix(username) {
        return false;
    }
    let rest = &username.as_bytes()[SERVICE_ACCOUNT_PREFIX.len()..];
    if rest.eq_ignore_ascii_case(client.as_bytes()) {
        return true;
    }
    // Non-ASCII client ids: Keycloak lower-cases them the Unicode way.
    !client.is_ascii()
        && username.to_lowercase() == format!("{SERVICE_ACCOUNT_PREFIX}{}", client.to_lowercase())
}

fn step<'v>(
    obj: &'v Map<String, Value>,
    seg: &str,
    ns: Option<String>,
    client_id: Option<&str>,
    out: &mut Vec<(&'v Value, Option<String>)>,
) {
    if seg == "*" {
        for (k, v) in obj {
            out.push((v, Some(k.clone())));
        }
    } else if seg == "${client_id}" {
        if let Some(c) = client_id
            && let Some(v) = obj.get(c)
        {
            out.push((v, Some(c.to_owned())));
        }
    } else if let Some(v) = obj.get(seg) {
        out.push((v, ns));
    }
}

/// The value at a dot path, if every step is an object key.
pub fn claim_at<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut segs = path.split('.');
    let mut cur = claims.get(segs.next()?)?;
    for s in segs {
        cur = cur.as_object()?.get(s)?;
    }
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tw_claims::VerifiedBy;
    use tw_core::UnixTime;

    fn cfg(extra: &str) -> AuthzConfig {
        toml::from_str(extra).expect("authz settings")
    }

    pub(crate) fn token(claims: Value, client: Option<&str>, sa: bool) -> VerifiedToken {
        VerifiedToken {
            issuer: "https://kc/realms/r".into(),
            subject: Some("0d0c".into()),
            client_id: client.map(str::to_owned),
            username: sa.then(|| format!("service-account-{}", client.unwrap_or("x"))),
            service_account: sa,
            scopes: vec!["profile".into()],
            audiences: vec![],
            expires_at: UnixTime::from_secs(0),
            claims: claims.as_object().cloned().unwrap_or_default(),
            via: VerifiedBy::Jwt,
        }
    }

    #[test]
    fn keycloak_roles() {
        let x = PrincipalExtractor::new(&cfg(""));
        let t = token(
            json!({
                "realm_access": {"roles": ["agent", "default-roles-r"]},
                "resource_access": {"api": {"roles": ["read"]}, "account": {"roles": ["view-profile"]}},
            }),
            Some("agent-basic"),
            true,
        );
        let p = x.principal(&t);
        assert_eq!(p.kind, PrincipalKind::ServiceAccount);
        assert_eq!(
            p.roles.iter().map(String::as_str).collect::<Vec<_>>(),
            [
                "account:view-profile",
                "agent",
                "api:read",
                "default-roles-r"
            ]
        );
        assert_eq!(p.key(), "client:agent-basic");
        assert_eq!(p.display(), "service_account:agent-basic");
    }

    #[test]
    fn only_the_own_service_account_user_is_a_service_account() {
        let x = PrincipalExtractor::new(&cfg(""));
        let kind = |username: &str, client: Option<&str>| {
            let mut t = token(json!({}), client, false);
            t.username = Some(username.to_owned());
            t.service_account = username.starts_with("service-account-");
            x.principal(&t).kind
        };
        let sa = PrincipalKind::ServiceAccount;
        let user = PrincipalKind::User;
        assert_eq!(kind("service-account-ops-console", Some("ops-console")), sa);
        // Keycloak lower-cases the username of a client with capitals.
        assert_eq!(
            kind("service-account-smartem_agent", Some("SmartEM_Agent")),
            sa
        );
        assert_eq!(kind("SERVICE-ACCOUNT-ops-console", Some("ops-console")), sa);
        assert_eq!(kind("service-account-édition", Some("Édition")), sa);
        // A user whose name looks like another client's service account is a user.
        for (username, client) in [
            ("service-account-other", Some("ops-console")),
            ("service-account-ops-console-x", Some("ops-console")),
            ("service-account-ops", Some("ops-console")),
            ("service-account-", Some("ops-console")),
            ("service-account-ops-console", None),
            ("service-account-ops-console ", Some("ops-console")),
            ("service-account-ops\u{2010}console", Some("ops-console")),
            ("service-accounts", Some("s")),
            ("alice", Some("ops-console")),
            ("", Some("")),
        ] {
            assert_eq!(kind(username, client), user, "{username:?} via {client:?}");
        }
    }

    #[test]
    fn odd_and_missing_claims_give_no_roles() {
        let x = PrincipalExtractor::new(&cfg(""));
        for claims in [
            json!({}),
            json!({"realm_access": "agent-but-a-string-object"}),
            json!({"realm_access": {"roles": [1, null, {"x": 1}, ""]}}),
            json!({"realm_access": {"roles": 7}}),
            json!({"resource_access": ["api"]}),
            json!({"resource_access": {"api": {"roles": {"read": true}}}}),
            json!({"resource_access": {"api": "read"}}),
        ] {
            let p = x.principal(&token(claims.clone(), None, false));
            assert!(p.roles.is_empty(), "{claims}: {:?}", p.roles);
            assert_eq!(p.kind, PrincipalKind::User);
        }
        // A single string is one role.
        let p = x.principal(&token(
            json!({"realm_access": {"roles": "agent"}}),
            None,
            false,
        ));
        assert_eq!(p.roles.len(), 1);
    }

    #[test]
    fn own_client_roles_only_and_custom_format_and_sa_rules() {
        let x = PrincipalExtractor::new(&cfg(
            r#"roles_claims = ["resource_access.${client_id}.roles", "groups"]
client_role_format = "{client}/{role}"
service_accounts = { client_ids = ["evently-confidential-client"], claim = { claim = "ext.kind", value = "robot" } }"#,
        ));
        let claims = json!({
            "resource_access": {"me": {"roles": ["a"]}, "other": {"roles": ["b"]}},
            "groups": ["g1"],
            "ext": {"kind": "robot"},
        });
        let p = x.principal(&token(claims, Some("me"), false));
        assert_eq!(
            p.roles.iter().map(String::as_str).collect::<Vec<_>>(),
            ["g1", "me/a"]
        );
        assert_eq!(p.kind, PrincipalKind::ServiceAccount, "claim rule");
        let p = x.principal(&token(
            json!({}),
            Some("evently-confidential-client"),
            false,
        ));
        assert!(p.is_service_account(), "client id rule");
        let p = x.principal(&token(
            json!({"ext": {"kind": "human"}}),
            Some("web"),
            false,
        ));
        assert!(!p.is_service_account());
    }
}
