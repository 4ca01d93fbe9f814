//! Reading, merging and checking the configuration.

use crate::config::Config;
use crate::model::*;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use std::path::{Path, PathBuf};
use tw_core::{CONFIG_INVALID, Error, Invalid, SettingsProblem};

/// Environment variables with this prefix override file values.
pub const ENV_PREFIX: &str = "TOKENWARDEN_";

/// Where a configuration came from, for error messages.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    File(PathBuf),
    /// An in-memory document (tests, `--flags` built configs) with a display name.
    Inline(String),
}

impl ConfigSource {
    fn name(&self) -> String {
        match self {
            ConfigSource::File(p) => p.display().to_string(),
            ConfigSource::Inline(n) => n.clone(),
        }
    }
}

/// Loads `path`, applies `TOKENWARDEN_*` overrides and checks the result.
pub fn load(path: &Path) -> Result<Config, Error> {
    let source = ConfigSource::File(path.to_owned());
    if !path.is_file() {
        return Err(config_error(
            &source,
            None,
            "the configuration file does not exist or is not a file",
        ));
    }
    check_env_names(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))?;
    let figment = Figment::new()
        .merge(Toml::file_exact(path))
        .merge(env_overrides());
    extract(figment, &source)
}

/// Loads a TOML document held in memory (with the same env overrides).
pub fn load_str(toml: &str, name: &str) -> Result<Config, Error> {
    check_env_names(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()))?;
    let figment = Figment::new()
        .merge(Toml::string(toml))
        .merge(env_overrides());
    extract(figment, &ConfigSource::Inline(name.to_owned()))
}

/// The sections environment variables may override, as `TOKENWARDEN_<SECTION>__<KEY>` (`__`
/// separates levels: `TOKENWARDEN_PROFILES__SMARTEM__CLIENT_ID=x`). Nothing else is read as a
/// configuration key: not the CLI's own variables ([`CLI_VARIABLES`]), not those the agent sets
/// for its sink commands, not any other `TOKENWARDEN_*` variable of the environment.
pub const ENV_OVERRIDE_SECTIONS: &[&str] =
    &["log", "agent", "profiles", "gateway", "storage", "vault"];

/// The command line's own variables, never configuration keys.
pub const CLI_VARIABLES: &[&str] = &["TOKENWARDEN_CONFIG", "TOKENWARDEN_LOG"];

/// The section a variable overrides, when it is an override: `TOKENWARDEN_GATEWAY__LISTEN` →
/// `gateway`.
fn override_section(name: &str) -> Option<String> {
    let rest = name
        .get(..ENV_PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(ENV_PREFIX))
        .and(name.get(ENV_PREFIX.len()..))?;
    let (section, _) = rest.split_once("__")?;
    Some(section.to_ascii_lowercase())
}

fn env_overrides() -> Env {
    Env::prefixed(ENV_PREFIX)
        .filter(|key| {
            key.as_str().split_once("__").is_some_and(|(section, _)| {
                ENV_OVERRIDE_SECTIONS.contains(&section.to_ascii_lowercase().as_str())
            })
        })
        .split("__")
}

/// Refuses a `TOKENWARDEN_<X>__<KEY>` variable (the override spelling) whose `<X>` is not a section
/// that can be overridden (`TOKENWARDEN_GATEWAYS__LISTEN`), which would otherwise be ignored
/// without a word. Names without `__` are left alone: they may be anything, such as the name of
/// a secret a `{ env = ... }` reference reads (`TOKENWARDEN_VAULT_CLIENT_SECRET`). The prefix is
/// matched regardless of case, as the overrides themselves are.
fn check_env_names(names: impl Iterator<Item = String>) -> Result<(), Error> {
    let sections = ENV_OVERRIDE_SECTIONS.join(", ");
    for name in names {
        let Some(section) = override_section(&name) else {
            continue;
        };
        if ENV_OVERRIDE_SECTIONS.contains(&section.as_str()) {
            continue;
        }
        // A known section followed by a single `_` before the first `__`: a mistyped separator.
        let hint = ENV_OVERRIDE_SECTIONS
            .iter()
            .find(|s| section.starts_with(&format!("{s}_")))
            .map(|s| {
                format!(
                    "; levels are separated by `__`: write {ENV_PREFIX}{}__{}",
                    s.to_ascii_uppercase(),
                    &name[ENV_PREFIX.len() + s.len() + 1..]
                )
            })
            .unwrap_or_default();
        return Err(Error::config(
            CONFIG_INVALID,
            format!(
                "environment variable {name}: `{section}` is not a section that can be overridden; the sections are {sections}{hint}"
            ),
        )
        .with("variable", name));
    }
    Ok(())
}

