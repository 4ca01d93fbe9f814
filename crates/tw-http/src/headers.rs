//! Names of headers tokenwarden sets or reads for itself.

use tw_core::Invalid;

/// A header name tokenwarden sets or reads for itself: a valid name that is none of the request's
/// framing, credential or forwarding fields; `example` is suggested instead.
pub fn check_custom_header(name: &str, example: &str) -> Result<(), Invalid> {
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_tchar) {
        return Err(format!("`{name}` is not a valid HTTP header name").into());
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("proxy-") {
        return Err(format!("`{name}` is a reserved header; choose a name like {example}").into());
    }
    Ok(())
}

/// Header names the gateway never lets an identity header take: the request's own framing,
/// credentials and forwarding fields.
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "connection",
    "content-length",
    "content-type",
    "cookie",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-uri",
    "x-forwarded-method",
    "x-original-uri",
    "x-original-method",
];
