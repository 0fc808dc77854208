//! Quoting inputs in messages: every error a client or the log sees quotes at most a short
//! prefix of any input (a hostile client may send megabytes; gRPC C-core clients drop status
//! messages over 8 KiB).

/// Characters of an input an error message may quote.
pub const QUOTE_CHARS: usize = 64;

/// Largest error message a status carries (gRPC C-core clients drop those over 8 KiB).
pub const MAX_STATUS_MESSAGE: usize = 1024;

/// A short, printable prefix of an input for an error message: at most [`QUOTE_CHARS`]
/// characters, debug-quoted, with the full length when cut.
pub fn short(input: &str) -> String {
    let mut chars = input.char_indices();
    match chars.nth(QUOTE_CHARS) {
        None => format!("{input:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &input[..cut], input.len()),
    }
}

/// [`short`] for raw bytes (lossily decoded), with the input's length in bytes when cut.
pub fn short_bytes(input: &[u8]) -> String {
    let prefix = &input[..input.len().min(QUOTE_CHARS * 4)];
    let text = String::from_utf8_lossy(prefix);
    match text.char_indices().nth(QUOTE_CHARS) {
        None if prefix.len() == input.len() => format!("{text:?}"),
        None => format!("{text:?}… ({} bytes)", input.len()),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], input.len()),
    }
}

/// A status message cut to [`MAX_STATUS_MESSAGE`] bytes (on a character boundary), for
/// messages built from errors that may quote inputs.
pub fn bounded_message(message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE {
        return message;
    }
    let mut cut = MAX_STATUS_MESSAGE;
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… (message cut at {cut} bytes)", &message[..cut])
}
