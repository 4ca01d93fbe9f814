//! `inspect`: every check, in order, with pass/fail/skip and a reason.

use crate::error::{Check, VerifyError};
use crate::parse::{check_header, check_size, decode, is_b64token, looks_like_jwt};
use crate::verifier::{CHECK_ORDER, OPAQUE_CHECKS, VerifiedToken, Verifier, check_signature};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// The checks an [`InspectReport`] lists, in this order: the order [`Verifier::verify`] runs
/// them in.
pub const INSPECT_ORDER: [Check; 14] = CHECK_ORDER;

impl Verifier {
    /// Runs every check in order and reports each as passed, failed or skipped, with a reason;
    /// `verdict` is what [`Verifier::verify`] would answer (without caches or introspection of
    /// JWTs). For `tokenwarden token inspect`.
    pub async fn inspect(&self, token: &str) -> InspectReport {
        run(self, token).await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepStatus {
    Pass,
    Fail,
    Skip,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pass => "pass",
            StepStatus::Fail => "fail",
            StepStatus::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InspectStep {
    pub check: Check,
    pub status: StepStatus,
    pub reason: String,
}

/// What `inspect` found. `header` and `claims` are the decoded (unverified) token parts: show them
/// to the token's owner only.
#[derive(Debug, Clone)]
pub struct InspectReport {
    pub header: Option<Map<String, Value>>,
    pub claims: Option<Map<String, Value>>,
    /// The configured issuer the token claims (or was routed to), if any.
    pub issuer: Option<String>,
    /// One step per entry of [`INSPECT_ORDER`].
    pub steps: Vec<InspectStep>,
    /// What `verify` would answer (first failure in evaluation order).
    pub verdict: Result<Arc<VerifiedToken>, VerifyError>,
}

impl InspectReport {
    pub fn step(&self, check: Check) -> Option<&InspectStep> {
        self.steps.iter().find(|s| s.check == check)
    }
    pub fn is_valid(&self) -> bool {
        self.verdict.is_ok()
    }
}

impl fmt::Display for InspectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.steps {
            writeln!(
                f,
                "{:<4}  {:<13}  {}",
                s.status.as_str(),
                s.check.code(),
                s.reason
            )?;
        }
        match &self.verdict {
            Ok(t) => write!(f, "valid (issuer {})", t.issuer),
            Err(e) => write!(f, "refused: {} ({})", e.description(), e.error_code()),
        }
    }
}

struct Steps {
    map: HashMap<Check, (StepStatus, String)>,
    first_error: Option<VerifyError>,
}

impl Steps {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
            first_error: None,
        }
    }
    fn pass(&mut self, c: Check, reason: impl Into<String>) {
        self.map.insert(c, (StepStatus::Pass, reason.into()));
    }
    fn skip(&mut self, c: Check, reason: impl Into<String>) {
        self.map
            .entry(c)
            .or_insert((StepStatus::Skip, reason.into()));
    }
    fn fail(&mut self, c: Check, e: &VerifyError) {
        self.map
            .insert(c, (StepStatus::Fail, e.description().to_owned()));
        if self.first_error.is_none() {
            self.first_error = Some(e.clone());
        }
    }
    fn record(&mut self, c: Check, r: Result<(), VerifyError>, pass: &str) {
        match r {
            Ok(()) => self.pass(c, pass),
            Err(e) => self.fail(c, &e),
        }
    }
    fn skip_rest(&mut self, reason: &str) {
        for c in INSPECT_ORDER {
            self.skip(c, reason);
        }
    }
    fn into_steps(self) -> (Vec<InspectStep>, Option<VerifyError>) {
        let mut map = self.map;
        let steps = INSPECT_ORDER
            .iter()
            .map(|c| {
                let (status, reason) = map
                    .remove(c)
                    .unwrap_or((StepStatus::Skip, "not evaluated".to_owned()));
                InspectStep {
                    check: *c,
                    status,
                    reason,
                }
            })
            .collect();
        (steps, self.first_error)
    }
}

async fn run(v: &Verifier, token: &str) -> InspectReport {
    let mut s = Steps::new();
    let mut report = InspectReport {
        header: None,
        claims: None,
        issuer: None,
        steps: Vec::new(),
        verdict: Err(VerifyError::new(Check::Format, "not evaluated")),
    };
    let mut verified: Option<Arc<VerifiedToken>> = None;

    if let Err(e) = check_size(token, v.max_token_bytes()) {
        s.fail(Check::Size, &e);
        s.skip_rest("the size check failed");
    } else {
        s.pass(Check::Size, format!("{} bytes", token.len()));
        if looks_like_jwt(token) {
            verified = inspect_jwt(v, token, &mut s, &mut report).await;
        } else {
            verified = inspect_opaque(v, token, &mut s, &mut report).await;
        }
    }
    let (steps, first_error) = s.into_steps();
    report.steps = steps;
    report.verdict = match (first_error, verified) {
        (Some(e), _) => Err(e),
        (None, Some(t)) => Ok(t),
        (None, None) => Err(VerifyError::new(Check::Format, "not verified")),
    };
    report
}

