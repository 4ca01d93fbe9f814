//! Identity headers: what the gateway tells the API about a verified caller. Incoming headers with
//! these names — or names that servers read as these (`X_Auth_Subject`: CGI and WSGI servers turn
//! `_` into `-`) — are always removed first, so no caller can spoof them. Method-override headers
//! are treated the same way unless `keep_method_override` is set.

use crate::settings::IdentityHeaders;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use tw_core::Error;
use tw_verify::VerifiedToken;

/// The permissions header when `[gateway.authz]` names none.
pub const DEFAULT_PERMISSIONS_HEADER: &str = "X-Auth-Permissions";

/// Headers some frameworks read as the request's method.
pub const METHOD_OVERRIDE_HEADERS: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Headers that make frameworks route elsewhere, change the host or scheme they believe in, or
/// name a user (proxy authentication), removed in proxy mode (with their `_` look-alikes): the
/// gateway authorizes the request line, not these.
pub const ROUTING_HEADERS: [&str; 16] = [
    "forwarded",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
    "x-forwarded-uri",
    "x-original-method",
    "x-forwarded-method",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-port",
    "x-forwarded-ssl",
    "x-host",
    "x-original-host",
    "x-real-ip",
    "remote-user",
    "x-remote-user",
];

/// Of those, the ones a front proxy passes on to the upstream from the client and that no front
/// proxy sets itself: a forward-auth request carrying one is refused.
const FORWARD_AUTH_REFUSED: [&str; 4] = [
    "x-original-url",
    "x-rewrite-url",
    "remote-user",
    "x-remote-user",
];

/// A header name as CGI/WSGI-style servers see it: lower case, `_` as `-`.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace('_', "-")
}

/// The configured identity header names, parsed.
#[derive(Debug, Clone)]
pub struct IdentityHeaderNames {
    subject: HeaderName,
    client_id: HeaderName,
    service_account: HeaderName,
    scopes: HeaderName,
    issuer: HeaderName,
    /// Granted permissions (`[gateway.authz] permissions_header`, default `X-Auth-Permissions`).
    permissions: HeaderName,
    /// `strip_headers`, folded: removed in proxy mode, refused in forward-auth mode.
    extra: Vec<String>,
}

impl IdentityHeaderNames {
    /// The identity header names of `cfg`; the permissions header is `permissions` (the authz
    /// section's, else the default `X-Auth-Permissions`: it is stripped either way).
    pub fn new(cfg: &IdentityHeaders, permissions: Option<&str>) -> Result<Self, Error> {
        let parse = |field: &str, name: &str| {
            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                let key = if field == "permissions_header" {
                    "gateway.authz.permissions_header".to_owned()
                } else {
                    format!("gateway.identity_headers.{field}")
                };
                Error::config(
                    tw_core::CONFIG_INVALID,
                    format!("key `{key}`: `{name}` is not a valid HTTP header name"),
                )
                .with("key", key)
            })
        };
        Ok(Self {
            subject: parse("subject", &cfg.subject)?,
            client_id: parse("client_id", &cfg.client_id)?,
            service_account: parse("service_account", &cfg.service_account)?,
            scopes: parse("scopes", &cfg.scopes)?,
            issuer: parse("issuer", &cfg.issuer)?,
            permissions: parse(
                "permissions_header",
                permissions.unwrap_or(DEFAULT_PERMISSIONS_HEADER),
            )?,
            extra: Vec::new(),
        })
    }

    pub fn names(&self) -> [&HeaderName; 6] {
        [
            &self.subject,
            &self.client_id,
            &self.service_account,
            &self.scopes,
            &self.issuer,
            &self.permissions,
        ]
    }

    /// Also removes (proxy mode) or refuses (forward-auth) these headers (`strip_headers`).
    pub fn with_extra(mut self, names: &[String]) -> Self {
        self.extra = names.iter().map(|n| folded(n)).collect();
        self
    }

    /// Whether `name` is an identity header or reads as one once `_` is taken as `-`.
    fn is_identity(&self, folded: &str) -> bool {
        self.names().iter().any(|n| n.as_str() == folded)
    }

    /// Removes every identity header and look-alike (all values), the [`ROUTING_HEADERS`], the
    /// configured `strip_headers`, and, unless `keep_method_override`, every method override.
    pub fn strip(&self, headers: &mut HeaderMap, keep_method_override: bool) {
        let doomed: Vec<HeaderName> = headers
            .keys()
            .filter(|k| {
                let f = folded(k.as_str());
                self.is_identity(&f)
                    || (!keep_method_override && is_method_override(k))
                    || ROUTING_HEADERS.contains(&f.as_str())
                    || self.extra.contains(&f)
            })
            .cloned()
            .collect();
        for name in doomed {
            headers.remove(name);
        }
    }

    /// The first header a forward-auth asker passed on from the client that only the gateway
    /// may set: an identity header or look-alike, or (unless kept) a method override. The
    /// gateway cannot remove headers from the request the front proxy forwards, so it refuses.
    pub fn spoofed<'a>(
        &self,
        headers: &'a HeaderMap,
        keep_method_override: bool,
    ) -> Option<&'a HeaderName> {
        headers.keys().find(|k| {
            let f = folded(k.as_str());
            self.is_identity(&f)
                || (!keep_method_override && is_method_override(k))
                || FORWARD_AUTH_REFUSED.contains(&f.as_str())
                || self.extra.contains(&f)
        })
    }

    /// Every identity header with an empty value: a forward-auth answer for an exempt path, so a
    /// front proxy that copies them overwrites whatever the client sent.
    pub fn blank(&self) -> Vec<(HeaderName, HeaderValue)> {
        self.names()
            .into_iter()
            .map(|n| (n.clone(), HeaderValue::from_static("")))
            .collect()
    }

    /// The headers describing `token`: subject (`sub`), client id (`azp`, else `client_id`),
    /// service-account flag (`true`/`false`), scopes (space-separated) and issuer. Absent claims
    /// and an empty scope list give no header. `Err(claim)` when a claim holds a character no
    /// header value may (a control character). `permissions` (granted by the decision) go in the
    /// permissions header, space-separated; none: no header.
    ///
    /// With `every_header`, absent values are sent as empty headers: a forward-auth answer
    /// names every identity header, so a front proxy that copies them (Envoy's
    /// `allowed_upstream_headers`) overwrites whatever the client sent.
    pub fn values(
        &self,
        token: &VerifiedToken,
        permissions: &[String],
        every_header: bool,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, &'static str> {
        let flag = if token.service_account {
            "true"
        } else {
            "false"
        };
        let scopes = token.scopes.join(" ");
        let granted = permissions.join(" ");
        let fields: [(&HeaderName, &'static str, Option<&str>); 6] = [
            (&self.subject, "sub", token.subject.as_deref()),
            (&self.client_id, "azp", token.client_id.as_deref()),
            (&self.service_account, "preferred_username", Some(flag)),
            (
                &self.scopes,
                "scope",
                Some(scopes.as_str()).filter(|s| !s.is_empty()),
            ),
            (&self.issuer, "iss", Some(token.issuer.as_str())),
            (
                &self.permissions,
                "permissions",
                Some(granted.as_str()).filter(|s| !s.is_empty()),
            ),
        ];
        let mut out = Vec::with_capacity(fields.len());
        for (name, claim, value) in fields {
            match value {
                Some(v) => {
                    let v = HeaderValue::from_bytes(v.as_bytes()).map_err(|_| claim)?;
                    out.push((name.clone(), v));
                }
                None if every_header => out.push((name.clone(), HeaderValue::from_static(""))),
                None => {}
            }
        }
        Ok(out)
    }
}

