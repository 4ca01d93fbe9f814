//! `tokenwarden token get`: one token for a script, from a config profile or from flags alone.

use clap::{Args, ValueEnum};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use tw_config::{
    AuthMethod, Config, GrantType, ProfileConfig, SecretRef, SigningAlg, TimingConfig,
};
use tw_core::{Clock, Error, SystemClock};
use url::Url;

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("endpoint").args(["issuer", "token_url"]).conflicts_with("config"))]
pub struct GetArgs {
    /// Profile name from the configuration file.
    #[arg(requires = "config")]
    pub profile: Option<String>,
    /// Configuration file (TOML).
    #[arg(short, long, env = "TOKENWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub client: ClientFlags,
    /// Print JSON (access_token, token_type, expires_in, expires_at) instead of the bare token.
    #[arg(long)]
    pub json: bool,
}

/// A client given by flags alone (no config file): `token get` and `doctor` share these.
#[derive(Debug, Args)]
pub struct ClientFlags {
    /// Without a config file: OIDC issuer URL (the token endpoint is found by discovery).
    #[arg(long)]
    pub issuer: Option<Url>,
    /// Token endpoint URL (instead of --issuer).
    #[arg(long)]
    pub token_url: Option<Url>,
    /// Without a config file: the client id.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Environment variable holding the client secret.
    #[arg(long, conflicts_with = "client_secret_file")]
    pub client_secret_env: Option<String>,
    /// File holding the client secret.
    #[arg(long)]
    pub client_secret_file: Option<PathBuf>,
    /// PEM private key file for --auth-method private-key-jwt.
    #[arg(long)]
    pub private_key_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = CliAlg::Rs256)]
    pub signing_alg: CliAlg,
    /// `kid` header of the client assertion.
    #[arg(long)]
    pub key_id: Option<String>,
    /// Client authentication method; the registered names (client_secret_basic,
    /// client_secret_post, private_key_jwt, none) are accepted too.
    #[arg(long, value_enum, default_value_t = CliAuth::ClientSecretBasic)]
    pub auth_method: CliAuth,
    #[arg(long)]
    pub scope: Option<String>,
    /// Sent as the `audience` form field.
    #[arg(long)]
    pub audience: Option<String>,
    /// RFC 8707 resource indicator.
    #[arg(long)]
    pub resource: Option<String>,
}

/// Kebab case like every flag value, and the registered OAuth names (RFC 7591 §2, as in the
/// config file, OIDC discovery and Keycloak) as aliases, so a value copied from any of them works.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CliAuth {
    #[value(alias = "client_secret_basic")]
    ClientSecretBasic,
    #[value(alias = "client_secret_post")]
    ClientSecretPost,
    #[value(alias = "private_key_jwt")]
    PrivateKeyJwt,
    None,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CliAlg {
    Rs256,
    Ps256,
    Es256,
}

