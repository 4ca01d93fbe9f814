//! The canonical request path: computed once per request from the raw path, then used by exempt
//! paths, routes, rules, forward-auth and forwarding alike, so the gateway authorizes exactly the
//! path the upstream will serve.
//!
//! [`canonicalize`] (RFC 3986 §6.2.2 normalization, then §5.2.4 dot-segment removal):
//! - percent-escapes of unreserved characters are decoded (`%61` → `a`, `%2e` → `.`), every other
//!   escape is kept with upper-case hex;
//! - `.` and `..` segments are resolved (`/a/b/../c` → `/a/c`); a `..` above the root is refused;
//! - empty segments are merged (`/a//b` → `/a/b`); a trailing `/` is kept;
//! - what different servers resolve differently is refused unless [`PathPolicy`] allows it:
//!   encoded `/` (`%2F`), `\` and `%5C`, `;` path parameters (and `%3B`, which a decoding proxy
//!   in between turns into one), `%25` (double encoding);
//! - always refused: control characters (NUL, CR, LF, ... literal or encoded), bytes that do not
//!   decode to UTF-8 (overlong encodings included), malformed escapes, segments ending in `.` or a
//!   space (Windows servers drop those), Unicode look-alikes of `/`, `\` and `.`, and — when paths
//!   match case-insensitively — non-ASCII letters whose case mapping is ASCII (`K`, `ſ`, `ı`).
//!
//! The result has two spellings: [`CanonicalPath::decoded`] (what rules and routes match) and
//! [`CanonicalPath::encoded`] (what the upstream receives: no dot segments, no empty segments,
//! one escape per byte that needs one), so any upstream decodes it to the same segments.

use std::fmt;

/// The code of a request path refused as not canonical (400).
pub const INVALID_PATH: &str = "invalid_path";

/// Longest accepted path, in bytes (before decoding).
pub const MAX_PATH_BYTES: usize = 8 * 1024;

/// Which ambiguous spellings a gateway lets through (all refused by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PathPolicy {
    /// `%2F` inside a segment, kept encoded: for upstreams that treat it as data.
    pub allow_encoded_slash: bool,
    /// `\` and `%5C`, forwarded as `%5C`: for upstreams that never treat `\` as `/`.
    pub allow_backslash: bool,
    /// `;` as an ordinary character: for upstreams without path parameters.
    pub allow_semicolon: bool,
    /// `%25`, kept encoded: for upstreams that decode exactly once.
    pub allow_encoded_percent: bool,
    /// Paths match rules, exempt paths and routes regardless of case.
    pub case_insensitive: bool,
}

/// Why a path was refused: the `reason` of a 400 `invalid_path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRefusal {
    NotAbsolute,
    TooLong,
    MalformedEscape,
    EncodedSlash,
    Backslash,
    Semicolon,
    EncodedPercent,
    ControlCharacter,
    NotUtf8,
    AboveRoot,
    TrailingDotOrSpace,
    LookAlike,
    /// Forward-auth only: a `.` or `..` segment, which the front proxy forwards as sent and
    /// upstreams resolve differently (nginx does, Express does not).
    DotSegment,
}

impl PathRefusal {
    /// Stable machine-readable reason.
    pub fn code(self) -> &'static str {
        match self {
            Self::NotAbsolute => "not_absolute",
            Self::TooLong => "too_long",
            Self::MalformedEscape => "malformed_escape",
            Self::EncodedSlash => "encoded_slash",
            Self::Backslash => "backslash",
            Self::Semicolon => "semicolon",
            Self::EncodedPercent => "encoded_percent",
            Self::ControlCharacter => "control_character",
            Self::NotUtf8 => "not_utf8",
            Self::AboveRoot => "above_root",
            Self::TrailingDotOrSpace => "trailing_dot_or_space",
            Self::LookAlike => "look_alike",
            Self::DotSegment => "dot_segment",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::NotAbsolute => "the path does not start with `/`",
            Self::TooLong => "the path is too long",
            Self::MalformedEscape => "the path has a `%` not followed by two hex digits",
            Self::EncodedSlash => {
                "the path has an encoded `/` (%2F), which upstreams resolve differently"
            }
            Self::Backslash => "the path has a `\\` (or %5C), which some servers treat as `/`",
            Self::Semicolon => "the path has a `;`, which some servers strip as a path parameter",
            Self::EncodedPercent => "the path has an encoded `%` (%25): double encoding is refused",
            Self::ControlCharacter => "the path has a control character",
            Self::NotUtf8 => "the path does not decode to UTF-8",
            Self::AboveRoot => "the path's `..` segments climb above the root",
            Self::TrailingDotOrSpace => {
                "a path segment ends in `.` or a space, which some servers drop"
            }
            Self::LookAlike => {
                "the path has a Unicode look-alike of `/`, `\\`, `.` or of an ASCII letter"
            }
            Self::DotSegment => {
                "the path has a `.` or `..` segment, which the upstream may resolve differently"
            }
        }
    }

    /// The client's error: 400 `invalid_path`, with this reason as the `reason` field.
    pub fn into_error(self) -> tw_core::Error {
        tw_core::Error::bad_request(INVALID_PATH, self.describe()).with("reason", self.code())
    }
}

