//! Access-token claims the way Keycloak shapes them for a service account: the fixed claims plus
//! what the client's and its scopes' protocol mappers add.

use crate::realm::{Client, Realm, RoleRef, ServiceAccount};
use serde_json::{Map, Value, json};
use std::collections::BTreeSet;
use std::net::IpAddr;

pub(crate) struct TokenContext<'a> {
    pub realm: &'a Realm,
    pub issuer: &'a str,
    pub client: &'a Client,
    pub account: &'a ServiceAccount,
    /// Effective client scopes (defaults, then granted optional ones).
    pub scopes: &'a [String],
    /// The `scope` claim.
    pub scope_claim: &'a str,
    pub peer: Option<IpAddr>,
    pub iat: i64,
    pub exp: i64,
    pub jti: &'a str,
}

pub(crate) fn access_claims(ctx: &TokenContext<'_>) -> Value {
    let mut claims = Map::new();
    let mut audience: BTreeSet<String> = BTreeSet::new();
    claims.insert("exp".into(), json!(ctx.exp));
    claims.insert("iat".into(), json!(ctx.iat));
    claims.insert("jti".into(), json!(ctx.jti));
    claims.insert("iss".into(), json!(ctx.issuer));
    claims.insert("sub".into(), json!(ctx.account.id));
    claims.insert("typ".into(), json!("Bearer"));
    claims.insert("azp".into(), json!(ctx.client.client_id));
    claims.insert("scope".into(), json!(ctx.scope_claim));
    claims.insert(
        "preferred_username".into(),
        json!(ctx.account.username.clone()),
    );
    claims.insert("client_id".into(), json!(ctx.client.client_id));
    if let Some(ip) = ctx.peer {
        claims.insert("clientHost".into(), json!(ip.to_string()));
        claims.insert("clientAddress".into(), json!(ip.to_string()));
    }

    let scope_mappers = ctx
        .scopes
        .iter()
        .filter_map(|s| ctx.realm.scopes.get(s))
        .flat_map(|s| s.mappers.iter());
    for m in ctx.client.mappers.iter().chain(scope_mappers) {
        let cfg = |k: &str| m.config.get(k).map(String::as_str);
        if cfg("access.token.claim") == Some("false") {
            continue;
        }
        match m.protocol_mapper.as_str() {
            "oidc-usermodel-realm-role-mapper" => {
                let prefix = cfg("usermodel.realmRoleMapping.rolePrefix").unwrap_or("");
                let roles: Vec<Value> = realm_roles(ctx.account)
                    .map(|r| json!(format!("{prefix}{r}")))
                    .collect();
                if !roles.is_empty() {
                    let name = cfg("claim.name").unwrap_or("realm_access.roles");
                    set_claim(&mut claims, name, Value::Array(roles));
                }
            }
            "oidc-usermodel-client-role-mapper" => {
                let only = cfg("usermodel.clientRoleMapping.clientId").filter(|s| !s.is_empty());
                let prefix = cfg("usermodel.clientRoleMapping.rolePrefix").unwrap_or("");
                let name = cfg("claim.name").unwrap_or("resource_access.${client_id}.roles");
                for (client, roles) in client_roles(ctx.account) {
                    if only.is_some_and(|o| o != client) {
                        continue;
                    }
                    let roles: Vec<Value> = roles
                        .into_iter()
                        .map(|r| json!(format!("{prefix}{r}")))
                        .collect();
                    let claim = name.replace("${client_id}", client);
                    append_claim(&mut claims, &claim, roles);
                }
            }
            "oidc-audience-resolve-mapper" => {
                // Keycloak: every client the account has a client role of, except the caller itself.
                for (client, _) in client_roles(ctx.account) {
                    if client != ctx.client.client_id {
                        audience.insert(client.to_owned());
                    }
                }
            }
            "oidc-audience-mapper" => {
                for key in ["included.client.audience", "included.custom.audience"] {
                    if let Some(a) = cfg(key).filter(|s| !s.is_empty()) {
                        audience.insert(a.to_owned());
                    }
                }
            }
            "oidc-usersessionmodel-note-mapper" => {
                let value = match cfg("user.session.note") {
                    Some("clientId" | "client_id") => Some(ctx.client.client_id.clone()),
                    Some("clientHost" | "clientAddress" | "client_host" | "client_address") => {
                        ctx.peer.map(|ip| ip.to_string())
                    }
                    _ => None,
                };
                if let (Some(v), Some(name)) = (value, cfg("claim.name")) {
                    set_claim(&mut claims, name, json!(v));
                }
            }
            "oidc-usermodel-attribute-mapper" | "oidc-usermodel-property-mapper" => {
                if let (Some(attr), Some(name)) = (cfg("user.attribute"), cfg("claim.name")) {
                    let multivalued = cfg("multivalued") == Some("true");
                    if let Some(v) = user_value(ctx.account, attr, multivalued) {
                        set_claim(&mut claims, name, typed(v, cfg("jsonType.label")));
                    }
                }
            }
            "oidc-hardcoded-claim-mapper" => {
                if let (Some(name), Some(value)) = (cfg("claim.name"), cfg("claim.value")) {
                    set_claim(
                        &mut claims,
                        name,
                        typed(json!(value), cfg("jsonType.label")),
                    );
                }
            }
            "oidc-acr-mapper" => {
                claims.insert("acr".into(), json!("1"));
            }
            "oidc-allowed-origins-mapper" => {
                let origins: Vec<&String> = ctx
                    .client
                    .web_origins
                    .iter()
                    .filter(|o| o.as_str() != "+")
                    .collect();
                if !origins.is_empty() {
                    claims.insert("allowed-origins".into(), json!(origins));
                }
            }
            "oidc-full-name-mapper" => {
                let parts: Vec<&str> = [&ctx.account.first_name, &ctx.account.last_name]
                    .into_iter()
                    .filter_map(|p| p.as_deref())
                    .collect();
                if !parts.is_empty() {
                    claims.insert("name".into(), json!(parts.join(" ")));
                }
            }
            // `sub` is always set.
            _ => {}
        }
    }
    match audience.len() {
        0 => {}
        1 => {
            claims.insert("aud".into(), json!(audience.pop_first()));
        }
        _ => {
            claims.insert("aud".into(), json!(audience));
        }
    }
    Value::Object(claims)
}

