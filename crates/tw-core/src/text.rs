//! Text from outside (IdP answers, tokens, admin input, database rows) on its way to a terminal.
//!
//! Printed raw, control characters would drive the terminal (clear it, recolour, set the title,
//! move the cursor, forge lines) and bidirectional overrides would reorder what is read. The same
//! characters are what stored admin input must not hold ([`is_terminal_unsafe`]).

use std::borrow::Cow;

/// Control characters (C0, DEL, C1 such as the one-byte CSI `\u{9b}`) and the bidirectional
/// marks, embeddings, overrides and isolates.
pub fn is_terminal_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every [`is_terminal_unsafe`] character shown escaped (`\u{1b}`, `\n`); borrowed
/// when there is none.
pub fn terminal_safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_terminal_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_terminal_unsafe(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`terminal_safe`], then at most `max` characters (the last one `…` when cut): a table cell or
/// a quoted value in a message, however long the original.
pub fn terminal_cell(text: &str, max: usize) -> String {
    let safe = terminal_safe(text);
    if safe.chars().count() <= max {
        return safe.into_owned();
    }
    let mut out: String = safe.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Case folding for comparing paths the way case-insensitive servers do (ASP.NET Core, IIS and
/// JavaScript's `/i` compare through upper case): each character on its own, upper then lower,
/// never by context, so `ς`, `σ` and `Σ` are one letter and `µ` (micro sign) is `μ`.
pub fn fold_case(text: &str) -> String {
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bidi_only() {
        assert!(matches!(terminal_safe("plain ✔ text"), Cow::Borrowed(_)));
        assert_eq!(
            terminal_safe("\u{1b}[2J\u{9b}31m\u{7f}\u{202e}x\u{2066}\n"),
            r"\u{1b}[2J\u{9b}31m\u{7f}\u{202e}x\u{2066}\n"
        );
    }

    #[test]
    fn cells_are_bounded_after_escaping() {
        assert_eq!(terminal_cell("short", 10), "short");
        let long = "x".repeat(100_000);
        let cell = terminal_cell(&long, 40);
        assert_eq!(cell.chars().count(), 40);
        assert!(cell.ends_with('…'));
        let hostile = "\u{1b}".repeat(50);
        let cell = terminal_cell(&hostile, 20);
        assert!(!cell.contains('\u{1b}'));
        assert_eq!(cell.chars().count(), 20);
    }

    #[test]
    fn case_folding_matches_upper_case_comparisons() {
        assert_eq!(fold_case("/API/Admin"), "/api/admin");
        assert_eq!(fold_case("/api/ΑΣ"), fold_case("/api/ασ"));
        assert_eq!(fold_case("/api/ας"), fold_case("/api/ασ"));
        assert_eq!(fold_case("/api/\u{b5}"), fold_case("/api/\u{3bc}"));
    }
}
