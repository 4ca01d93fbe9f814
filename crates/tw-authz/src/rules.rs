//! Ordered route rules: methods + path patterns → what is required. First match wins.

use crate::pattern::PathPattern;
use tw_config::RuleConfig;

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
    pub paths: Vec<PathPattern>,
    pub requirement: Requirement,
}

impl Rule {
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x.eq_ignore_ascii_case(method)))
            && self.paths.iter().any(|p| p.matches(path))
    }
}

#[derive(Debug, Clone, Default)]
pub struct RuleSet(Vec<Rule>);

impl RuleSet {
    /// Compiles the rules; `Err((key, message))`.
    pub fn new(cfg: &[RuleConfig]) -> Result<Self, (String, String)> {
        let mut rules = Vec::with_capacity(cfg.len());
        for (i, r) in cfg.iter().enumerate() {
            let paths = r
                .paths
                .iter()
                .enumerate()
                .map(|(j, p)| {
                    PathPattern::new(p)
                        .map_err(|m| (format!("gateway.authz.rules[{i}].paths[{j}]"), m))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let requirement = if r.allow_any_authenticated {
                Requirement::Authenticated
            } else if !r.require_all.is_empty() {
                Requirement::All(r.require_all.clone())
            } else if !r.require_any.is_empty() {
                Requirement::Any(r.require_any.clone())
            } else {
                return Err((
                    format!("gateway.authz.rules[{i}]"),
                    "give `require_all`, `require_any` or `allow_any_authenticated = true`".into(),
                ));
            };
            rules.push(Rule {
                name: r.name.clone().unwrap_or_else(|| format!("rules[{i}]")),
                methods: r.methods.list(),
                paths,
                requirement,
            });
        }
        Ok(Self(rules))
    }

    /// The first rule matching; none when the path is unknown.
    pub fn find(&self, method: &str, path: Option<&str>) -> Option<&Rule> {
        let path = path?;
        self.0.iter().find(|r| r.matches(method, path))
    }

    pub fn rules(&self) -> &[Rule] {
        &self.0
    }
}
