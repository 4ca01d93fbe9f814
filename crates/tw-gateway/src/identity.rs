//! Identity headers: what the gateway tells the API about a verified caller. Incoming headers with
//! these names are always removed first, so no caller can spoof them.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use tw_config::IdentityHeaders;
use tw_core::Error;
use tw_verify::VerifiedToken;

/// The permissions header when `[gateway.authz]` names none.
pub const DEFAULT_PERMISSIONS_HEADER: &str = "X-Auth-Permissions";

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
                    "config_invalid",
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

    /// Removes every header with one of these names (all values).
    pub fn strip(&self, headers: &mut HeaderMap) {
        for name in self.names() {
            headers.remove(name);
        }
    }

    /// The headers describing `token`: subject (`sub`), client id (`azp`, else `client_id`),
    /// service-account flag (`true`/`false`), scopes (space-separated) and issuer. Absent claims
    /// and an empty scope list give no header. `Err(claim)` when a claim holds a character no
    /// header value may (a control character). `permissions` (granted by the decision) go in the
    /// permissions header, space-separated; none: no header.
    pub fn values(
        &self,
        token: &VerifiedToken,
        permissions: &[String],
    ) -> Result<Vec<(HeaderName, HeaderValue)>, &'static str> {
        let mut out = Vec::with_capacity(6);
        let mut add = |name: &HeaderName, claim: &'static str, value: &str| {
            HeaderValue::from_bytes(value.as_bytes())
                .map(|v| out.push((name.clone(), v)))
                .map_err(|_| claim)
        };
        if let Some(sub) = &token.subject {
            add(&self.subject, "sub", sub)?;
        }
        if let Some(client) = &token.client_id {
            add(&self.client_id, "azp", client)?;
        }
        let flag = if token.service_account {
            "true"
        } else {
            "false"
        };
        add(&self.service_account, "preferred_username", flag)?;
        if !token.scopes.is_empty() {
            add(&self.scopes, "scope", &token.scopes.join(" "))?;
        }
        add(&self.issuer, "iss", &token.issuer)?;
        if !permissions.is_empty() {
            add(&self.permissions, "permissions", &permissions.join(" "))?;
        }
        Ok(out)
    }
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
        let values = names.values(&token("0d0c-1"), &perms).expect("values");
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
            names.values(&token("a\nb"), &[]).expect_err("newline"),
            "sub"
        );

        let mut h = HeaderMap::new();
        h.append("X-Auth-Subject", HeaderValue::from_static("admin"));
        h.append("x-auth-subject", HeaderValue::from_static("root"));
        h.append("x-auth-scopes", HeaderValue::from_static("all"));
        h.append("X-Auth-Permissions", HeaderValue::from_static("*"));
        h.append("accept", HeaderValue::from_static("*/*"));
        names.strip(&mut h);
        assert_eq!(h.len(), 1);
    }
}