fn realm_roles(account: &ServiceAccount) -> impl Iterator<Item = &str> {
    account.roles.iter().filter_map(|r| match r {
        RoleRef::Realm(n) => Some(n.as_str()),
        RoleRef::Client(..) => None,
    })
}

/// Client id → role names, in client order.
fn client_roles(account: &ServiceAccount) -> Vec<(&str, Vec<&str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in &account.roles {
        if let RoleRef::Client(c, n) = r {
            match out.last_mut() {
                Some((last, roles)) if *last == c.as_str() => roles.push(n),
                _ => out.push((c, vec![n])),
            }
        }
    }
    out
}

fn user_value(account: &ServiceAccount, attr: &str, multivalued: bool) -> Option<Value> {
    match attr {
        "username" => Some(json!(account.username)),
        "email" => account.email.as_ref().map(|v| json!(v)),
        "firstName" => account.first_name.as_ref().map(|v| json!(v)),
        "lastName" => account.last_name.as_ref().map(|v| json!(v)),
        "emailVerified" => Some(json!(account.email_verified)),
        other => {
            let values = account.attributes.get(other)?;
            if multivalued {
                Some(json!(values))
            } else {
                values.first().map(|v| json!(v))
            }
        }
    }
}

/// Keycloak's `jsonType.label` conversion of a string value.
fn typed(v: Value, label: Option<&str>) -> Value {
    let Value::String(s) = &v else {
        return v;
    };
    match label {
        Some("boolean") => s.parse::<bool>().map(Value::Bool).unwrap_or(v),
        Some("long" | "int") => s.parse::<i64>().map(|n| json!(n)).unwrap_or(v),
        Some("JSON") => serde_json::from_str(s).unwrap_or(v),
        _ => v,
    }
}

/// Splits a Keycloak claim name on dots, `\.` being a literal dot.
fn claim_path(name: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                chars.next();
                if let Some(last) = parts.last_mut() {
                    last.push('.');
                }
            }
            '.' => parts.push(String::new()),
            c => {
                if let Some(last) = parts.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    parts
}

fn slot<'a>(claims: &'a mut Map<String, Value>, name: &str) -> Option<&'a mut Value> {
    let path = claim_path(name);
    let (last, parents) = path.split_last()?;
    let mut obj = claims;
    for p in parents {
        let entry = obj
            .entry(p.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        obj = entry.as_object_mut()?;
    }
    Some(obj.entry(last.clone()).or_insert(Value::Null))
}

fn set_claim(claims: &mut Map<String, Value>, name: &str, value: Value) {
    if let Some(s) = slot(claims, name) {
        *s = value;
    }
}

fn append_claim(claims: &mut Map<String, Value>, name: &str, values: Vec<Value>) {
    if let Some(s) = slot(claims, name) {
        match s {
            Value::Array(existing) => {
                for v in values {
                    if !existing.contains(&v) {
                        existing.push(v);
                    }
                }
            }
            other => *other = Value::Array(values),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_names_nest_on_dots_unless_escaped() {
        assert_eq!(claim_path("realm_access.roles"), ["realm_access", "roles"]);
        assert_eq!(
            claim_path(r"https://example\.org/roles"),
            ["https://example.org/roles"]
        );
        let mut claims = Map::new();
        set_claim(&mut claims, "a.b", json!(1));
        append_claim(&mut claims, "a.c", vec![json!("x")]);
        append_claim(&mut claims, "a.c", vec![json!("x"), json!("y")]);
        assert_eq!(
            Value::Object(claims),
            json!({"a": {"b": 1, "c": ["x", "y"]}})
        );
    }

    #[test]
    fn json_type_labels_convert_like_keycloak() {
        assert_eq!(typed(json!("true"), Some("boolean")), json!(true));
        assert_eq!(typed(json!("42"), Some("long")), json!(42));
        assert_eq!(typed(json!("{\"k\":1}"), Some("JSON")), json!({"k": 1}));
        assert_eq!(typed(json!("nope"), Some("int")), json!("nope"));
        assert_eq!(typed(json!("v"), Some("String")), json!("v"));
    }
}
