//! Ordered route rules: methods + path patterns → what is required. First match wins.

use crate::pattern::PathPattern;
use crate::settings::{RuleConfig, UserAuthorization};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    All(Vec<String>),
    Any(Vec<String>),
    /// Any verified token.
    Authenticated,
}

impl Requirement {
    /// The required permissions, space-separated (the challenge's `scope`).
    pub fn scope(&self) -> Option<String> {
        match self {
            Requirement::All(r) | Requirement::Any(r) => Some(r.join(" ")),
            Requirement::Authenticated => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// `None`: any method.
    pub methods: Option<Vec<String>>,
    /// Normalized host names ([`normalize_host`](crate::settings::normalize_host)); empty: any host.
    pub hosts: Vec<String>,
    /// Lower case when the rule set is case-insensitive.
    pub paths: Vec<PathPattern>,
    pub requirement: Requirement,
    /// The rule's own `users` setting; `None`: the section's.
    pub users: Option<UserAuthorization>,
}

impl Rule {
    /// `host` normalized; `path` canonical (lower case when the set is case-insensitive). A rule
    /// for GET covers HEAD too: servers answer HEAD by running the GET handler.
    pub fn matches(&self, method: &str, host: Option<&str>, path: &str) -> bool {
        let head = method.eq_ignore_ascii_case("HEAD");
        self.methods.as_ref().is_none_or(|m| {
            m.iter()
                .any(|x| x.eq_ignore_ascii_case(method) || (head && x.eq_ignore_ascii_case("GET")))
        }) && (self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|x| x == h)))
            && self.paths.iter().any(|p| p.matches(path))
    }
}

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Paths (and patterns) compared in lower case: for upstreams that route case-insensitively.
    case_insensitive: bool,
}

impl RuleSet {
    /// Compiles the rules; a problem names the rule's key. With `case_insensitive`, patterns and request
    /// paths are compared in lower case.
    pub fn new(
        cfg: &[RuleConfig],
        case_insensitive: bool,
    ) -> Result<Self, tw_core::SettingsProblem> {
        let mut rules = Vec::with_capacity(cfg.len());
        for (i, r) in cfg.iter().enumerate() {
            let paths = r
                .paths
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    let p = if case_insensitive {
                        tw_core::text::fold_case(p)
                    } else {
                        p.clone()
                    };
                    PathPattern::new(&p).map_err(|m| tw_core::SettingsProblem {
                        key: format!("gateway.authz.rules[{i}].paths[{j}]"),
                        message: m.into(),
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let requirement = if r.allow_any_authenticated {
                Requirement::Authenticated
            } else if !r.require_all.is_empty() {
                Requirement::All(r.require_all.clone())
            } else if !r.require_any.is_empty() {
                Requirement::Any(r.require_any.clone())
            } else {
                return Err(tw_core::SettingsProblem {
                    key: format!("gateway.authz.rules[{i}]"),
                    message:
                        "give `require_all`, `require_any` or `allow_any_authenticated = true`"
                            .into(),
                });
            };
            rules.push(Rule {
                name: r.name.clone().unwrap_or_else(|| format!("rules[{i}]")),
                methods: r.methods.list(),
                hosts: r
                    .hosts
                    .iter()
                    .map(|h| crate::settings::normalize_host(h))
                    .collect(),
                paths,
                requirement,
                users: r.users,
            });
        }
        Ok(Self {
            rules,
            case_insensitive,
        })
    }

    /// The first rule matching; none when the path is unknown. `host` is normalized, `path` the
    /// canonical path (`tw_http::path`). A trailing `/` does not count: Express, ASP.NET Core
    /// and Spring route `/users/42/` to the handler of `/users/{id}`, so its rule must apply.
    pub fn find(&self, method: &str, host: Option<&str>, path: Option<&str>) -> Option<&Rule> {
        let path = path?;
        let path = match path.strip_suffix('/') {
            Some(p) if !p.is_empty() => p,
            _ => path,
        };
        if self.case_insensitive {
            let folded = tw_core::text::fold_case(path);
            self.rules.iter().find(|r| r.matches(method, host, &folded))
        } else {
            self.rules.iter().find(|r| r.matches(method, host, path))
        }
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }
}
