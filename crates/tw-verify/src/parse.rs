//! Checks 1 to 3: size, shape and header, without any key. Pure functions, fuzzed
//! (`fuzz/fuzz_targets/parse_token.rs`) and property-tested.

use crate::error::{Check, VerifyError};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;
use tw_core::UnixTime;

/// Longest `kid` accepted, in bytes.
pub const MAX_KID_BYTES: usize = 256;

/// The asymmetric JWS algorithms this verifier knows. HS* and `none` are deliberately absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    pub const ALL: [Alg; 9] = [
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// Exact (case-sensitive) JOSE name.
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as A;
        match self {
            Alg::RS256 => A::RS256,
            Alg::RS384 => A::RS384,
            Alg::RS512 => A::RS512,
            Alg::PS256 => A::PS256,
            Alg::PS384 => A::PS384,
            Alg::PS512 => A::PS512,
            Alg::ES256 => A::ES256,
            Alg::ES384 => A::ES384,
            Alg::EdDSA => A::EdDSA,
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The registered claims, already type-checked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegisteredClaims {
    pub iss: Option<String>,
    pub sub: Option<String>,
    /// `aud` as a list (a single string becomes one element).
    pub aud: Vec<String>,
    pub exp: Option<UnixTime>,
    pub nbf: Option<UnixTime>,
    pub iat: Option<UnixTime>,
    pub azp: Option<String>,
    pub client_id: Option<String>,
    /// Payload `typ` (Keycloak: `Bearer`, `ID`, `Refresh`, `Logout`...).
    pub typ: Option<String>,
    pub scope: Option<String>,
    pub preferred_username: Option<String>,
}

/// A JWT decoded without any signature check: never trust its content.
#[derive(Clone)]
pub struct UnverifiedJwt {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    registered: RegisteredClaims,
    signing_input: String,
    signature_b64: String,
}

impl UnverifiedJwt {
    pub fn header(&self) -> &Map<String, Value> {
        &self.header
    }
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }
    pub fn registered(&self) -> &RegisteredClaims {
        &self.registered
    }
    /// The header's `alg` when it is a string.
    pub fn alg_name(&self) -> Option<&str> {
        self.header.get("alg").and_then(Value::as_str)
    }
    /// The header's `alg` when it is one this verifier supports.
    pub fn alg(&self) -> Option<Alg> {
        self.alg_name().and_then(Alg::from_name)
    }
    /// The header's `kid` when it is a string (opaque: never interpreted as a path or URL).
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }
    /// The header's `typ` when it is a string.
    pub fn header_typ(&self) -> Option<&str> {
        self.header.get("typ").and_then(Value::as_str)
    }
    /// `base64url(header) "." base64url(payload)`: what the signature covers.
    pub fn signing_input(&self) -> &str {
        &self.signing_input
    }
    pub(crate) fn signature_b64(&self) -> &str {
        &self.signature_b64
    }
}

impl fmt::Debug for UnverifiedJwt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Claim values may be personal data; the header is harmless.
        f.debug_struct("UnverifiedJwt")
            .field("header", &self.header)
            .field("claims", &format_args!("[{} claims]", self.claims.len()))
            .finish_non_exhaustive()
    }
}

/// Checks 1 (size), 2 (shape) and 3 (header) of a compact JWS, without any key.
///
/// Refuses anything that is not exactly three non-empty strict base64url segments (no padding,
/// no whitespace, canonical trailing bits) whose first two decode to JSON objects with no
/// duplicate key at any depth and correctly typed registered claims; then a header whose `alg`
/// is missing, `none`, HS* or unsupported, with any `crit`, or with a `kid` that is not a string
/// of at most [`MAX_KID_BYTES`] bytes. `jku`, `x5u`, `jwk`, `x5c` are ignored.
pub fn parse_unverified(token: &str, max_bytes: usize) -> Result<UnverifiedJwt, VerifyError> {
    let jwt = decode(token, max_bytes)?;
    check_header(&jwt)?;
    Ok(jwt)
}

/// Check 1.
pub(crate) fn check_size(token: &str, max_bytes: usize) -> Result<(), VerifyError> {
    if token.len() > max_bytes {
        return Err(VerifyError::new(
            Check::Size,
            format!("token is larger than {max_bytes} bytes"),
        ));
    }
    Ok(())
}

