//! Why a request is not let through, as an RFC 6750 answer. The refusals and their answers
//! (status, `WWW-Authenticate` challenge, JSON error body) are tw-http's, shared with the admin API
//! and the vault ([`tw_http::bearer`]); this module adds the gateway's metrics label.

use crate::Outcome;
use tw_http::bearer::INVALID_TOKEN;
pub use tw_http::bearer::{REALM, Refusal, challenge};

/// The `outcome` label of the gateway's metrics for a refusal.
pub fn outcome(refusal: &Refusal) -> Outcome {
    match refusal {
        Refusal::Request(e) if e.code() == tw_http::path::INVALID_PATH => Outcome::BadPath,
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
    // The answers themselves (statuses, challenges, `Retry-After`) are tested with
    // `tw_http::bearer`; here: the gateway's metrics label for each refusal.
    use super::*;
    use crate::Denied;
    use http::StatusCode;
    use std::time::Duration;
    use tw_core::{Error, ErrorKind};
    use tw_verify::VerifyError;

    #[test]
    fn outcomes_follow_the_refusal() {
        let path = Refusal::Request(Error::bad_request("invalid_path", "dot segments"));
        assert_eq!(outcome(&path), crate::Outcome::BadPath);
        let request = Refusal::Request(Error::bad_request("invalid_request", "two hosts"));
        assert_eq!(outcome(&request), crate::Outcome::InvalidRequest);
        assert_eq!(outcome(&Refusal::Missing), crate::Outcome::MissingToken);
        let bad = Refusal::Verify(VerifyError::invalid_request("two tokens").into());
        assert_eq!(outcome(&bad), crate::Outcome::InvalidRequest);
        let down = Refusal::Verify(Error::new(
            ErrorKind::IdpUnavailable,
            "temporarily_unavailable",
            "keys not loaded",
        ));
        assert_eq!(outcome(&down), crate::Outcome::Unavailable);
        let denied = Refusal::Denied(Denied::new("needs the admin role").with_scope("admin"));
        assert_eq!(outcome(&denied), crate::Outcome::Forbidden);
        let limited = Refusal::RateLimited(Duration::from_millis(1500));
        assert_eq!(outcome(&limited), crate::Outcome::RateLimited);
    }

    #[test]
    fn an_unrepresentable_claim_is_an_invalid_token() {
        let r = unrepresentable("subject");
        assert_eq!(outcome(&r), crate::Outcome::InvalidToken);
        assert_eq!(r.into_response(false).status(), StatusCode::UNAUTHORIZED);
    }
}