fn extract(figment: Figment, source: &ConfigSource) -> Result<Config, Error> {
    let config: Config = figment.extract().map_err(|e| figment_error(e, source))?;
    validate(&config, source)?;
    Ok(config)
}

fn figment_error(err: figment::Error, source: &ConfigSource) -> Error {
    // Report the first problem precisely; mention how many more there are.
    let total = err.count();
    let first = err.into_iter().next();
    let Some(e) = first else {
        return config_error(source, None, "invalid configuration");
    };
    let origin = match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(p)) => p.display().to_string(),
        _ => match &e.metadata {
            Some(m) if m.name.contains("environment") => {
                format!("environment ({ENV_PREFIX}* variables)")
            }
            _ => source.name(),
        },
    };
    let key = e.path.join(".");
    let mut message = format!("{origin}: ");
    if !key.is_empty() {
        message.push_str(&format!("key `{key}`: "));
    }
    message.push_str(&kind_message(&e.kind));
    if total > 1 {
        message.push_str(&format!(" (and {} more problem(s))", total - 1));
    }
    let mut out = Error::config(CONFIG_INVALID, message).with("file", origin);
    if !key.is_empty() {
        out = out.with("key", key);
    }
    out
}

fn kind_message(kind: &figment::error::Kind) -> String {
    use figment::error::Kind;
    match kind {
        Kind::UnknownField(field, expected) => {
            format!(
                "unknown key `{field}`; expected one of: {}",
                expected.join(", ")
            )
        }
        Kind::MissingField(field) => format!("missing required key `{field}`"),
        other => other.to_string(),
    }
}

fn config_error(source: &ConfigSource, key: Option<&str>, message: &str) -> Error {
    let name = source.name();
    match key {
        Some(k) => SettingsProblem {
            key: k.to_owned(),
            message: message.to_owned(),
        }
        .into_error_in(&name),
        None => Error::config(CONFIG_INVALID, format!("{name}: {message}")).with("file", name),
    }
}

/// Checks rules that types alone cannot express. Each error names the key.
pub fn validate_config(config: &Config, source_name: &str) -> Result<(), Error> {
    validate(config, &ConfigSource::Inline(source_name.to_owned()))
}