impl fmt::Display for PathRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// A request path in canonical form (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalPath {
    decoded: String,
    encoded: String,
    matching: Option<String>,
    had_dot_segments: bool,
}

impl CanonicalPath {
    /// Decoded, dot segments resolved, slashes merged; kept escapes (`%2F`, `%5C`, `%25`, when
    /// allowed) stay escaped, so `%` appears only in those. For logs, audit and decisions.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// What the upstream receives.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }

    /// What rules, routes and exempt paths compare: [`Self::decoded`], in lower case when the
    /// policy is case-insensitive.
    pub fn matching(&self) -> &str {
        self.matching.as_deref().unwrap_or(&self.decoded)
    }

    /// The raw path had `.` or `..` segments (resolved here). Where the upstream receives the
    /// raw path rather than this one (forward-auth), that is ambiguous.
    pub fn had_dot_segments(&self) -> bool {
        self.had_dot_segments
    }
}

/// The canonical form of `raw` (a request path without query) under `policy`.
pub fn canonicalize(raw: &str, policy: PathPolicy) -> Result<CanonicalPath, PathRefusal> {
    let rest = raw.strip_prefix('/').ok_or(PathRefusal::NotAbsolute)?;
    if raw.len() > MAX_PATH_BYTES {
        return Err(PathRefusal::TooLong);
    }
    let mut kept: Vec<(String, String)> = Vec::new();
    let mut trailing_slash = false;
    let mut had_dot_segments = false;
    let mut parts = rest.split('/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let (decoded, encoded) = decode_segment(part, policy)?;
        match decoded.as_str() {
            "" => trailing_slash = last,
            "." => {
                had_dot_segments = true;
                trailing_slash = last;
            }
            ".." => {
                had_dot_segments = true;
                kept.pop().ok_or(PathRefusal::AboveRoot)?;
                trailing_slash = last;
            }
            _ => {
                if decoded.ends_with(['.', ' ']) {
                    return Err(PathRefusal::TrailingDotOrSpace);
                }
                kept.push((decoded, encoded));
                trailing_slash = false;
            }
        }
    }
    let join = |pick: fn(&(String, String)) -> &str| {
        let mut out = String::with_capacity(raw.len() + 1);
        for seg in &kept {
            out.push('/');
            out.push_str(pick(seg));
        }
        if trailing_slash || kept.is_empty() {
            out.push('/');
        }
        out
    };
    let decoded = join(|s| &s.0);
    let encoded = join(|s| &s.1);
    // What is forwarded obeys the same limit as what was received (escaping can triple it).
    if encoded.len() > MAX_PATH_BYTES {
        return Err(PathRefusal::TooLong);
    }
    let matching = policy
        .case_insensitive
        .then(|| tw_core::text::fold_case(&decoded));
    Ok(CanonicalPath {
        decoded,
        encoded,
        matching,
        had_dot_segments,
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Characters a path segment may hold literally (RFC 3986 `pchar` minus escapes).
fn is_literal_pchar(b: u8) -> bool {
    is_unreserved(b) || b"!$&'()*+,;=:@".contains(&b)
}

fn push_escape(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 0xf)] as char);
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// One segment: (decoded, encoded).
fn decode_segment(raw: &str, policy: PathPolicy) -> Result<(String, String), PathRefusal> {
    let bytes = raw.as_bytes();
    let mut decoded: Vec<u8> = Vec::with_capacity(bytes.len());
    let mut encoded = String::with_capacity(bytes.len());
    let keep_escaped = |decoded: &mut Vec<u8>, encoded: &mut String, b: u8| {
        let mut esc = String::with_capacity(3);
        push_escape(&mut esc, b);
        decoded.extend_from_slice(esc.as_bytes());
        encoded.push_str(&esc);
    };
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escaped = b == b'%';
        let value = if escaped {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            i += 3;
            match (hi, lo) {
                (Some(h), Some(l)) => (h << 4) | l,
                _ => return Err(PathRefusal::MalformedEscape),
            }
        } else {
            i += 1;
            b
        };
        match value {
            0x00..=0x1f | 0x7f => return Err(PathRefusal::ControlCharacter),
            b'\\' if !policy.allow_backslash => return Err(PathRefusal::Backslash),
            b'\\' => keep_escaped(&mut decoded, &mut encoded, value),
            b'/' if !policy.allow_encoded_slash => return Err(PathRefusal::EncodedSlash),
            b'/' => keep_escaped(&mut decoded, &mut encoded, value),
            b'%' if !policy.allow_encoded_percent => return Err(PathRefusal::EncodedPercent),
            b'%' => keep_escaped(&mut decoded, &mut encoded, value),
            // `%3B` too: a proxy in between that decodes once (nginx with a URI in `proxy_pass`)
            // hands Tomcat a literal `;`.
            b';' if !policy.allow_semicolon => return Err(PathRefusal::Semicolon),
            v if escaped && !is_unreserved(v) => {
                decoded.push(v);
                push_escape(&mut encoded, v);
            }
            v if is_literal_pchar(v) => {
                decoded.push(v);
                encoded.push(v as char);
            }
            v => {
                decoded.push(v);
                push_escape(&mut encoded, v);
            }
        }
    }
    let decoded = String::from_utf8(decoded).map_err(|_| PathRefusal::NotUtf8)?;
    // C1 controls (U+0080..U+009F, e.g. U+009B, a terminal's CSI) are controls as much as the
    // ASCII ones refused above; no path needs them.
    if decoded.chars().any(char::is_control) {
        return Err(PathRefusal::ControlCharacter);
    }
    if decoded
        .chars()
        .any(|c| !c.is_ascii() && look_alike(c, policy.case_insensitive))
    {
        return Err(PathRefusal::LookAlike);
    }
    Ok((decoded, encoded))
}

