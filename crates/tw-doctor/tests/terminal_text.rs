//! The text report shows what others sent with its control characters escaped, whichever step
//! and field holds it; the JSON report keeps the text as it came.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use tw_doctor::{Report, Step};

const HOSTILE: &str = "\u{1b}]0;pwned\u{7}\u{1b}[2K\rok\u{9b}31m \u{2066}x\u{2069}\u{0}";

#[test]
fn every_text_field_is_escaped_in_the_text_report() {
    let mut report = Report::default();
    report.push(
        Step::fail(
            "token",
            Some(HOSTILE),
            "invalid_client",
            format!("refused: {HOSTILE}"),
        )
        .detail(format!("error_description: {HOSTILE}"))
        .fix(format!("fix {HOSTILE}")),
    );
    report.push(Step::warn("call", None, "http_status", "multi\nline"));
    let text = report.to_string();

    let raw: Vec<char> = text
        .chars()
        .filter(|c| (c.is_control() && *c != '\n') || matches!(c, '\u{2066}' | '\u{2069}'))
        .collect();
    assert!(raw.is_empty(), "{raw:?} in {text:?}");
    let escaped = r"\u{1b}]0;pwned\u{7}\u{1b}[2K\rok\u{9b}31m \u{2066}x\u{2069}\u{0}";
    for expected in [
        format!("✖ token [{escaped}]: refused: {escaped} (invalid_client)"),
        format!("    error_description: {escaped}"),
        format!("    fix: fix {escaped}"),
        r"! call: multi\nline (http_status)".to_owned(),
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected:?} not in:\n{text}"
        );
    }
    // Our own texts come through untouched.
    assert!(
        text.ends_with("1 check(s) failed, 1 warning(s)\n"),
        "{text}"
    );

    let json = report.to_json();
    assert_eq!(
        json["steps"][0]["details"][0],
        format!("error_description: {HOSTILE}")
    );
}
