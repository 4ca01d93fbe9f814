//! `tokenwarden gateway` (serve) and `tokenwarden token inspect` (would the gateway accept this
//! token, check by check, and why not).

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tw_config::GatewayConfig;
use tw_core::{Clock, Error, SystemClock, UnixTime};
use tw_serve::gateway::{gateway_section, serve};
use tw_verify::{InspectReport, StepStatus, Verifier};
use url::Url;

#[derive(Debug, Args)]
pub struct GatewayArgs {
    /// Configuration file (TOML) with a [gateway] section. TOKENWARDEN_* environment variables
    /// override its values.
    #[arg(short, long, env = "TOKENWARDEN_CONFIG")]
    pub config: PathBuf,
}

/// Runs the gateway until SIGTERM / Ctrl-C.
pub async fn run(args: GatewayArgs) -> anyhow::Result<ExitCode> {
    let cfg = tw_config::load(&args.config)?;
    gateway_section(&cfg, &args.config)?;
    crate::logging::init(&cfg.log);
    let metrics = crate::process::install_metrics_recorder()?;
    serve(
        &cfg,
        &args.config,
        metrics,
        crate::process::shutdown_signal(),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The token, or `-` to read it from standard input (keeps it out of shell history and the
    /// process list). A leading `Bearer ` is ignored.
    pub token: String,
    /// Judge by this configuration's [gateway] issuers.
    #[arg(short, long, env = "TOKENWARDEN_CONFIG", conflicts_with = "issuer")]
    pub config: Option<PathBuf>,
    /// Judge by one trusted issuer given by flags: its exact `iss` (an URL: the keys are found by
    /// OIDC discovery unless --jwks-url is given).
    #[arg(long)]
    pub issuer: Option<String>,
    /// JWKS URL (skips discovery).
    #[arg(long, requires = "issuer")]
    pub jwks_url: Option<Url>,
    /// Accepted audience (repeatable; none: `aud` is not checked).
    #[arg(long = "audience", requires = "issuer")]
    pub audiences: Vec<String>,
    /// Accepted authorized party, i.e. client id (repeatable; none: any).
    #[arg(long = "azp", requires = "issuer")]
    pub azp: Vec<String>,
    /// Accepted signature algorithm (repeatable; default RS256, PS256, ES256, EdDSA).
    #[arg(long = "alg", requires = "issuer")]
    pub algs: Vec<String>,
    /// Clock skew allowed on exp, nbf and iat, e.g. 60s (a bare number is seconds).
    #[arg(long, requires = "issuer", value_name = "DURATION", value_parser = tw_config::duration::parse)]
    pub leeway: Option<Duration>,
    /// Which token types are access tokens.
    #[arg(long, value_enum, requires = "issuer")]
    pub token_type: Option<CliTokenType>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CliTokenType {
    /// Keycloak access tokens (header typ JWT or at+jwt; ID and refresh tokens refused).
    Keycloak,
    /// RFC 9068: header typ at+jwt.
    Strict,
    /// No check.
    Off,
}

/// Exit 0: the gateway would accept the token; 1: it would not; 2: usage or configuration.
pub async fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let gw = match &args.config {
        Some(path) => {
            let cfg = tw_config::load(path)?;
            gateway_section(&cfg, path)?.clone()
        }
        None => gateway_from_flags(&args)?,
    };
    let token = read_token(&args.token)?;
    let clock = SystemClock;
    let verifier = Arc::new(Verifier::new(&gw.verifier_settings(), Arc::new(clock))?);
    verifier.start().await;
    for s in verifier.status().iter().filter(|s| !s.keys_loaded) {
        eprintln!(
            "warning: the signing keys of {} could not be loaded (is the issuer reachable?)",
            s.issuer
        );
    }
    let report = verifier.inspect(&token).await;
    if args.json {
        println!("{}", report_json(&report));
    } else {
        print!("{}", report_text(&report, clock.now()));
    }
    Ok(if report.is_valid() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn usage(m: impl Into<String>) -> Error {
    Error::bad_request("usage", m)
}

fn read_token(arg: &str) -> Result<String, Error> {
    let raw = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| usage(format!("cannot read the token from standard input: {e}")))?;
        s
    } else {
        arg.to_owned()
    };
    let t = raw.trim();
    let t = match t.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => t,
    };
    if t.is_empty() {
        return Err(usage("no token given"));
    }
    Ok(t.to_owned())
}

fn gateway_from_flags(args: &InspectArgs) -> Result<GatewayConfig, Error> {
    let issuer = args.issuer.clone().ok_or_else(|| {
        usage("give --config FILE (its [gateway] issuers) or --issuer URL (with optional --jwks-url, --audience, --azp, --alg, --leeway, --token-type)")
    })?;
    let mut iss = Map::new();
    iss.insert("issuer".into(), json!(issuer));
    if let Some(u) = &args.jwks_url {
        iss.insert("jwks_url".into(), json!(u.as_str()));
    }
    iss.insert("audiences".into(), json!(args.audiences));
    iss.insert("allowed_azp".into(), json!(args.azp));
    if !args.algs.is_empty() {
        iss.insert("algorithms".into(), json!(args.algs));
    }
    if let Some(l) = args.leeway {
        iss.insert("leeway".into(), json!(format!("{}ms", l.as_millis())));
    }
    if let Some(t) = args.token_type {
        let mode = match t {
            CliTokenType::Keycloak => "keycloak",
            CliTokenType::Strict => "strict",
            CliTokenType::Off => "off",
        };
        iss.insert("token_type".into(), json!(mode));
    }
    let gw: GatewayConfig = serde_json::from_value(json!({ "issuers": [iss] }))
        .map_err(|e| usage(format!("invalid flags: {e}")))?;
    tw_config::validate_gateway_config(&gw, "command-line flags").map_err(|e| {
        let msg = e
            .message()
            .replace("key `gateway.issuers[0].algorithms`", "--alg")
            .replace("key `gateway.issuers[0].jwks_url`", "--jwks-url")
            .replace("key `gateway.issuers[0].issuer`", "--issuer");
        usage(msg)
    })?;
    Ok(gw)
}

fn symbol(s: StepStatus) -> &'static str {
    match s {
        StepStatus::Pass => "✓",
        StepStatus::Fail => "✗",
        StepStatus::Skip => "-",
    }
}

