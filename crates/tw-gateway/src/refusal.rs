//! Why a request is not let through, as an RFC 6750 answer. The refusals and their answers
//! (status, `WWW-Authenticate` challenge, JSON error body) are tw-http's, shared with the admin API
//! and the vault ([`tw_http::bearer`]); this module adds the gateway's metrics label.

use crate::Outcome;
use tw_http::bearer::INVALID_TOKEN;
pub use tw_http::bearer::{REALM, Refusal, challenge};

/// The `outcome` label of the gateway's metrics for a refusal.
pub fn outcome(refusal: &Refusal) -> Outcome {
    match refusal {
        Refusal::Request(e) if e.code() == "invalid_path" => Outcome::BadPath,
        Refusal::Request(_) => Outcome::InvalidRequest,
        Refusal::Missing => Outcome::MissingToken,
        Refusal::Verify(e) if e.is_retryable() => Outcome::Unavailable,
        Refusal::Verify(e) if e.code() == INVALID_TOKEN => Outcome::InvalidToken,
        Refusal::Verify(_) => Outcome::InvalidRequest,
        Refusal::Denied(_) => Outcome::Forbidden,
        Refusal::RateLimited(_) => Outcome::RateLimited,
        Refusal::DecisionUnavailable { .. } => Outcome::Unavailable,
    }
}

/// 401 `invalid_token`: verified, but a claim cannot be passed on as an identity header (a
/// control character).
pub fn unrepresentable(claim: &str) -> Refusal {
    Refusal::invalid_token(
        format!("the token's {claim} cannot be passed on in an HTTP header"),
        "identity",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Denied;
    use http::StatusCode;
    use http::header::{RETRY_AFTER, WWW_AUTHENTICATE};
    use std::time::Duration;
    use tw_verify::VerifyError;

    #[test]
    fn challenges_are_rfc_6750_shaped_and_escaped() {
        assert_eq!(challenge(None, None, None), "Bearer realm=\"tokenwarden\"");
        assert_eq!(
            challenge(Some("invalid_token"), Some("say \"hi\" \\ bye\r\n"), None),
            "Bearer realm=\"tokenwarden\", error=\"invalid_token\", error_description=\"say \\\"hi\\\" \\\\ bye\""
        );
        assert_eq!(
            challenge(Some("insufficient_scope"), None, Some("read write")),
            "Bearer realm=\"tokenwarden\", error=\"insufficient_scope\", scope=\"read write\""
        );
    }

    #[test]
    fn statuses_follow_the_refusal() {
        let r = Refusal::Missing.into_response(false);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"tokenwarden\""
        );

        let bad = Refusal::Verify(VerifyError::invalid_request("two tokens").into());
        assert_eq!(
            bad.clone().into_response(false).status(),
            StatusCode::BAD_REQUEST
        );
        let r = bad.into_response(true);
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(
            r.headers()[WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .contains("error=\"invalid_request\"")
        );

        let denied = Refusal::Denied(Denied::new("needs the admin role").with_scope("admin"));
        assert_eq!(outcome(&denied), crate::Outcome::Forbidden);
        let r = denied.into_response(true);
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(r.headers().get(RETRY_AFTER).is_none());

        let limited = Refusal::RateLimited(Duration::from_millis(1500));
        assert_eq!(outcome(&limited), crate::Outcome::RateLimited);
        let r = limited.into_response(true);
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()[RETRY_AFTER], "2");
    }

    #[test]
    fn an_unrepresentable_claim_is_an_invalid_token() {
        let r = unrepresentable("subject");
        assert_eq!(outcome(&r), crate::Outcome::InvalidToken);
        assert_eq!(r.into_response(false).status(), StatusCode::UNAUTHORIZED);
    }
}