/// Whether the token looks like a compact JWS (has a dot) rather than an opaque token.
pub(crate) fn looks_like_jwt(token: &str) -> bool {
    token.contains('.')
}

/// RFC 6750 `b64token` characters, for opaque tokens: `ALPHA DIGIT - . _ ~ + /` then `=`*.
pub(crate) fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Checks 1 and 2.
pub(crate) fn decode(token: &str, max_bytes: usize) -> Result<UnverifiedJwt, VerifyError> {
    check_size(token, max_bytes)?;
    let fmt_err = |d: &str| VerifyError::new(Check::Format, d);
    if token.is_empty() {
        return Err(fmt_err("empty token"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(fmt_err("a JWT has exactly three dot-separated segments"));
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(fmt_err("a JWT segment is empty"));
    }
    let header = b64_json_object(h, "header")?;
    let claims = b64_json_object(p, "payload")?;
    let sig = b64(s, "signature")?;
    if sig.is_empty() {
        return Err(fmt_err("the signature is empty"));
    }
    let registered = registered_claims(&claims)?;
    Ok(UnverifiedJwt {
        header,
        claims,
        registered,
        signing_input: token[..h.len() + 1 + p.len()].to_owned(),
        signature_b64: s.to_owned(),
    })
}

/// Check 3.
pub(crate) fn check_header(jwt: &UnverifiedJwt) -> Result<Alg, VerifyError> {
    let h = &jwt.header;
    let alg = match h.get("alg") {
        None => return Err(VerifyError::new(Check::Header, "the header has no alg")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => {
            return Err(VerifyError::new(
                Check::Header,
                "the header alg is not a string",
            ));
        }
    };
    if alg.eq_ignore_ascii_case("none") {
        return Err(VerifyError::new(
            Check::Algorithm,
            "alg none is never accepted",
        ));
    }
    // By bytes: `alg` is the token's, and may hold any character at any index.
    if alg
        .as_bytes()
        .get(..2)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"HS"))
    {
        return Err(VerifyError::new(
            Check::Algorithm,
            "symmetric algorithms (HS*) are not accepted",
        ));
    }
    let Some(alg) = Alg::from_name(alg) else {
        return Err(VerifyError::new(Check::Algorithm, "unsupported alg"));
    };
    match h.get("crit") {
        None => {}
        Some(Value::Array(a)) if !a.is_empty() && a.iter().all(Value::is_string) => {
            return Err(VerifyError::new(
                Check::Header,
                "crit names an extension this verifier does not understand",
            ));
        }
        Some(_) => {
            return Err(VerifyError::new(
                Check::Header,
                "crit must be a non-empty array of strings",
            ));
        }
    }
    match h.get("kid") {
        None => {}
        Some(Value::String(k)) if k.len() <= MAX_KID_BYTES => {}
        Some(Value::String(_)) => {
            return Err(VerifyError::new(
                Check::Header,
                format!("kid is longer than {MAX_KID_BYTES} bytes"),
            ));
        }
        Some(_) => return Err(VerifyError::new(Check::Header, "kid is not a string")),
    }
    if h.get("typ").is_some_and(|t| !t.is_string()) {
        return Err(VerifyError::new(Check::Header, "typ is not a string"));
    }
    Ok(alg)
}

fn b64(segment: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    if !segment
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(VerifyError::new(
            Check::Format,
            format!("the {what} is not unpadded base64url (padding, +, / or whitespace)"),
        ));
    }
    URL_SAFE_NO_PAD.decode(segment).map_err(|_| {
        VerifyError::new(
            Check::Format,
            format!("the {what} is not canonical base64url"),
        )
    })
}

