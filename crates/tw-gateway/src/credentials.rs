//! The bearer token in `Authorization` (RFC 6750 §2.1, RFC 9110 §11), parsed strictly.
//!
//! Only the header is read: tokens in query strings or form bodies (RFC 6750 §2.2-2.3) are never
//! looked at, so they can never be logged or cached by intermediaries on our account.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use tw_verify::VerifyError;

/// What the caller presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No `Authorization` header, or one with another scheme (`Basic`, ...): no bearer token.
    /// RFC 6750 §3.1: answered with a bare challenge, no error code.
    Missing,
    /// The token after `Bearer ` (syntactically a `b64token`; not verified yet).
    Bearer(&'a str),
}

/// Reads the bearer token. A malformed `Authorization` (several headers, not ASCII, `Bearer`
/// without a token, two tokens, characters a `b64token` cannot have) is an `invalid_request`
/// (400). The scheme is case-insensitive; spaces around and between the parts are tolerated.
pub fn bearer_token(headers: &HeaderMap) -> Result<Credentials<'_>, VerifyError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credentials::Missing);
    };
    if values.next().is_some() {
        return Err(VerifyError::invalid_request(
            "the request has several Authorization headers",
        ));
    }
    let Ok(text) = value.to_str() else {
        return Err(VerifyError::invalid_request(
            "the Authorization header is not visible ASCII",
        ));
    };
    let blank = [' ', '\t'];
    let text = text.trim_matches(blank);
    let (scheme, rest) = match text.find(blank) {
        Some(i) => (&text[..i], text[i..].trim_start_matches(blank)),
        None => (text, ""),
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(Credentials::Missing);
    }
    if rest.is_empty() {
        return Err(VerifyError::invalid_request(
            "the Authorization header says Bearer but holds no token",
        ));
    }
    if rest.contains(blank) {
        return Err(VerifyError::invalid_request(
            "the Authorization header holds more than one token, or a token with spaces",
        ));
    }
    if !is_b64token(rest) {
        return Err(VerifyError::invalid_request(
            "the bearer token has characters RFC 6750 does not allow (b64token)",
        ));
    }
    Ok(Credentials::Bearer(rest))
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    /// `Ok(None)`: no credentials; `Ok(Some(token))`; `Err(description)`.
    fn parse(values: &[&[u8]]) -> Result<Option<String>, String> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_bytes(v).expect("value"));
        }
        match bearer_token(&h) {
            Ok(Credentials::Missing) => Ok(None),
            Ok(Credentials::Bearer(t)) => Ok(Some(t.to_owned())),
            Err(e) => Err(e.description().to_owned()),
        }
    }

    fn token(t: &str) -> Result<Option<String>, String> {
        Ok(Some(t.to_owned()))
    }

    #[test]
    fn well_formed_bearer_tokens() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[b"Bearer abc.def-_~+/=="]), token("abc.def-_~+/=="));
        assert_eq!(parse(&[b"bearer   abc "]), token("abc"));
        assert_eq!(parse(&[b"BEARER\tabc"]), token("abc"));
    }

    #[test]
    fn other_schemes_are_no_credentials() {
        assert_eq!(parse(&[b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"]), Ok(None));
        assert_eq!(parse(&[b"DPoP abc"]), Ok(None));
        assert_eq!(parse(&[b"Bearerabc"]), Ok(None));
    }

    #[test]
    fn malformed_headers_are_invalid_requests() {
        for (value, why) in [
            (&b"Bearer"[..], "no token"),
            (b"Bearer   ", "no token"),
            (b"Bearer a b", "more than one token"),
            (b"Bearer a,b", "b64token"),
            (b"Bearer a=b", "b64token"),
            (b"Bearer ====", "b64token"),
            (b"Bearer \"abc\"", "b64token"),
            (b"Bearer abc\xff", "not visible ASCII"),
        ] {
            let err = parse(&[value]).expect_err(why);
            assert!(err.contains(why), "{value:?}: {err}");
        }
        let err = parse(&[b"Bearer a", b"Bearer b"]).expect_err("two headers");
        assert!(err.contains("several"), "{err}");
        let err = parse(&[b"Bearer a", b"Basic b"]).expect_err("two headers");
        assert!(err.contains("several"), "{err}");
    }
}
