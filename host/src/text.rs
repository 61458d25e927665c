//! Text from outside — a module's messages, keys from events, names from files — on its way
//! into logs, the terminal and status pages: bounded in length, with control characters
//! escaped, so that it can neither forge log lines nor drive a terminal.

use std::borrow::Cow;

/// The longest piece of outside text shown, in bytes.
pub(crate) const MAX_SHOWN: usize = 1024;

/// `s` cut to [`MAX_SHOWN`] bytes (saying how long it was) with control characters escaped
/// (`\n`, `\u{1b}`); borrowed when it needs neither.
pub(crate) fn shown(s: &str) -> Cow<'_, str> {
    if s.len() <= MAX_SHOWN && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    Cow::Owned(shown_bytes(s.as_bytes()))
}

/// `s` on one line: control characters (newlines included) escaped, nothing cut. For
/// messages whose parts are bounded already, such as an error and its causes.
pub(crate) fn one_line(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `path` as it is shown in messages: [`shown`] (on one line, controls escaped, bounded).
pub(crate) fn shown_path(path: &std::path::Path) -> String {
    shown(&path.display().to_string()).into_owned()
}

/// [`shown`] of bytes that may not be UTF-8 (only the first [`MAX_SHOWN`] are looked at).
pub(crate) fn shown_bytes(b: &[u8]) -> String {
    let cut = b.len().min(MAX_SHOWN);
    let mut out = one_line(&String::from_utf8_lossy(&b[..cut])).into_owned();
    if cut < b.len() {
        out.push_str(&format!("... ({} bytes in all)", b.len()));
    }
    out
}

/// A line of input as it is, for a terminal or a pipe: unchanged when it is UTF-8 without
/// control characters other than tab (every valid JSON line is), else with invalid bytes
/// replaced and control characters escaped, so that it stays one line and drives nothing.
pub(crate) fn printable_line(b: &[u8]) -> Cow<'_, [u8]> {
    let plain = |s: &str| !s.chars().any(|c| c.is_control() && c != '\t');
    match std::str::from_utf8(b) {
        Ok(s) if plain(s) => Cow::Borrowed(b),
        _ => {
            let mut out = String::with_capacity(b.len() + 16);
            for c in String::from_utf8_lossy(b).chars() {
                if c.is_control() && c != '\t' {
                    out.extend(c.escape_default());
                } else {
                    out.push(c);
                }
            }
            Cow::Owned(out.into_bytes())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_bounds_length() {
        assert!(matches!(shown("plain text"), Cow::Borrowed("plain text")));
        assert_eq!(shown("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(one_line(&"x\n".repeat(2000)).len(), 6000);
        let long = "é".repeat(1000);
        let s = shown(&long);
        assert!(s.len() < MAX_SHOWN + 40, "{}", s.len());
        assert!(s.ends_with("... (2000 bytes in all)"), "{s}");
        assert_eq!(shown_bytes(b"\xff\n"), "\u{fffd}\\n");
        assert!(matches!(printable_line(b"{\"a\":\t1}"), Cow::Borrowed(_)));
        assert_eq!(
            &*printable_line(b"\x1b[2J\n\x9b forged\xc2\x9b"),
            "\\u{1b}[2J\\n\u{fffd} forged\\u{9b}".as_bytes()
        );
    }
}
