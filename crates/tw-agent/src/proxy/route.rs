//! Route matching (longest path prefix, on segment boundaries) and upstream URL building.

use http::Uri;
use url::Url;

/// The parts of a route that decide where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    /// Configured prefix without trailing `/` (empty for `/`).
    prefix: String,
    strip_prefix: bool,
    /// `scheme://host[:port]`, the only part of the upstream named in errors and metrics.
    origin: String,
    /// Upstream base path without trailing `/`.
    base_path: String,
}

impl Target {
    pub fn new(prefix: &str, upstream: &Url, strip_prefix: bool) -> Self {
        Self {
            prefix: prefix.trim_end_matches('/').to_owned(),
            strip_prefix,
            origin: upstream.origin().ascii_serialization(),
            base_path: upstream.path().trim_end_matches('/').to_owned(),
        }
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Length used to pick the longest match.
    pub fn specificity(&self) -> usize {
        self.prefix.len()
    }

    /// `/api` matches `/api` and `/api/x`, not `/apix`.
    pub fn matches(&self, path: &str) -> bool {
        match path.strip_prefix(self.prefix.as_str()) {
            Some(rest) => rest.is_empty() || rest.starts_with('/'),
            None => false,
        }
    }

    /// The upstream URI for a request to `uri` (which [`Target::matches`]).
    pub fn upstream_uri(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let path = uri.path();
        let rest = if self.strip_prefix {
            path.get(self.prefix.len()..).unwrap_or("")
        } else {
            path
        };
        let rest = if rest.starts_with('/') { rest } else { "/" };
        let mut out =
            String::with_capacity(self.origin.len() + self.base_path.len() + path.len() + 16);
        out.push_str(&self.origin);
        out.push_str(&self.base_path);
        out.push_str(rest);
        if let Some(q) = uri.query() {
            out.push('?');
            out.push_str(q);
        }
        Ok(Uri::try_from(out)?)
    }
}

/// True when a path segment is `..`, literally or percent-encoded: the upstream would resolve it
/// and the request could leave the route's prefix.
pub fn has_dot_dot_segment(path: &str) -> bool {
    path.split('/').any(|seg| {
        let s = seg.to_ascii_lowercase();
        matches!(s.as_str(), ".." | "%2e%2e" | ".%2e" | "%2e.")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(prefix: &str, upstream: &str, strip: bool) -> Target {
        Target::new(prefix, &Url::parse(upstream).expect("url"), strip)
    }

    fn up(t: &Target, uri: &str) -> String {
        t.upstream_uri(&uri.parse().expect("uri"))
            .expect("ok")
            .to_string()
    }

    #[test]
    fn matching_respects_segment_boundaries() {
        let t = target("/api/", "http://up:81", false);
        assert!(t.matches("/api"));
        assert!(t.matches("/api/"));
        assert!(t.matches("/api/v1/x"));
        assert!(!t.matches("/apix"));
        assert!(!t.matches("/other"));
        let root = target("/", "http://up", false);
        assert!(root.matches("/anything"));
        assert_eq!(root.specificity(), 0);
    }

    #[test]
    fn upstream_uri_with_and_without_strip_and_base_path() {
        let keep = target("/api/", "http://up:81", false);
        assert_eq!(
            up(&keep, "/api/v1/x?a=1&b=2"),
            "http://up:81/api/v1/x?a=1&b=2"
        );
        let strip = target("/api/", "http://up:81/base/", true);
        assert_eq!(up(&strip, "/api/v1/x?a=1"), "http://up:81/base/v1/x?a=1");
        assert_eq!(up(&strip, "/api"), "http://up:81/base/");
        let strip_root = target("/api", "https://up.example", true);
        assert_eq!(up(&strip_root, "/api/"), "https://up.example/");
        assert_eq!(strip_root.origin(), "https://up.example");
    }

    #[test]
    fn dot_dot_segments_are_detected_in_any_spelling() {
        assert!(has_dot_dot_segment("/api/../admin"));
        assert!(has_dot_dot_segment("/api/%2E%2e/admin"));
        assert!(has_dot_dot_segment("/api/.%2e"));
        assert!(!has_dot_dot_segment("/api/..foo/x"));
        assert!(!has_dot_dot_segment("/api/v1.2/x"));
    }
}