pub async fn get(args: GetArgs) -> anyhow::Result<ExitCode> {
    let (config, profile) = match (&args.config, &args.profile) {
        (Some(path), Some(name)) => (tw_config::load(path)?, name.clone()),
        (Some(path), None) => {
            let cfg = tw_config::load(path)?;
            let mut names = cfg.profiles.keys();
            match (names.next(), names.next()) {
                (Some(only), None) => {
                    let only = only.clone();
                    (cfg, only)
                }
                _ => {
                    return Err(Error::bad_request(
                        "profile_required",
                        format!("{} defines several profiles; name one", path.display()),
                    )
                    .into());
                }
            }
        }
        (None, _) => (config_from_flags(&args.client)?, "cli".to_owned()),
    };
    let clock = Arc::new(SystemClock);
    let broker = tw_broker::Broker::from_profiles_manual(&config.profiles, clock.clone())?;
    let p = broker.profile(&profile).ok_or_else(|| {
        Error::not_found(
            "profile_not_found",
            format!("no profile named `{profile}` in the configuration"),
        )
    })?;
    let served = p.token(tw_broker::TokenRequest::default()).await?;
    let tok = served.token;
    if args.json {
        let now = clock.now();
        let out = serde_json::json!({
            "access_token": tok.access_token.expose(),
            "token_type": tok.token_type,
            "expires_in": tok.expires_in(now).as_secs(),
            "expires_at": tok.expires_at.as_secs(),
        });
        println!("{out}");
    } else {
        println!("{}", tok.access_token.expose());
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn config_from_flags(args: &ClientFlags) -> Result<Config, Error> {
    let usage = |m: &str| Error::bad_request("usage", m.to_owned());
    if args.issuer.is_none() && args.token_url.is_none() {
        return Err(usage(
            "give a PROFILE with --config, or --issuer URL / --token-url URL with --client-id",
        ));
    }
    let client_id = args
        .client_id
        .clone()
        .ok_or_else(|| usage("--client-id is required"))?;
    let client_secret = match (&args.client_secret_env, &args.client_secret_file) {
        (Some(var), _) => Some(SecretRef::Env(var.clone())),
        (None, Some(path)) => Some(SecretRef::File(path.clone())),
        (None, None) => None,
    };
    let auth_method = match args.auth_method {
        CliAuth::ClientSecretBasic => AuthMethod::ClientSecretBasic,
        CliAuth::ClientSecretPost => AuthMethod::ClientSecretPost,
        CliAuth::PrivateKeyJwt => AuthMethod::PrivateKeyJwt,
        CliAuth::None => AuthMethod::None,
    };
    let profile = ProfileConfig {
        issuer: args.issuer.clone(),
        token_url: args.token_url.clone(),
        client_id: Some(client_id),
        auth_method,
        client_secret,
        private_key: args.private_key_file.clone().map(SecretRef::File),
        signing_alg: match args.signing_alg {
            CliAlg::Rs256 => SigningAlg::RS256,
            CliAlg::Ps256 => SigningAlg::PS256,
            CliAlg::Es256 => SigningAlg::ES256,
        },
        key_id: args.key_id.clone(),
        grant: GrantType::ClientCredentials,
        refresh_token: None,
        refresh_token_state_file: None,
        scope: args.scope.clone(),
        audience: args.audience.clone(),
        resource: args.resource.clone(),
        extra_params: BTreeMap::new(),
        custom: None,
        eager: false,
        timing: TimingConfig::default(),
    };
    let config = Config {
        profiles: BTreeMap::from([("cli".to_owned(), profile)]),
        ..Config::default()
    };
    // Same rules as a file, reported with the flag-derived profile name.
    tw_config::validate_config(&config, "command-line flags").map_err(|e| {
        let msg = e
            .message()
            .replace(
                "key `profiles.cli.client_secret`",
                "--client-secret-env or --client-secret-file",
            )
            .replace("key `profiles.cli.private_key`", "--private-key-file");
        Error::bad_request("usage", msg)
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The profile `token get` builds from `--auth-method METHOD`.
    fn auth_method_of(method: &str) -> AuthMethod {
        let cli = crate::cli::Cli::try_parse_from([
            "tokenwarden",
            "token",
            "get",
            "--token-url",
            "https://kc.example/realms/x/protocol/openid-connect/token",
            "--client-id",
            "c",
            "--client-secret-env",
            "S",
            "--private-key-file",
            "/dev/null",
            "--auth-method",
            method,
        ])
        .expect("parses");
        let crate::cli::Command::Token(cmd) = cli.command else {
            panic!("not `token`");
        };
        let crate::cli::TokenCommand::Get(args) = *cmd else {
            panic!("not `token get`");
        };
        let config = config_from_flags(&args.client).expect("a valid profile");
        config.profiles["cli"].auth_method
    }

    #[test]
    fn each_auth_method_name_means_its_own_method() {
        for (names, method) in [
            (
                ["client_secret_basic", "client-secret-basic"],
                AuthMethod::ClientSecretBasic,
            ),
            (
                ["client_secret_post", "client-secret-post"],
                AuthMethod::ClientSecretPost,
            ),
            (
                ["private_key_jwt", "private-key-jwt"],
                AuthMethod::PrivateKeyJwt,
            ),
            (["none", "none"], AuthMethod::None),
        ] {
            for name in names {
                assert_eq!(auth_method_of(name), method, "{name}");
            }
        }
    }
}
