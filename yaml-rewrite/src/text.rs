//! Text helpers. All scan bytes for ASCII delimiters, which never occur inside a multi-byte
//! UTF-8 sequence, so every position they return is a char boundary.

pub(super) fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Start of the line holding `pos`.
pub(super) fn line_start(text: &str, pos: usize) -> usize {
    text.as_bytes().get(..pos).and_then(|t| t.iter().rposition(|&b| b == b'\n')).map_or(0, |i| i + 1)
}

/// Position after the line break of the line holding `pos` (or the end of the text).
pub(super) fn line_end_after(text: &str, pos: usize) -> usize {
    let rest = text.as_bytes().get(pos..).unwrap_or_default();
    rest.iter().position(|&b| b == b'\n').map_or(text.len(), |i| pos + i + 1)
}

/// End of the content of the line holding `pos`, before its `\n` or `\r\n`.
pub(super) fn line_content_end(text: &str, pos: usize) -> usize {
    let end = line_end_after(text, pos);
    let bytes = text.as_bytes();
    let mut e = end;
    if e > pos && bytes.get(e - 1) == Some(&b'\n') {
        e -= 1;
        if e > pos && bytes.get(e - 1) == Some(&b'\r') {
            e -= 1;
        }
    }
    e
}

/// Move back from `pos` over blanks and line breaks.
pub(super) fn trim_back(text: &str, pos: usize) -> usize {
    let bytes = text.as_bytes();
    let mut p = pos.min(bytes.len());
    while p > 0 && bytes.get(p - 1).is_some_and(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')) {
        p -= 1;
    }
    p
}

/// A position on the last line of a block scalar whose span ends at `span_end`, counting its
/// trailing blank lines: back over the next line's indentation, then onto the last line break.
pub(super) fn block_extent_end(text: &str, span_end: usize) -> usize {
    let bytes = text.as_bytes();
    let mut p = span_end.min(bytes.len());
    while p > 0 && bytes.get(p - 1).copied().is_some_and(is_blank) {
        p -= 1;
    }
    if p > 0 && bytes.get(p - 1) == Some(&b'\n') {
        p -= 1;
    }
    p
}

/// End of the token (tag) starting at `pos`: the next blank or line break.
pub(super) fn token_end(text: &str, pos: usize) -> usize {
    let rest = text.as_bytes().get(pos..).unwrap_or_default();
    rest.iter().position(|&b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).map_or(text.len(), |i| pos + i)
}

/// Position after the `:` that follows a key ending at `key_end` on the same line.
pub(super) fn colon_after(text: &str, key_end: usize) -> Option<usize> {
    let rest = text.as_bytes().get(key_end..)?;
    let i = rest.iter().position(|&b| !is_blank(b))?;
    (rest.get(i) == Some(&b':')).then_some(key_end + i + 1)
}

/// Find a block scalar header after `from`: (indicator start, indicator end, line content end).
pub(super) fn block_header(text: &str, from: usize) -> Option<(usize, usize, usize)> {
    let bytes = text.as_bytes();
    let rest = bytes.get(from..)?;
    let start = from + rest.iter().position(|&b| !is_blank(b))?;
    if !matches!(bytes.get(start), Some(b'|' | b'>')) {
        return None;
    }
    let rest = bytes.get(start + 1..)?;
    let len = rest.iter().position(|&b| !matches!(b, b'+' | b'-' | b'0'..=b'9')).unwrap_or(rest.len());
    let end = start + 1 + len;
    Some((start, end, line_content_end(text, end)))
}

/// The line break the file uses: CRLF if its first line ends with one.
pub(super) fn line_break(text: &str) -> &'static str {
    match text.find('\n') {
        Some(i) if i > 0 && text.as_bytes().get(i - 1) == Some(&b'\r') => "\r\n",
        _ => "\n",
    }
}

pub(super) fn line_of(text: &str, pos: usize) -> usize {
    text.as_bytes().get(..pos).map_or(0, |t| t.iter().filter(|&&b| b == b'\n').count()) + 1
}
