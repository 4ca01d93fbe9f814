//! Path patterns of route rules: literal segments, `*` and `{name}` (exactly one segment), a
//! segment with one `*` inside (`attributes*`: a segment starting with `attributes`), and `**`
//! (any number of segments, none included). Matching is on whole `/`-separated segments; a
//! trailing `/` is an empty last segment, which `**` and `*`-globs match (rule sets match request
//! paths without their trailing `/`, see `RuleSet::find`).

use tw_core::Invalid;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Literal(String),
    /// One segment: `prefix*suffix` (`*` and `{id}`: empty prefix and suffix, non-empty segment).
    Glob {
        prefix: String,
        suffix: String,
        nonempty: bool,
    },
    AnyDepth,
}

/// A compiled path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segs: Vec<Seg>,
}

impl PathPattern {
    /// Compiles `pattern` (checked by [`check_path_pattern`](crate::settings::check_path_pattern)).
    pub fn new(pattern: &str) -> Result<Self, Invalid> {
        crate::settings::check_path_pattern(pattern)?;
        let segs = pattern[1..]
            .split('/')
            .map(|s| {
                if s == "**" {
                    Seg::AnyDepth
                } else if s == "*" || (s.starts_with('{') && s.ends_with('}')) {
                    Seg::Glob {
                        prefix: String::new(),
                        suffix: String::new(),
                        nonempty: true,
                    }
                } else if let Some((p, x)) = s.split_once('*') {
                    Seg::Glob {
                        prefix: p.to_owned(),
                        suffix: x.to_owned(),
                        nonempty: false,
                    }
                } else {
                    Seg::Literal(s.to_owned())
                }
            })
            .collect();
        Ok(Self {
            source: pattern.to_owned(),
            segs,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Does `path` (starting with `/`, no query) match?
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match_segs(&self.segs, &parts)
    }
}

fn match_segs(segs: &[Seg], parts: &[&str]) -> bool {
    match segs.split_first() {
        None => parts.is_empty(),
        Some((Seg::AnyDepth, rest)) => {
            (0..=parts.len()).any(|skip| match_segs(rest, &parts[skip..]))
                // `/a/**` also matches `/a` itself.
                || (rest.is_empty() && parts.is_empty())
        }
        Some((seg, rest)) => {
            let Some((part, more)) = parts.split_first() else {
                return false;
            };
            let ok = match seg {
                Seg::Literal(l) => l == part,
                Seg::Glob {
                    prefix,
                    suffix,
                    nonempty,
                } => {
                    part.len() >= prefix.len() + suffix.len()
                        && part.starts_with(prefix.as_str())
                        && part.ends_with(suffix.as_str())
                        && !(*nonempty && part.is_empty())
                }
                Seg::AnyDepth => unreachable!("handled above"),
            };
            ok && match_segs(rest, more)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, path: &str) -> bool {
        PathPattern::new(p).expect("pattern").matches(path)
    }

    #[test]
    fn matcher() {
        assert!(m("/api/events", "/api/events"));
        assert!(!m("/api/events", "/api/events/1"));
        assert!(!m("/api/events", "/api/eventsx"));
        assert!(m("/api/events/*", "/api/events/1"));
        assert!(!m("/api/events/*", "/api/events"));
        assert!(!m("/api/events/*", "/api/events/"));
        assert!(!m("/api/events/*", "/api/events/1/x"));
        assert!(m("/api/events/{id}", "/api/events/42"));
        assert!(m(
            "/api/events/{id}/ticket-types",
            "/api/events/42/ticket-types"
        ));
        assert!(!m("/api/events/{id}/ticket-types", "/api/events/42/x"));
        assert!(m("/api/events/**", "/api/events"));
        assert!(m("/api/events/**", "/api/events/"));
        assert!(m("/api/events/**", "/api/events/1/2/3"));
        assert!(!m("/api/events/**", "/api/eventsx"));
        assert!(m("/**", "/"));
        assert!(m("/**", "/anything/at/all"));
        assert!(m("/api/**/stats", "/api/a/b/stats"));
        assert!(m("/api/**/stats", "/api/stats"));
        assert!(!m("/api/**/stats", "/api/a/b/stats2"));
        assert!(m("/api/attributes*", "/api/attributes"));
        assert!(m("/api/attributes*", "/api/attributes-x"));
        assert!(!m("/api/attributes*", "/api/attributes/1"));
        assert!(m("/api/*.json", "/api/a.json"));
        assert!(!m("/api", "api"));
        for bad in ["api", "/a/**x", "/a/*b*", "/{x", "/a?b", "/{}"] {
            assert!(PathPattern::new(bad).is_err(), "{bad}");
        }
    }
}
