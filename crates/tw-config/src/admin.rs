//! `[gateway.admin]`: the admin HTTP API (service accounts, roles, audit log) on the gateway's
//! listener, protected by the gateway's own token verification and authorizer: who holds
//! `tokenwarden:admin` is decided with `[gateway.authz]` (claim paths, role map, per-issuer
//! permission sources, registry), as for the gateway's routes.

use serde::{Deserialize, Deserializer};
use tw_core::Error;

/// `[gateway.admin]`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin API. Default `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Token roles that grant `tokenwarden:admin`, named as `[gateway.authz]` names roles (realm
    /// roles as is, client roles by `client_role_format`, `<client>:<role>` by default). They
    /// count only for issuers whose permission sources include `roles`. Whatever else grants
    /// `tokenwarden:admin` (or `tokenwarden:*`, `*`) counts too: a role of
    /// `[gateway.authz.roles]`, or a registry account where `registry` is a source of the
    /// issuer. Default `["tokenwarden-admin"]`; empty: those only.
    #[serde(default = "default_roles", deserialize_with = "de_roles")]
    pub roles: Vec<String>,
    /// Where the API lives: `{path_prefix}/v1/...`, `{path_prefix}/docs`. Default `/admin`.
    #[serde(default = "default_path_prefix", deserialize_with = "de_path_prefix")]
    pub path_prefix: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            roles: default_roles(),
            path_prefix: default_path_prefix(),
        }
    }
}

fn default_roles() -> Vec<String> {
    vec!["tokenwarden-admin".into()]
}
fn default_path_prefix() -> String {
    "/admin".into()
}

// Checked while loading, so the error names the file and the key (`gateway.admin.path_prefix`).
fn de_path_prefix<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = String::deserialize(d)?;
    check_path_prefix(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

fn de_roles<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let roles = Vec::<String>::deserialize(d)?;
    check_roles(&roles).map_err(serde::de::Error::custom)?;
    Ok(roles)
}

fn check_path_prefix(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') || p.len() < 2 || p.ends_with('/') {
        return Err(
            "must start with `/`, name at least one segment and not end with `/`, e.g. \"/admin\"",
        );
    }
    if p.contains(['?', '#', '*', '{', '}', ' '])
        || p.split('/')
            .skip(1)
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(
            "must be a plain path (no empty, `.` or `..` segments, no spaces, `?`, `#`, `*`, `{`, `}`)",
        );
    }
    Ok(())
}

fn check_roles(roles: &[String]) -> Result<(), &'static str> {
    if roles.iter().any(|r| r.trim().is_empty()) {
        return Err("role names must not be empty");
    }
    Ok(())
}

impl AdminConfig {
    /// Checks a section built in code (loading checks it already); errors name the key
    /// (`gateway.admin.path_prefix`, ...).
    pub fn validate(&self) -> Result<(), Error> {
        let fail = |key: &str, msg: &str| {
            let key = format!("gateway.admin.{key}");
            tw_core::SettingsProblem {
                key: key.to_string(),
                message: msg.to_string(),
            }
            .into_error()
        };
        check_path_prefix(&self.path_prefix).map_err(|m| fail("path_prefix", m))?;
        check_roles(&self.roles).map_err(|m| fail("roles", m))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let d = AdminConfig::default();
        assert!(!d.enabled);
        assert_eq!(d.path_prefix, "/admin");
        assert!(d.validate().is_ok());
        for bad in ["admin", "/", "/admin/", "/a//b", "/a/../b"] {
            let c = AdminConfig {
                path_prefix: bad.into(),
                ..AdminConfig::default()
            };
            let e = c.validate().expect_err(bad);
            assert_eq!(e.context_value("key"), Some("gateway.admin.path_prefix"));
        }
        let c = AdminConfig {
            enabled: true,
            roles: vec![" ".into()],
            ..AdminConfig::default()
        };
        assert_eq!(
            c.validate()
                .err()
                .and_then(|e| e.context_value("key").map(str::to_owned)),
            Some("gateway.admin.roles".into())
        );
    }

    #[test]
    fn parses_under_gateway() {
        let toml = "[gateway]\n[[gateway.issuers]]\nissuer = \"https://kc.example/realms/e\"\naudiences = [\"api\"]\n\n[gateway.admin]\nenabled = true\nroles = [\"ops:admin\"]\n";
        let cfg = crate::load_str(toml, "t.toml").expect("config");
        let admin = cfg.gateway.expect("gateway").admin;
        assert!(admin.enabled);
        assert_eq!(admin.roles, ["ops:admin"]);
        assert_eq!(admin.path_prefix, "/admin");
        let bad = toml.replace("enabled = true", "enabeld = true");
        assert!(crate::load_str(&bad, "t.toml").is_err());
        let bad = toml.replace("enabled = true", "path_prefix = \"admin/\"");
        let e = crate::load_str(&bad, "t.toml").expect_err("bad prefix");
        assert_eq!(
            e.context_value("key"),
            Some("gateway.admin.path_prefix"),
            "{e}"
        );
        assert!(e.message().contains("must start with `/`"), "{e}");
    }
}