async fn inspect_jwt(
    v: &Verifier,
    token: &str,
    s: &mut Steps,
    report: &mut InspectReport,
) -> Option<Arc<VerifiedToken>> {
    let jwt = match decode(token, v.max_token_bytes()) {
        Ok(j) => j,
        Err(e) => {
            s.fail(Check::Format, &e);
            s.skip_rest("the token could not be decoded");
            return None;
        }
    };
    s.pass(
        Check::Format,
        "three base64url segments; header and payload are JSON objects",
    );
    report.header = Some(jwt.header().clone());
    report.claims = Some(jwt.claims().clone());

    let alg = match check_header(&jwt) {
        Ok(a) => {
            s.pass(Check::Header, "alg, crit, kid and typ are acceptable");
            Some(a)
        }
        Err(e) if e.check() == Check::Algorithm => {
            s.pass(Check::Header, "well-formed");
            s.fail(Check::Algorithm, &e);
            None
        }
        Err(e) => {
            s.fail(Check::Header, &e);
            s.skip(Check::Algorithm, "the header is malformed");
            None
        }
    };
    let idx = match v.inspect_issuer(jwt.registered()) {
        Ok(i) => {
            report.issuer = Some(v.issuer_name(i).to_owned());
            s.pass(
                Check::Issuer,
                format!("trusted issuer {}", v.issuer_name(i)),
            );
            Some(i)
        }
        Err(e) => {
            s.fail(Check::Issuer, &e);
            None
        }
    };
    let mut keys = None;
    match (alg, idx) {
        (Some(alg), Some(i)) => match v.inspect_alg_allowed(i, alg) {
            Err(e) => {
                s.fail(Check::Algorithm, &e);
                s.skip(Check::Key, "the algorithm is not accepted");
            }
            Ok(()) => match v.inspect_keys(i, &jwt, alg).await {
                Ok(k) => {
                    s.pass(
                        Check::Algorithm,
                        format!("{alg} is accepted and fits the key"),
                    );
                    s.pass(Check::Key, format!("{} candidate key(s)", k.len()));
                    keys = Some((alg, k));
                }
                Err(e) if e.check() == Check::Algorithm => {
                    s.fail(Check::Algorithm, &e);
                    s.pass(Check::Key, "a key with this kid is published");
                }
                Err(e) => {
                    s.pass(Check::Algorithm, format!("{alg} is accepted"));
                    s.fail(Check::Key, &e);
                }
            },
        },
        (_, None) => {
            s.skip(Check::Algorithm, "no trusted issuer");
            s.skip(Check::Key, "no trusted issuer");
        }
        (None, _) => s.skip(Check::Key, "the algorithm is not accepted"),
    }
    let mut signed = false;
    match &keys {
        Some((alg, k)) => match check_signature(&jwt, *alg, k) {
            Ok(_) => {
                signed = true;
                s.pass(Check::Signature, "verified");
            }
            Err(e) => s.fail(Check::Signature, &e),
        },
        None => s.skip(Check::Signature, "no key to check it with"),
    }
    for (c, r) in v.inspect_claims(idx, &jwt) {
        s.record(c, r, "ok");
    }
    for c in [Check::Audience, Check::AuthorizedParty, Check::TokenType] {
        s.skip(c, "no trusted issuer");
    }
    s.skip(
        Check::Introspection,
        "a JWT is introspected only on routes that ask for it",
    );
    match (idx, signed, &s.first_error) {
        (Some(i), true, None) => Some(v.inspect_build(i, &jwt)),
        _ => None,
    }
}

async fn inspect_opaque(
    v: &Verifier,
    token: &str,
    s: &mut Steps,
    report: &mut InspectReport,
) -> Option<Arc<VerifiedToken>> {
    if !is_b64token(token) {
        s.fail(
            Check::Format,
            &VerifyError::new(
                Check::Format,
                "not a JWT, nor a well-formed opaque bearer token",
            ),
        );
        s.skip_rest("the token is malformed");
        return None;
    }
    s.pass(
        Check::Format,
        "opaque token (no dot): checked by introspection",
    );
    for c in [
        Check::Header,
        Check::Algorithm,
        Check::Key,
        Check::Signature,
        Check::IssuedAt,
    ] {
        s.skip(c, "opaque token");
    }
    let (idx, result) = v.inspect_opaque(token).await;
    match idx {
        Some(i) => {
            report.issuer = Some(v.issuer_name(i).to_owned());
            s.pass(
                Check::Issuer,
                format!("introspected at {}", v.issuer_name(i)),
            );
        }
        None => {
            if let Err(e) = &result {
                let c = if e.check() == Check::Issuer {
                    Check::Issuer
                } else {
                    Check::Format
                };
                s.fail(c, e);
            }
            s.skip_rest("no issuer to introspect at");
            return None;
        }
    }
    // The order `introspect_opaque` checks in.
    let order = OPAQUE_CHECKS;
    match result {
        Ok(t) => {
            for c in order {
                s.pass(c, "ok");
            }
            report.claims = Some(t.claims.clone());
            Some(t)
        }
        Err(e) => {
            let failed = if e.check() == Check::IntrospectionUnavailable {
                Check::Introspection
            } else {
                e.check()
            };
            let mut before = true;
            for c in order {
                if c == failed {
                    s.fail(c, &e);
                    before = false;
                } else if before {
                    s.pass(c, "ok");
                } else {
                    s.skip(c, "not evaluated after the first failure");
                }
            }
            None
        }
    }
}