fn b64_json_object(segment: &str, what: &str) -> Result<Map<String, Value>, VerifyError> {
    let bytes = b64(segment, what)?;
    match strict_json(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(VerifyError::new(
            Check::Format,
            format!("the {what} is not a JSON object"),
        )),
        Err(StrictJsonError::Duplicate) => Err(VerifyError::new(
            Check::Format,
            format!("the {what} has a duplicate key"),
        )),
        Err(StrictJsonError::Syntax) => Err(VerifyError::new(
            Check::Format,
            format!("the {what} is not valid JSON"),
        )),
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum StrictJsonError {
    #[error("duplicate key")]
    Duplicate,
    #[error("invalid JSON")]
    Syntax,
}

const DUPLICATE_MARKER: &str = "tw-verify: duplicate key";

/// JSON with duplicate object keys (at any depth) refused; serde_json's own nesting limit (128)
/// applies.
pub(crate) fn strict_json(bytes: &[u8]) -> Result<Value, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = StrictSeed.deserialize(&mut de).map_err(classify)?;
    de.end().map_err(classify)?;
    Ok(v)
}

fn classify(e: serde_json::Error) -> StrictJsonError {
    if e.to_string().starts_with(DUPLICATE_MARKER) {
        StrictJsonError::Duplicate
    } else {
        StrictJsonError::Syntax
    }
}

struct StrictSeed;

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Number::from_f64(v)
            .map(Value::Number)
            .ok_or_else(|| E::custom("non-finite number"))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(StrictSeed)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            if out.contains_key(&k) {
                return Err(de::Error::custom(DUPLICATE_MARKER));
            }
            let v = map.next_value_seed(StrictSeed)?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

// `Deserialize` for completeness (lets callers use `serde_json::from_*::<StrictValue>`).
/// A JSON value whose objects never had duplicate keys.
#[derive(Debug, Clone, PartialEq)]
pub struct StrictValue(pub Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StrictSeed.deserialize(d).map(StrictValue)
    }
}

fn wrong_type(claim: &str, expected: &str) -> VerifyError {
    VerifyError::new(Check::Format, format!("claim {claim} must be {expected}"))
}

fn opt_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong_type(name, "a string")),
    }
}

fn opt_time(claims: &Map<String, Value>, name: &str) -> Result<Option<UnixTime>, VerifyError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(Some(numeric_date(n))),
        Some(_) => Err(wrong_type(name, "a number")),
    }
}

/// RFC 7519 NumericDate (seconds, possibly fractional) to [`UnixTime`], saturating.
pub(crate) fn numeric_date(n: &Number) -> UnixTime {
    if let Some(i) = n.as_i64() {
        UnixTime::from_secs(i)
    } else if let Some(u) = n.as_u64() {
        UnixTime::from_secs(i64::try_from(u).unwrap_or(i64::MAX))
    } else {
        // Float to int casts saturate (and JSON numbers are finite).
        UnixTime::from_millis((n.as_f64().unwrap_or(0.0) * 1000.0) as i64)
    }
}