fn validate(config: &Config, source: &ConfigSource) -> Result<(), Error> {
    let fail = |key: String, msg: String| config_error(source, Some(&key), &msg);

    let listener_fail = |p: tw_core::SettingsProblem| fail(p.key, p.message);
    check_listener_access(&config.agent.api_access()).map_err(listener_fail)?;

    for (name, p) in &config.profiles {
        let k = |field: &str| format!("profiles.{name}.{field}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(fail(
                format!("profiles.{name}"),
                "profile names may use letters, digits, `-`, `_` and `.` only".into(),
            ));
        }
        if let Some(custom) = &p.custom {
            if p.issuer.is_some() || p.token_url.is_some() {
                return Err(fail(
                    k("custom"),
                    "a custom login profile takes no `issuer` or `token_url`".into(),
                ));
            }
            check_pointer(&custom.token_pointer)
                .map_err(|m| fail(k("custom.token_pointer"), m.into()))?;
            for (field, ptr) in [
                ("expires_in_pointer", &custom.expires_in_pointer),
                ("expires_at_pointer", &custom.expires_at_pointer),
                ("error_pointer", &custom.error_pointer),
                ("error_message_pointer", &custom.error_message_pointer),
            ] {
                if let Some(ptr) = ptr {
                    check_pointer(ptr)
                        .map_err(|m| fail(k(&format!("custom.{field}")), m.into()))?;
                }
            }
            check_custom_error_answer(custom).map_err(|(field, m)| fail(k(field), m))?;
        } else {
            if p.issuer.is_none() && p.token_url.is_none() {
                return Err(fail(
                    k("issuer"),
                    "give `issuer` (OIDC discovery) or `token_url`".into(),
                ));
            }
            if p.client_id.as_deref().unwrap_or("").is_empty() {
                return Err(fail(k("client_id"), "required for OAuth profiles".into()));
            }
            match p.auth_method {
                AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
                    if p.client_secret.is_none() =>
                {
                    return Err(fail(k("client_secret"), "required by this auth_method; e.g. client_secret = { env = \"MY_CLIENT_SECRET\" }".into()));
                }
                AuthMethod::PrivateKeyJwt if p.private_key.is_none() => {
                    return Err(fail(k("private_key"), "required by auth_method = \"private_key_jwt\"; e.g. private_key = { file = \"/run/secrets/agent-key.pem\" }".into()));
                }
                _ => {}
            }
            if p.grant == GrantType::RefreshToken
                && p.refresh_token.is_none()
                && p.refresh_token_state_file.is_none()
            {
                return Err(fail(
                    k("refresh_token"),
                    "required by grant = \"refresh_token\"".into(),
                ));
            }
        }
        let t = &p.timing;
        if !(t.refresh_fraction > 0.0 && t.refresh_fraction < 1.0) {
            return Err(fail(
                k("timing.refresh_fraction"),
                "must be between 0 and 1 (exclusive)".into(),
            ));
        }
        if !(0.0..0.5).contains(&t.jitter_fraction) {
            return Err(fail(
                k("timing.jitter_fraction"),
                "must be at least 0 and below 0.5".into(),
            ));
        }
        if t.default_lifetime.is_zero() {
            return Err(fail(
                k("timing.default_lifetime"),
                "must be positive".into(),
            ));
        }
        if t.backoff_initial.is_zero() || t.backoff_initial > t.backoff_max {
            return Err(fail(
                k("timing.backoff_initial"),
                "must be positive and not above backoff_max".into(),
            ));
        }
    }

    let known = |profile: &str| config.profiles.contains_key(profile);
    for (i, sink) in config.agent.sinks.iter().enumerate() {
        let k = |field: &str| format!("agent.sinks[{i}].{field}");
        if !known(&sink.profile) {
            return Err(fail(
                k("profile"),
                format!("no profile named `{}`", sink.profile),
            ));
        }
        parse_mode(&sink.mode).map_err(|m| fail(k("mode"), m.into()))?;
        if sink.command.as_ref().is_some_and(|c| c.is_empty()) {
            return Err(fail(
                k("command"),
                "give the program and its arguments, e.g. [\"pkill\", \"-HUP\", \"myapp\"]".into(),
            ));
        }
    }
    if let Some(proxy) = &config.agent.proxy {
        check_listener_access(&proxy.access()).map_err(listener_fail)?;
        let mut seen = std::collections::HashSet::new();
        for (i, r) in proxy.routes.iter().enumerate() {
            let k = |field: &str| format!("agent.proxy.routes[{i}].{field}");
            if !r.prefix.starts_with('/') {
                return Err(fail(k("prefix"), "must start with `/`".into()));
            }
            if !seen.insert(r.prefix.as_str()) {
                return Err(fail(
                    k("prefix"),
                    format!("`{}` is used by an earlier route", r.prefix),
                ));
            }
            if !matches!(r.upstream.scheme(), "http" | "https") {
                return Err(fail(
                    k("upstream"),
                    "must be an http:// or https:// URL".into(),
                ));
            }
            if !known(&r.profile) {
                return Err(fail(
                    k("profile"),
                    format!("no profile named `{}`", r.profile),
                ));
            }
            if let Some(rl) = r.rate_limit
                && (rl.per_second == 0 || rl.burst == Some(0))
            {
                return Err(fail(
                    k("rate_limit"),
                    "per_second and burst must be positive".into(),
                ));
            }
            if r.circuit_breaker.failure_threshold == 0 {
                return Err(fail(
                    k("circuit_breaker.failure_threshold"),
                    "must be positive".into(),
                ));
            }
        }
    }
    if let Some(gw) = &config.gateway {
        validate_gateway(gw, &fail)?;
    }
    if let Some(storage) = &config.storage {
        storage.check().map_err(|p| fail(p.key, p.message))?;
    }
    if let Some(vault) = &config.vault {
        crate::vault::validate_vault(vault, &fail)?;
    }
    Ok(())
}

