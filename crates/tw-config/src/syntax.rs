//! Checks of single values that several sections share (listen addresses, configured paths and
//! hosts). Knows no section: the sections' validation (`load`, `authz`, `vault`) builds on it.

pub use tw_core::ListenAddr;

/// `api.example.org`, `10.0.0.1` or `[::1]`: no scheme, port or path.
pub(crate) fn is_plain_host(h: &str) -> bool {
    if let Some(inner) = h.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return !inner.is_empty() && inner.chars().all(|c| c.is_ascii_hexdigit() || c == ':');
    }
    !h.is_empty()
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.".contains(c))
}

/// Configured paths are compared with canonical request paths, so they must be canonical
/// themselves: no `.`/`..` or empty segments, no `%`-escapes, `;` or `\`.
pub(crate) fn check_canonical_path(p: &str) -> Result<(), String> {
    let rest = p.strip_prefix('/').unwrap_or(p);
    let mut segments = rest.split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if matches!(seg, "." | "..") || (seg.is_empty() && !last) {
            return Err(format!(
                "`{p}` is not canonical: no `.`, `..` or empty segments (request paths are compared after resolving them)"
            ));
        }
    }
    if p.contains(['%', ';', '\\']) || p.chars().any(char::is_control) {
        return Err(format!(
            "`{p}`: write the path decoded, without `%`-escapes, `;` or `\\`"
        ));
    }
    Ok(())
}
