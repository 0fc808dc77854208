//! Lexing pieces the extractors share: identifier bytes and C-style block comments.

/// A byte of an identifier in C, Go, Rust and Python (non-ASCII bytes count: UTF-8 names).
pub fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Skips a `/* … */` comment (not nested) starting at `t[i]` (the `/`), counting the newlines
/// it spans into `line`; returns the index after it (the end of `t` when it is not closed).
pub fn skip_block_comment(t: &[u8], mut i: usize, line: &mut u32) -> usize {
    let n = t.len();
    i += 2;
    while i < n && !(t[i] == b'*' && i + 1 < n && t[i + 1] == b'/') {
        if t[i] == b'\n' {
            *line += 1;
        }
        i += 1;
    }
    (i + 2).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_comments_end_after_the_close_and_count_lines() {
        let mut line = 1;
        assert_eq!(skip_block_comment(b"/* a\nb */x", 0, &mut line), 9);
        assert_eq!(line, 2);
        // Unclosed: the rest of the text.
        assert_eq!(skip_block_comment(b"x/* a\n", 1, &mut line), 6);
        assert_eq!(line, 3);
        // `/*/` is not closed by its own star.
        assert_eq!(skip_block_comment(b"/*/ */", 0, &mut line), 6);
        assert!(is_ident_byte(b'_') && is_ident_byte(0xc3) && !is_ident_byte(b'$'));
    }
}