/// Header and payload (pretty JSON; the signature is never shown), the times in words, one line
/// per check, the verdict.
pub fn report_text(r: &InspectReport, now: UnixTime) -> String {
    let mut out = String::new();
    let pretty = |v: &Map<String, Value>| {
        serde_json::to_string_pretty(v).unwrap_or_else(|_| "(unprintable)".into())
    };
    match (&r.header, &r.claims) {
        (Some(h), Some(c)) => {
            out.push_str(&format!("Header:\n{}\n", pretty(h)));
            out.push_str(&format!("Payload:\n{}\n", pretty(c)));
            out.push_str("Signature: (not shown)\n");
            for (claim, what) in [("iat", "issued"), ("nbf", "valid from"), ("exp", "expires")] {
                if let Some(t) = c.get(claim).and_then(Value::as_i64) {
                    out.push_str(&format!("{what:>10}: {}\n", when(t, now)));
                }
            }
        }
        (None, Some(c)) => out.push_str(&format!("Introspection answer:\n{}\n", pretty(c))),
        _ => out.push_str("(the token could not be decoded)\n"),
    }
    out.push('\n');
    match &r.issuer {
        Some(i) => out.push_str(&format!("Checks (issuer {i}):\n")),
        None => out.push_str("Checks:\n"),
    }
    let width = r
        .steps
        .iter()
        .map(|s| s.check.code().len())
        .max()
        .unwrap_or(0);
    for s in &r.steps {
        out.push_str(&format!(
            "  {} {:<width$}  {}\n",
            symbol(s.status),
            s.check.code(),
            s.reason
        ));
    }
    out.push('\n');
    match &r.verdict {
        Ok(t) => {
            out.push_str("Result: ACCEPTED\n");
            let na = "-".to_owned();
            out.push_str(&format!(
                "  subject {}, client {}, service account {}, scopes [{}]\n",
                t.subject.as_ref().unwrap_or(&na),
                t.client_id.as_ref().unwrap_or(&na),
                t.service_account,
                t.scopes.join(" ")
            ));
        }
        Err(e) => out.push_str(&format!(
            "Result: REJECTED by the {} check: {} ({})\n",
            e.check().code(),
            e.description(),
            e.error_code()
        )),
    }
    out
}

/// `2025-01-01T00:00:00Z (4m 12s from now)`.
fn when(secs: i64, now: UnixTime) -> String {
    let t = UnixTime::from_secs(secs);
    let date = u64::try_from(secs)
        .ok()
        .and_then(|s| std::time::UNIX_EPOCH.checked_add(Duration::from_secs(s)))
        .map(|st| humantime::format_rfc3339_seconds(st).to_string())
        .unwrap_or_else(|| secs.to_string());
    let rel = if t >= now {
        format!(
            "{} from now",
            humantime::format_duration(round(now.until(t)))
        )
    } else {
        format!("{} ago", humantime::format_duration(round(t.until(now))))
    };
    format!("{date} ({rel})")
}

fn round(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

/// The report as JSON: `valid`, `issuer`, `header`, `payload`, `checks` and `error` (or
/// `identity` when valid).
pub fn report_json(r: &InspectReport) -> Value {
    let checks: Vec<Value> = r
        .steps
        .iter()
        .map(|s| json!({"check": s.check.code(), "status": s.status.as_str(), "reason": s.reason}))
        .collect();
    let mut out = json!({
        "valid": r.is_valid(),
        "issuer": r.issuer,
        "header": r.header,
        "payload": r.claims,
        "checks": checks,
    });
    match &r.verdict {
        Ok(t) => {
            out["identity"] = json!({
                "subject": t.subject,
                "client_id": t.client_id,
                "service_account": t.service_account,
                "scopes": t.scopes,
                "audiences": t.audiences,
                "expires_at": t.expires_at.as_secs(),
            });
        }
        Err(e) => {
            out["error"] = json!({
                "error": e.error_code(),
                "check": e.check().code(),
                "description": e.description(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_arguments_drop_a_bearer_prefix() {
        assert_eq!(read_token(" Bearer abc.def \n").expect("token"), "abc.def");
        assert_eq!(read_token("abc").expect("token"), "abc");
        assert!(read_token("  ").is_err());
    }

    #[test]
    fn times_are_told_in_words() {
        let now = UnixTime::from_secs(1_000_000);
        assert_eq!(when(1_000_060, now), "1970-01-12T13:47:40Z (1m from now)");
        assert_eq!(when(999_000, now), "1970-01-12T13:30:00Z (16m 40s ago)");
    }
}