/// The admin API takes precedence over routes under its prefix, like the probes and the
/// forward-auth endpoint: none of them may overlap.
fn check_admin_prefix(gw: &GatewayConfig) -> Result<(), Invalid> {
    let p = gw.admin.path_prefix.as_str();
    let overlaps = |a: &str, b: &str| {
        let under = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
        under(a, b) || under(b, a)
    };
    let taken = tw_gateway::GATEWAY_PROBE_PATHS
        .iter()
        .copied()
        .chain(std::iter::once(gw.forward_auth_path.as_str()));
    for other in taken {
        if overlaps(p, other) {
            return Err(format!("`{p}` collides with {other}").into());
        }
    }
    if let Some(r) = gw
        .routes
        .iter()
        .find(|r| r.prefix != "/" && overlaps(r.prefix.trim_end_matches('/'), p))
    {
        return Err(format!("`{p}` would hide the route with prefix `{}`", r.prefix).into());
    }
    Ok(())
}

/// Checks a `[gateway]` section on its own (for callers that build one without a file).
pub fn validate_gateway_config(gw: &GatewayConfig, source_name: &str) -> Result<(), Error> {
    let source = ConfigSource::Inline(source_name.to_owned());
    let fail = |key: String, msg: String| config_error(&source, Some(&key), &msg);
    validate_gateway(gw, &fail)
}

/// The gateway's own checks, then the admin API's place on its listener.
fn validate_gateway(
    gw: &GatewayConfig,
    fail: &dyn Fn(String, String) -> Error,
) -> Result<(), Error> {
    tw_gateway::check_gateway(&gw.gateway_settings()).map_err(|p| fail(p.key, p.message))?;
    if gw.admin.enabled {
        check_admin_prefix(gw).map_err(|m| fail("gateway.admin.path_prefix".into(), m.into()))?;
    }
    Ok(())
}

/// The error-answer keys of a custom login profile go together; the values must be scalars.
fn check_custom_error_answer(custom: &CustomLoginConfig) -> Result<(), (&'static str, String)> {
    match (&custom.error_pointer, custom.error_values.is_empty()) {
        (Some(_), true) => {
            return Err((
                "custom.error_values",
                "`error_pointer` needs the values that mean failure, e.g. error_values = [\"error\", \"failed\"]".into(),
            ));
        }
        (None, false) => {
            return Err((
                "custom.error_pointer",
                "`error_values` needs the pointer to compare them with, e.g. error_pointer = \"/status\"".into(),
            ));
        }
        _ => {}
    }
    if custom.error_message_pointer.is_some() && custom.error_pointer.is_none() {
        return Err((
            "custom.error_message_pointer",
            "only read for error answers: set `error_pointer` and `error_values` too".into(),
        ));
    }
    if custom
        .error_values
        .iter()
        .any(|v| v.is_null() || v.is_array() || v.is_object())
    {
        return Err((
            "custom.error_values",
            "each value must be a string, a number or a boolean".into(),
        ));
    }
    Ok(())
}

fn check_pointer(p: &str) -> Result<(), Invalid> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(
            format!("`{p}` is not a JSON pointer; it must start with `/`, e.g. \"/data/token\"")
                .into(),
        )
    }
}