/// Whether `name` is a method-override header or reads as one once `_` is taken as `-`.
pub(crate) fn is_method_override(name: &HeaderName) -> bool {
    METHOD_OVERRIDE_HEADERS.contains(&folded(name.as_str()).as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;
    use tw_core::UnixTime;
    use tw_verify::VerifiedBy;

    fn token(sub: &str) -> VerifiedToken {
        VerifiedToken {
            issuer: "https://kc.example/realms/r".into(),
            subject: Some(sub.into()),
            client_id: Some("agent-basic".into()),
            username: Some("service-account-agent-basic".into()),
            service_account: true,
            scopes: vec!["profile".into(), "email".into()],
            audiences: vec!["api".into()],
            expires_at: UnixTime::from_secs(0),
            claims: Map::new(),
            via: VerifiedBy::Jwt,
        }
    }

    #[test]
    fn values_strip_and_refuse_control_characters() {
        let names = IdentityHeaderNames::new(&IdentityHeaders::default(), None).expect("names");
        let perms = vec!["events:read".to_owned(), "events:search".to_owned()];
        let values = names
            .values(&token("0d0c-1"), &perms, false)
            .expect("values");
        let text: Vec<(String, String)> = values
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().expect("ascii").to_owned()))
            .collect();
        assert_eq!(
            text,
            [
                ("x-auth-subject", "0d0c-1"),
                ("x-auth-client-id", "agent-basic"),
                ("x-auth-service-account", "true"),
                ("x-auth-scopes", "profile email"),
                ("x-auth-issuer", "https://kc.example/realms/r"),
                ("x-auth-permissions", "events:read events:search"),
            ]
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
        );
        assert_eq!(
            names
                .values(&token("a\nb"), &[], false)
                .expect_err("newline"),
            "sub"
        );

        let mut h = HeaderMap::new();
        h.append("X-Auth-Subject", HeaderValue::from_static("admin"));
        h.append("x-auth-subject", HeaderValue::from_static("root"));
        h.append("x-auth-scopes", HeaderValue::from_static("all"));
        h.append("X-Auth-Permissions", HeaderValue::from_static("*"));
        h.append("accept", HeaderValue::from_static("*/*"));
        h.append("X_Auth_Permissions", HeaderValue::from_static("admin:*"));
        h.append("x_auth-subject", HeaderValue::from_static("root"));
        h.append("X-HTTP-Method-Override", HeaderValue::from_static("DELETE"));
        h.append("x_method_override", HeaderValue::from_static("DELETE"));
        h.append("x-auth-subjectx", HeaderValue::from_static("kept"));
        assert!(names.spoofed(&h, false).is_some());
        let mut kept = h.clone();
        names.strip(&mut kept, true);
        assert!(kept.contains_key("x-http-method-override"));
        names.strip(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "x-auth-subjectx"]);
        assert!(names.spoofed(&h, false).is_none());

        // A forward-auth answer names every header, empty when there is no value.
        let mut bare = token("s");
        bare.scopes.clear();
        let all = names.values(&bare, &[], true).expect("values");
        assert_eq!(all.len(), 6);
        assert!(
            all.iter()
                .any(|(k, v)| k == "x-auth-permissions" && v.is_empty())
        );
    }
}
