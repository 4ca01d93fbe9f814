//! Turning network errors and IdP answers into a stable cause with an explanation and a fix.

use crate::report::Step;
use tw_broker::idp;
use tw_broker::source::CustomLoginFailure;
use tw_config::AuthMethod;
use tw_core::{Error, ErrorKind};

/// A classified network failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    ConnectionRefused,
    Dns,
    Tls,
    Timeout,
    Reset,
    Other,
}

impl Transport {
    /// The failures [`Transport::explain`] has more to say about than "check it is reachable".
    pub(crate) const EXPLAINED: [Transport; 5] = [
        Transport::ConnectionRefused,
        Transport::Dns,
        Transport::Tls,
        Transport::Timeout,
        Transport::Reset,
    ];

    pub fn cause(self) -> &'static str {
        match self {
            Transport::ConnectionRefused => "connection_refused",
            Transport::Dns => "dns",
            Transport::Tls => "tls",
            Transport::Timeout => "timeout",
            Transport::Reset => "connection_reset",
            Transport::Other => "unreachable",
        }
    }

    /// Adds what this failure means for `host` and how to fix it.
    pub fn explain(self, step: Step, host: &str) -> Step {
        match self {
            Transport::ConnectionRefused => step
                .detail(format!("nothing accepts connections at {host}: the server is down, not started yet, or listening on another port"))
                .fix(format!("check that the service runs and listens on {host} (docker compose ps / systemctl status); check the port in the URL"))
                .fix("in a container, `localhost` is the container itself: use the service name (e.g. http://keycloak:8080)"),
            Transport::Dns => step
                .detail(format!("the host name of {host} does not resolve"))
                .fix("check the spelling of the host name; inside containers use the compose service name; check /etc/resolv.conf or the DNS server"),
            Transport::Tls => step
                .detail(format!("the TLS handshake with {host} failed: https:// to a plain-HTTP port, an untrusted or expired certificate, or a name that is not in the certificate"))
                .fix("use http:// if the server speaks plain HTTP (Keycloak's 8080), https:// only on its TLS port (8443)")
                .fix("for a private CA, add it to the system trust store (update-ca-certificates)"),
            Transport::Timeout => step
                .detail(format!("{host} accepted no answer within the request timeout"))
                .fix("check firewalls and proxies between here and the server, and whether it is overloaded; raise `timing.request_timeout` if it is merely slow"),
            Transport::Reset => step
                .detail(format!("{host} closed the connection without an answer"))
                .fix("check the server's logs; a proxy or load balancer in between may be refusing the connection"),
            Transport::Other => step
                .fix(format!("check that {host} is reachable from this machine (curl -v)")),
        }
    }
}

/// The innermost cause of a network error, for a detail line (reqwest errors never carry a
/// request body or header).
pub fn root_cause(e: &reqwest::Error) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string().chars().take(200).collect()
}

/// Classifies a reqwest error by walking its sources (hyper, std::io, rustls).
pub fn transport_of(e: &reqwest::Error) -> Transport {
    if e.is_timeout() {
        return Transport::Timeout;
    }
    let mut text = String::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Transport::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return Transport::Timeout,
                _ => {}
            }
        }
        text.push_str(&err.to_string());
        text.push('\n');
        cur = err.source();
    }
    transport_of_text(&text)
}

/// Classifies a failure by its message (for errors that reached us as text, e.g. the broker's).
pub fn transport_of_text(text: &str) -> Transport {
    let t = text.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| t.contains(w));
    if has(&["connection refused"]) {
        Transport::ConnectionRefused
    } else if has(&[
        "dns error",
        "failed to lookup address",
        "name or service not known",
        "no such host",
        "nodename nor servname",
        "name resolution",
    ]) {
        Transport::Dns
    } else if has(&[
        "certificate",
        "tls",
        "ssl",
        "handshake",
        "corrupt message",
        "invalidcontenttype",
        "unknownissuer",
        "peer misbehaved",
    ]) {
        Transport::Tls
    } else if has(&["timed out", "timeout"]) {
        Transport::Timeout
    } else if has(&[
        "connection reset",
        "connection closed",
        "broken pipe",
        "incomplete message",
    ]) {
        Transport::Reset
    } else {
        Transport::Other
    }
}

/// `scheme://host:port` of a URL, for messages.
pub fn host_of(url: &url::Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{}://{h}:{p}", url.scheme()),
        (Some(h), None) => format!("{}://{h}", url.scheme()),
        _ => url.to_string(),
    }
}

/// What the IdP said (`error: error_description`), from the context the broker attaches; the
/// whole message when the refusal came without an OAuth error body.
pub fn oauth_description(e: &Error) -> String {
    match (
        e.context_value(idp::OAUTH_ERROR),
        e.context_value(idp::OAUTH_ERROR_DESCRIPTION),
    ) {
        (Some(error), Some(description)) => format!("{error}: {description}"),
        (Some(error), None) => error.to_owned(),
        (None, _) => e.message().to_owned(),
    }
}

/// What the answer to a client's token request tells about its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials {
    /// The IdP said which (its description names it).
    WrongSecret,
    Disabled,
    ServiceAccountDisabled,
    InvalidAssertion,
    /// `invalid_client` with nothing more: unknown client, wrong secret, or (Keycloak) disabled.
    Ambiguous,
}