/// Type checks of the registered (and mapped) claims; shared with introspection answers.
pub(crate) fn registered_claims(
    claims: &Map<String, Value>,
) -> Result<RegisteredClaims, VerifyError> {
    let aud = match claims.get("aud") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| wrong_type("aud", "a string or an array of strings"))?,
        Some(_) => return Err(wrong_type("aud", "a string or an array of strings")),
    };
    Ok(RegisteredClaims {
        iss: opt_string(claims, "iss")?,
        sub: opt_string(claims, "sub")?,
        aud,
        exp: opt_time(claims, "exp")?,
        nbf: opt_time(claims, "nbf")?,
        iat: opt_time(claims, "iat")?,
        azp: opt_string(claims, "azp")?,
        client_id: opt_string(claims, "client_id")?,
        typ: opt_string(claims, "typ")?,
        scope: opt_string(claims, "scope")?,
        preferred_username: opt_string(claims, "preferred_username")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn tok(h: &str, p: &str) -> String {
        format!("{}.{}.{}", enc(h), enc(p), enc("sig"))
    }

    fn code(r: Result<UnverifiedJwt, VerifyError>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err(e) => e.check().code(),
        }
    }

    #[test]
    fn accepts_a_plain_token() {
        let t = tok(
            r#"{"alg":"RS256","kid":"k"}"#,
            r#"{"iss":"i","exp":1.5,"aud":["a"]}"#,
        );
        let j = parse_unverified(&t, 1000).expect("ok");
        assert_eq!(j.alg(), Some(Alg::RS256));
        assert_eq!(j.kid(), Some("k"));
        assert_eq!(j.registered().exp, Some(UnixTime::from_millis(1500)));
        assert_eq!(j.registered().aud, vec!["a".to_owned()]);
    }

    #[test]
    fn duplicates_are_refused_at_any_depth() {
        for p in [
            r#"{"exp":1,"exp":9999999999}"#,
            r#"{"exp":9999999999,"exp":1}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"{"a":[{"b":1,"b":2}]}"#,
        ] {
            let e = parse_unverified(&tok(r#"{"alg":"RS256"}"#, p), 1000).expect_err(p);
            assert_eq!(e.check(), Check::Format);
            assert!(e.description().contains("duplicate"), "{}", e.description());
        }
        let e =
            parse_unverified(&tok(r#"{"alg":"RS256","alg":"none"}"#, "{}"), 1000).expect_err("dup");
        assert!(e.description().contains("header has a duplicate"));
    }

    #[test]
    fn header_rules() {
        let p = r#"{"iss":"i"}"#;
        assert_eq!(
            code(parse_unverified(&tok(r#"{"alg":"none"}"#, p), 1000)),
            "alg"
        );
        assert_eq!(
            code(parse_unverified(&tok(r#"{"alg":"nOnE"}"#, p), 1000)),
            "alg"
        );
        assert_eq!(
            code(parse_unverified(&tok(r#"{"alg":"HS256"}"#, p), 1000)),
            "alg"
        );
        assert_eq!(
            code(parse_unverified(&tok(r#"{"alg":"rs256"}"#, p), 1000)),
            "alg"
        );
        // Found by fuzzing: a multi-byte character across the `HS` prefix check's index.
        for alg in ["R\u{305}56", "\u{e9}S256", "H\u{e9}", "\u{e9}"] {
            let header = format!(r#"{{"alg":"{alg}"}}"#);
            assert_eq!(
                code(parse_unverified(&tok(&header, p), 1000)),
                "alg",
                "{alg}"
            );
        }
        assert_eq!(code(parse_unverified(&tok(r#"{}"#, p), 1000)), "header");
        assert_eq!(
            code(parse_unverified(&tok(r#"{"alg":1}"#, p), 1000)),
            "header"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256","crit":["b64"]}"#, p),
                1000
            )),
            "header"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256","crit":"b64"}"#, p),
                1000
            )),
            "header"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256","crit":[]}"#, p),
                1000
            )),
            "header"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256","kid":7}"#, p),
                1000
            )),
            "header"
        );
        let long = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, "k".repeat(257));
        assert_eq!(code(parse_unverified(&tok(&long, p), 10_000)), "header");
        let ok = format!(
            r#"{{"alg":"RS256","kid":"{}","jku":"http://x","jwk":{{}}}}"#,
            "k".repeat(256)
        );
        assert_eq!(code(parse_unverified(&tok(&ok, p), 10_000)), "ok");
    }

    #[test]
    fn shape_rules() {
        let good = tok(r#"{"alg":"RS256"}"#, "{}");
        assert_eq!(code(parse_unverified(&good, 1000)), "ok");
        assert_eq!(code(parse_unverified(&good, 10)), "size");
        assert_eq!(code(parse_unverified("", 10)), "format");
        assert_eq!(code(parse_unverified("a.b", 10)), "format");
        assert_eq!(code(parse_unverified("a.b.c.d", 10)), "format");
        assert_eq!(code(parse_unverified("..", 10)), "format");
        assert_eq!(code(parse_unverified(&format!("{good}="), 1000)), "format");
        assert_eq!(code(parse_unverified(&format!(" {good}"), 1000)), "format");
        assert_eq!(code(parse_unverified(&tok("[1]", "{}"), 1000)), "format");
        assert_eq!(
            code(parse_unverified(&tok(r#"{"alg":"RS256"}"#, "[]"), 1000)),
            "format"
        );
        assert_eq!(
            code(parse_unverified(&tok(r#"{"alg":"RS256"}"#, "{} x"), 1000)),
            "format"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256"}"#, r#"{"exp":"1"}"#),
                1000
            )),
            "format"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256"}"#, r#"{"aud":[1]}"#),
                1000
            )),
            "format"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256"}"#, r#"{"iss":1}"#),
                1000
            )),
            "format"
        );
        assert_eq!(
            code(parse_unverified(
                &tok(r#"{"alg":"RS256"}"#, r#"{"exp":1e400}"#),
                1000
            )),
            "format"
        );
        // Non-canonical trailing bits: "QR" decodes like "QQ" in lenient decoders.
        let bad_bits = format!("{}.{}.QR", enc(r#"{"alg":"RS256"}"#), enc("{}"));
        assert_eq!(code(parse_unverified(&bad_bits, 1000)), "format");
    }

    #[test]
    fn b64token_charset() {
        assert!(is_b64token("abc-._~+/=="));
        assert!(!is_b64token("a b"));
        assert!(!is_b64token("==="));
        assert!(!is_b64token(""));
    }
}