/// Non-ASCII characters some servers or frameworks fold into `/`, `\`, `.` (NFKC, "best fit"
/// code pages), or, when matching ignores case, whose case mapping is ASCII.
fn look_alike(c: char, case_insensitive: bool) -> bool {
    const SEPARATORS: &[char] = &[
        '\u{2215}', // DIVISION SLASH
        '\u{2044}', // FRACTION SLASH
        '\u{29F8}', // BIG SOLIDUS
        '\u{FF0F}', // FULLWIDTH SOLIDUS
        '\u{FE68}', // SMALL REVERSE SOLIDUS
        '\u{FF3C}', // FULLWIDTH REVERSE SOLIDUS
        '\u{29F5}', // REVERSE SOLIDUS OPERATOR
        '\u{2216}', // SET MINUS
        '\u{FF0E}', // FULLWIDTH FULL STOP
        '\u{2024}', // ONE DOT LEADER
        '\u{FE52}', // SMALL FULL STOP
        '\u{2025}', // TWO DOT LEADER (NFKC: `..`)
        '\u{2026}', // HORIZONTAL ELLIPSIS (NFKC: `...`)
        '\u{FE30}', // PRESENTATION FORM FOR VERTICAL TWO DOT LEADER
        '\u{FE19}', // PRESENTATION FORM FOR VERTICAL HORIZONTAL ELLIPSIS
        '\u{00A0}', // NO-BREAK SPACE
        '\u{2000}', '\u{2001}', '\u{2002}', '\u{2003}', '\u{2004}', '\u{2005}', '\u{2006}',
        '\u{2007}', '\u{2008}', '\u{2009}', '\u{200A}', '\u{200B}', '\u{205F}',
        '\u{3000}', // spaces
        '\u{FEFF}', // ZERO WIDTH NO-BREAK SPACE
        '\u{1680}', '\u{202F}', // more spaces (Zs)
        '\u{2028}', '\u{2029}', // LINE / PARAGRAPH SEPARATOR: line breaks to many parsers
        '\u{00A5}', // YEN SIGN: `\` in Windows code page 932 ("best fit")
        '\u{20A9}', // WON SIGN: `\` in code page 949
    ];
    /// Whole blocks that fold to ASCII or vanish under NFKC and in "best fit" conversions.
    const RANGES: &[(char, char)] = &[
        ('\u{FF01}', '\u{FF5E}'), // fullwidth ASCII: `／ａｄｍｉｎ`, `％`, `；`, `？`, `＃`
        ('\u{FE50}', '\u{FE6B}'), // small form variants: `﹪`, `﹔`, `﹖`, `﹟`
        ('\u{00AD}', '\u{00AD}'), // SOFT HYPHEN (invisible, stripped by some)
        ('\u{061C}', '\u{061C}'), // format characters (Cf) ...
        ('\u{180E}', '\u{180E}'),
        ('\u{200B}', '\u{200F}'),
        ('\u{202A}', '\u{202E}'),
        ('\u{2060}', '\u{206F}'),
        ('\u{FFF9}', '\u{FFFB}'),
        ('\u{E0000}', '\u{E007F}'), // tags
    ];
    SEPARATORS.contains(&c)
        || RANGES.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
        || (case_insensitive
            && (c.to_lowercase().any(|l| l.is_ascii()) || c.to_uppercase().any(|u| u.is_ascii())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_forwarded_form_obeys_the_length_limit_too() {
        let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
        assert_eq!(canon(&long), Err(PathRefusal::TooLong));
        // Short enough as received, three times longer once `"` is escaped.
        let quotes = format!("/{}", "\"".repeat(MAX_PATH_BYTES / 3 + 1));
        assert!(quotes.len() <= MAX_PATH_BYTES);
        assert_eq!(canon(&quotes), Err(PathRefusal::TooLong));
        let fits = format!("/{}", "\"".repeat(MAX_PATH_BYTES / 3 - 1));
        let (_, encoded) = canon(&fits).expect("fits");
        assert!(encoded.len() <= MAX_PATH_BYTES);
        assert_eq!(canon(&encoded).expect("a fixed point").1, encoded);
    }

    fn canon(raw: &str) -> Result<(String, String), PathRefusal> {
        canonicalize(raw, PathPolicy::default()).map(|c| (c.decoded, c.encoded))
    }

    fn decoded(raw: &str) -> String {
        canon(raw).unwrap_or_else(|e| panic!("{raw}: {e}")).0
    }

    #[test]
    fn dot_segments_slashes_and_unreserved_escapes() {
        for (raw, want) in [
            ("/", "/"),
            ("/api/public/../admin/users", "/api/admin/users"),
            ("/api/public/%2e%2e/admin/users", "/api/admin/users"),
            ("/api/public/.%2E/admin", "/api/admin"),
            ("/api/./admin", "/api/admin"),
            ("/api/%2e/admin", "/api/admin"),
            ("/api//admin", "/api/admin"),
            ("//api///admin//", "/api/admin/"),
            ("/api/%61dmin", "/api/admin"),
            ("/api/events/", "/api/events/"),
            ("/api/events/.", "/api/events/"),
            ("/api/events/..", "/api/"),
            ("/a/b/..", "/a/"),
        ] {
            assert_eq!(decoded(raw), want, "{raw}");
        }
    }

    #[test]
    fn kept_escapes_are_upper_case_and_forwarded_once() {
        let (d, e) = canon("/a%20b/c%3fd/%c3%a9/x%2Cq").expect("ok");
        assert_eq!(d, "/a b/c?d/é/x,q");
        assert_eq!(e, "/a%20b/c%3Fd/%C3%A9/x%2Cq");
        let (_, e) = canon("/a\"b/{x}|").expect("ok");
        assert_eq!(e, "/a%22b/%7Bx%7D%7C");
        let (d, e) = canon("/v1/it:em@x,y=1").expect("ok");
        assert_eq!(d, e);
    }

    #[test]
    fn ambiguous_spellings_are_refused_by_default() {
        for (raw, why) in [
            ("api", PathRefusal::NotAbsolute),
            ("*", PathRefusal::NotAbsolute),
            ("/a/..%2fadmin", PathRefusal::EncodedSlash),
            ("/a/..%2Fadmin", PathRefusal::EncodedSlash),
            ("/a/..\\admin", PathRefusal::Backslash),
            ("/a/..%5cadmin", PathRefusal::Backslash),
            ("/a/..;/admin", PathRefusal::Semicolon),
            ("/a/admin;jsessionid=1/x", PathRefusal::Semicolon),
            ("/a/..%3b/admin", PathRefusal::Semicolon),
            ("/docs/x%252f..", PathRefusal::EncodedPercent),
            ("/a%00", PathRefusal::ControlCharacter),
            ("/a%0d%0aX-Evil:1", PathRefusal::ControlCharacter),
            ("/a%7f", PathRefusal::ControlCharacter),
            ("/a%c2%9b2J", PathRefusal::ControlCharacter),
            ("/a\u{85}b", PathRefusal::ControlCharacter),
            ("/a%c0%ae%c0%ae/x", PathRefusal::NotUtf8),
            ("/a%ff", PathRefusal::NotUtf8),
            ("/a%", PathRefusal::MalformedEscape),
            ("/a%2", PathRefusal::MalformedEscape),
            ("/a%zz", PathRefusal::MalformedEscape),
            ("/a%u002f", PathRefusal::MalformedEscape),
            ("/..", PathRefusal::AboveRoot),
            ("/a/../../b", PathRefusal::AboveRoot),
            ("/admin./x", PathRefusal::TrailingDotOrSpace),
            ("/..%2e", PathRefusal::TrailingDotOrSpace),
            ("/admin%20/x", PathRefusal::TrailingDotOrSpace),
            ("/api%ef%bc%8fadmin", PathRefusal::LookAlike),
            ("/api/%ef%bc%8e%ef%bc%8e/x", PathRefusal::LookAlike),
            ("/api/admin/users/%E2%80%A5/x", PathRefusal::LookAlike),
            ("/api/%E3%80%80/x", PathRefusal::LookAlike),
            ("/files/..%C2%A5..%C2%A5admin", PathRefusal::LookAlike),
            ("/files/..%E2%82%A9admin", PathRefusal::LookAlike),
            ("/%EF%BD%81dmin", PathRefusal::LookAlike),
            ("/a%E2%80%A8b", PathRefusal::LookAlike),
            ("/ad%C2%ADmin", PathRefusal::LookAlike),
            ("/a%EF%B9%94b", PathRefusal::LookAlike),
            ("/a%E2%80%AFb", PathRefusal::LookAlike),
            ("/a%F3%A0%80%81b", PathRefusal::LookAlike),
        ] {
            assert_eq!(canon(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn settings_keep_what_they_allow_and_nothing_more() {
        let policy = PathPolicy {
            allow_encoded_slash: true,
            allow_backslash: true,
            allow_semicolon: true,
            allow_encoded_percent: true,
            case_insensitive: false,
        };
        let c = canonicalize("/a/x%2fy/b\\c/d;p=1/%2541", policy).expect("ok");
        assert_eq!(c.decoded(), "/a/x%2Fy/b%5Cc/d;p=1/%2541");
        assert_eq!(c.encoded(), "/a/x%2Fy/b%5Cc/d;p=1/%2541");
        assert_eq!(
            canonicalize("/a%00", policy),
            Err(PathRefusal::ControlCharacter)
        );
    }

    #[test]
    fn case_insensitive_matching_and_letter_look_alikes() {
        let policy = PathPolicy {
            case_insensitive: true,
            ..PathPolicy::default()
        };
        let c = canonicalize("/API/Admin/%C3%89", policy).expect("ok");
        assert_eq!(c.decoded(), "/API/Admin/É");
        assert_eq!(c.matching(), "/api/admin/é");
        // Folded per character, upper then lower, as case-insensitive servers compare.
        let sigma = |raw: &str| canonicalize(raw, policy).expect("ok").matching().to_owned();
        assert_eq!(sigma("/api/%CF%82"), sigma("/api/%CF%83"));
        assert_eq!(sigma("/api/%CE%A3"), sigma("/api/%CF%83"));
        assert_eq!(sigma("/api/%C2%B5"), sigma("/api/%CE%BC"));
        assert_eq!(c.encoded(), "/API/Admin/%C3%89");
        // KELVIN SIGN, LATIN SMALL LETTER LONG S, DOTLESS I.
        for raw in ["/api/%E2%84%AAey", "/api/%C5%BFecret", "/%C4%B1d"] {
            assert_eq!(
                canonicalize(raw, policy),
                Err(PathRefusal::LookAlike),
                "{raw}"
            );
        }
        assert!(canonicalize("/api/%E2%84%AAey", PathPolicy::default()).is_ok());
    }

    #[test]
    fn refusals_are_400_invalid_path_with_a_reason() {
        let e = PathRefusal::EncodedSlash.into_error();
        assert_eq!(e.http_status(), 400);
        assert_eq!(e.code(), "invalid_path");
    }
}