/// Classifies a permanent client-authentication refusal from its code and description.
/// `None` when the refusal is about something else (scope, grant...).
pub fn credentials_of(e: &Error, method: AuthMethod) -> Option<Credentials> {
    let d = e
        .context_value(idp::OAUTH_ERROR_DESCRIPTION)
        .unwrap_or_default()
        .to_ascii_lowercase();
    let service_account = d.contains("service account")
        || d.contains("grant type is not allowed")
        || d.contains("not allowed to use this grant");
    match e.code() {
        "idp_unauthorized_client" | "idp_invalid_request" if service_account => {
            Some(Credentials::ServiceAccountDisabled)
        }
        "idp_invalid_client" | "idp_unauthorized_client" => Some(if d.contains("disabled") {
            Credentials::Disabled
        } else if method == AuthMethod::PrivateKeyJwt {
            Credentials::InvalidAssertion
        } else if d.contains("invalid client secret") {
            Credentials::WrongSecret
        } else if e.code() == "idp_unauthorized_client" && !d.contains("credentials") {
            // Keycloak's unauthorized_client without a credentials message: the client may
            // not use this grant.
            Credentials::ServiceAccountDisabled
        } else {
            Credentials::Ambiguous
        }),
        _ => None,
    }
}

/// The cause of a failed token fetch that is not about the client's credentials.
pub fn token_failure_cause(e: &Error) -> &'static str {
    // A custom login's failures keep the API's own code.
    if let Some(failure) = CustomLoginFailure::of(e) {
        return failure.code();
    }
    match (e.kind(), e.code()) {
        (_, "secret_unavailable") => "secret_unavailable",
        (ErrorKind::Config, _) => "config_invalid",
        (_, "idp_invalid_scope") => "invalid_scope",
        (_, "idp_invalid_grant") => "invalid_grant",
        (_, "idp_unsupported_grant_type") => "unsupported_grant_type",
        (_, "idp_redirect") => "token_endpoint_redirect",
        (_, "idp_invalid_request") => "invalid_request",
        (_, "idp_malformed_response") => "token_response_invalid",
        (_, "idp_discovery_failed") => "discovery_http_status",
        (_, "idp_discovery_malformed") => "discovery_invalid",
        (_, "idp_issuer_mismatch") => "issuer_mismatch",
        (_, "idp_timeout") => "timeout",
        (_, "idp_unreachable") => transport_of_text(e.message()).cause(),
        (_, "idp_unavailable") if e.message().contains("HTTP 429") => "rate_limited",
        (_, "idp_unavailable") => "idp_5xx",
        _ => "token_request_failed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_of_real_failures_are_classified() {
        for (text, want) in [
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                Transport::ConnectionRefused,
            ),
            (
                "client error (Connect): dns error: failed to lookup address information: Name or service not known",
                Transport::Dns,
            ),
            (
                "client error (Connect): received corrupt message of type InvalidContentType",
                Transport::Tls,
            ),
            ("invalid peer certificate: UnknownIssuer", Transport::Tls),
            ("operation timed out", Transport::Timeout),
            (
                "connection closed before message completed",
                Transport::Reset,
            ),
            ("something else", Transport::Other),
        ] {
            assert_eq!(transport_of_text(text), want, "{text}");
        }
    }

    #[test]
    fn keycloak_answers_are_told_apart() {
        let err = |code, desc: &str| {
            Error::new(ErrorKind::IdpRejected, code, "hint (HTTP 401, …)")
                .with(idp::OAUTH_ERROR, "invalid_client")
                .with(idp::OAUTH_ERROR_DESCRIPTION, desc)
        };
        let basic = AuthMethod::ClientSecretBasic;
        for (code, description, method, want) in [
            (
                "idp_invalid_client",
                "Invalid client or Invalid client credentials",
                basic,
                Some(Credentials::Ambiguous),
            ),
            (
                "idp_unauthorized_client",
                "Invalid client secret",
                basic,
                Some(Credentials::WrongSecret),
            ),
            (
                "idp_unauthorized_client",
                "Client not enabled to retrieve service account",
                basic,
                Some(Credentials::ServiceAccountDisabled),
            ),
            (
                "idp_invalid_client",
                "Invalid client credentials",
                AuthMethod::PrivateKeyJwt,
                Some(Credentials::InvalidAssertion),
            ),
            (
                "idp_invalid_client",
                "Client disabled",
                basic,
                Some(Credentials::Disabled),
            ),
            ("idp_invalid_scope", "Invalid scopes: x", basic, None),
        ] {
            assert_eq!(
                credentials_of(&err(code, description), method),
                want,
                "{description}"
            );
        }
    }

    #[test]
    fn the_description_comes_from_the_brokers_context() {
        let e = tw_broker::idp::classify_token_response(
            401,
            br#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
            None,
        )
        .unwrap_err();
        assert_eq!(
            oauth_description(&e),
            "invalid_client: client authentication failed"
        );
        // A message that merely looks like the broker's is not read for the IdP's words.
        let look_alike = Error::new(
            ErrorKind::IdpRejected,
            "idp_invalid_client",
            "hint (HTTP 401, invalid_client: Client disabled)",
        );
        assert_eq!(
            credentials_of(&look_alike, AuthMethod::ClientSecretBasic),
            Some(Credentials::Ambiguous)
        );
    }
}
