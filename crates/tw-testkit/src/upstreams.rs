//! Models of how common upstream servers turn the raw request path they receive into the path
//! they route, for hostile-path tests: a gateway must never let through a spelling that one of
//! them routes somewhere its rules would refuse. Each model answers `None` when that server
//! refuses the path itself (400 or similar). Only the routing-relevant steps are modelled, from
//! each server's documented behaviour:
//!
//! | server | decodes | dot segments | merges `//` | other |
//! |---|---|---|---|---|
//! | ASP.NET Core (Kestrel) | all but `%2F` | resolved | no | case-insensitive routing |
//! | IIS | all | resolved | no | `\` is `/`; trailing `.`/space dropped; case-insensitive |
//! | Tomcat / Spring | after stripping `;params` | resolved (above root refused) | yes | `%2F`, `%5C` refused |
//! | Express | no (routes the raw path) | no | no | case-insensitive routing |
//! | Go `net/http` | all | resolved (`path.Clean`) | yes | redirects to the clean path |

/// One upstream model: its name and its routing function.
pub type UpstreamModel = (&'static str, fn(&str) -> Option<String>);

/// Every modelled server.
pub const UPSTREAM_MODELS: &[UpstreamModel] = &[
    ("aspnetcore", aspnetcore),
    ("iis", iis),
    ("tomcat", tomcat),
    ("express", express),
    ("go", go_net_http),
];

/// Percent-decodes every valid escape (bytes that are not UTF-8 become U+FFFD); `keep` lists
/// decoded bytes that stay escaped.
pub fn percent_decode(raw: &str, keep: &[u8]) -> String {
    let b = raw.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let (Some(h), Some(l)) = (
                b.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                b.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
            )
        {
            let v = (h * 16 + l) as u8;
            if keep.contains(&v) {
                out.extend_from_slice(&b[i..i + 3]);
            } else {
                out.push(v);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// RFC 3986 §5.2.4 dot-segment removal; `merge` also drops empty segments. `None` when `..`
/// climbs above the root and `refuse_above_root`.
pub fn resolve_dots(path: &str, merge: bool, refuse_above_root: bool) -> Option<String> {
    let rest = path.strip_prefix('/').unwrap_or(path);
    let mut out: Vec<&str> = Vec::new();
    let mut trailing = false;
    let parts: Vec<&str> = rest.split('/').collect();
    for (i, seg) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        match *seg {
            "." => trailing = last,
            ".." => {
                if out.pop().is_none() && refuse_above_root {
                    return None;
                }
                trailing = last;
            }
            "" if merge || last => trailing = last,
            s => {
                out.push(s);
                trailing = false;
            }
        }
    }
    let mut joined = format!("/{}", out.join("/"));
    if trailing && !out.is_empty() {
        joined.push('/');
    }
    Some(joined)
}

fn without_query(raw: &str) -> &str {
    raw.split(['?', '#']).next().unwrap_or("")
}

pub fn aspnetcore(raw: &str) -> Option<String> {
    resolve_dots(&percent_decode(without_query(raw), b"/"), false, false)
}

pub fn iis(raw: &str) -> Option<String> {
    let decoded = percent_decode(without_query(raw), b"").replace('\\', "/");
    let resolved = resolve_dots(&decoded, false, false)?;
    let trimmed: Vec<&str> = resolved
        .split('/')
        .map(|s| s.trim_end_matches(['.', ' ']))
        .collect();
    Some(trimmed.join("/"))
}

pub fn tomcat(raw: &str) -> Option<String> {
    let path = without_query(raw);
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") || path.contains('\\') {
        return None;
    }
    let stripped: Vec<&str> = path
        .split('/')
        .map(|s| s.split(';').next().unwrap_or(""))
        .collect();
    let decoded = percent_decode(&stripped.join("/"), b"");
    resolve_dots(&decoded, true, true)
}

pub fn express(raw: &str) -> Option<String> {
    Some(without_query(raw).to_owned())
}

pub fn go_net_http(raw: &str) -> Option<String> {
    resolve_dots(&percent_decode(without_query(raw), b""), true, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_resolve_as_documented() {
        assert_eq!(
            aspnetcore("/api/public/%2e%2e/admin").as_deref(),
            Some("/api/admin")
        );
        assert_eq!(aspnetcore("/a/..%2fb").as_deref(), Some("/a/..%2fb"));
        assert_eq!(iis("/api/public/..\\admin").as_deref(), Some("/api/admin"));
        assert_eq!(iis("/api/admin./x").as_deref(), Some("/api/admin/x"));
        assert_eq!(
            tomcat("/api/public/..;/admin/users").as_deref(),
            Some("/api/admin/users")
        );
        assert_eq!(
            tomcat("/api/admin;jsessionid=1/users").as_deref(),
            Some("/api/admin/users")
        );
        assert_eq!(tomcat("/a%2fb"), None);
        assert_eq!(express("/api/%61dmin?x").as_deref(), Some("/api/%61dmin"));
        assert_eq!(go_net_http("/api//admin").as_deref(), Some("/api/admin"));
        assert_eq!(go_net_http("/api/..%2fadmin").as_deref(), Some("/admin"));
    }
}
