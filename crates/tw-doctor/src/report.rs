//! What the doctor found: steps with a status, a stable cause code, an explanation and fixes.

use serde::Serialize;
use std::fmt::{self, Write as _};
use tw_core::text::terminal_safe;

/// The outcome of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    /// Works, but something deserves attention (does not fail the run).
    Warn,
    Fail,
    /// Not run: an earlier step failed, or nothing to check.
    Skip,
}

impl Status {
    fn symbol(self) -> &'static str {
        match self {
            Status::Pass => "✔",
            Status::Warn => "!",
            Status::Fail => "✖",
            Status::Skip => "-",
        }
    }
}

/// One check and what it found. Texts never hold a secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// Stable step name: `config`, `secrets`, `discovery`, `clock`, `token`, `claims`, `authz`,
    /// `call`.
    pub id: &'static str,
    /// The profile the step is about (none for `config`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    pub status: Status,
    /// Stable machine-readable class of the problem (`connection_refused`, `audience_mismatch`...);
    /// none for passes and skips.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cause: Option<&'static str>,
    /// One line: what was found.
    pub summary: String,
    /// More lines of explanation.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<String>,
    /// What to do about it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fix: Vec<String>,
}

impl Step {
    pub fn new(
        id: &'static str,
        profile: Option<&str>,
        status: Status,
        summary: impl Into<String>,
    ) -> Self {
        Self {
            id,
            profile: profile.map(str::to_owned),
            status,
            cause: None,
            summary: summary.into(),
            details: Vec::new(),
            fix: Vec::new(),
        }
    }

    pub fn pass(id: &'static str, profile: Option<&str>, summary: impl Into<String>) -> Self {
        Self::new(id, profile, Status::Pass, summary)
    }

    pub fn skip(id: &'static str, profile: Option<&str>, summary: impl Into<String>) -> Self {
        Self::new(id, profile, Status::Skip, summary)
    }

    pub fn fail(
        id: &'static str,
        profile: Option<&str>,
        cause: &'static str,
        summary: impl Into<String>,
    ) -> Self {
        Self::new(id, profile, Status::Fail, summary).cause(cause)
    }

    pub fn warn(
        id: &'static str,
        profile: Option<&str>,
        cause: &'static str,
        summary: impl Into<String>,
    ) -> Self {
        Self::new(id, profile, Status::Warn, summary).cause(cause)
    }

    pub fn cause(mut self, cause: &'static str) -> Self {
        self.cause = Some(cause);
        self
    }

    pub fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    pub fn fix(mut self, line: impl Into<String>) -> Self {
        self.fix.push(line.into());
        self
    }
}

/// Every step, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    pub steps: Vec<Step>,
}

impl Report {
    pub fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Some step failed.
    pub fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.status == Status::Fail)
    }

    /// The causes of every failed or warned step, in order.
    pub fn causes(&self) -> Vec<&'static str> {
        self.steps.iter().filter_map(|s| s.cause).collect()
    }

    /// The first step with this id (and profile, when given).
    pub fn step(&self, id: &str, profile: Option<&str>) -> Option<&Step> {
        self.steps
            .iter()
            .find(|s| s.id == id && (profile.is_none() || s.profile.as_deref() == profile))
    }

    /// The machine-readable document of `--json`.
    pub fn to_json(&self) -> serde_json::Value {
        let count = |st: Status| self.steps.iter().filter(|s| s.status == st).count();
        serde_json::json!({
            "ok": !self.failed(),
            "summary": {
                "pass": count(Status::Pass),
                "warn": count(Status::Warn),
                "fail": count(Status::Fail),
                "skip": count(Status::Skip),
            },
            "steps": self.steps,
        })
    }
}

/// Human-readable: one line per step with ✔ ✖ ! -, indented details and `fix:` lines. Step texts
/// quote what others sent (an IdP's issuer and error descriptions, headers, bodies, URLs), so
/// every text is made [`terminal_safe`] here, where all are printed: no step can forget.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            let mut head = format!("{} {}", s.status.symbol(), s.id);
            if let Some(p) = &s.profile {
                let _ = write!(head, " [{}]", terminal_safe(p));
            }
            write!(f, "{head}: {}", terminal_safe(&s.summary))?;
            if let Some(c) = s.cause {
                write!(f, " ({c})")?;
            }
            writeln!(f)?;
            for d in &s.details {
                writeln!(f, "    {}", terminal_safe(d))?;
            }
            for x in &s.fix {
                writeln!(f, "    fix: {}", terminal_safe(x))?;
            }
        }
        let fails = self
            .steps
            .iter()
            .filter(|s| s.status == Status::Fail)
            .count();
        let warns = self
            .steps
            .iter()
            .filter(|s| s.status == Status::Warn)
            .count();
        if fails == 0 {
            write!(f, "all checks passed")?;
            if warns > 0 {
                write!(f, " ({warns} warning(s))")?;
            }
            writeln!(f)
        } else {
            writeln!(f, "{fails} check(s) failed, {warns} warning(s)")
        }
    }
}
