//! The front of the Unix socket: lets gRPC clients that send the socket path as the HTTP/2
//! `:authority` in, by rewriting every request's invalid `:authority` to `localhost` before
//! tonic's HTTP/2 layer (h2) sees it.
//!
//! gRPC's C core (Python, C++, Ruby, PHP), grpc-java, grpc-swift and grpcurl send the socket
//! path (`/run/wfdb.sock`, or %-encoded as `run%2Fwfdb.sock`) as `:authority` on a Unix socket.
//! That is not a URI authority, and h2 resets such a stream with `PROTOCOL_ERROR` before any
//! service is called; it has no option to relax the check. The front sits between the accepted
//! socket and h2 and, when a connection needs it, re-encodes the client's header blocks.
//!
//! HPACK's dynamic table is connection state shared by the client's encoder and the server's
//! decoder, so one changed header block would desynchronise every later one. The first
//! request decides for the whole connection. When its `:authority` is valid (or absent), the
//! rest of the connection passes through unchanged, at no cost. When it is not (such a client
//! sends the socket path in every request), every header block of the connection is decoded
//! with the client's table and re-encoded without ever adding to the server's table (the first
//! block shrinks it to 0), so the server's table setting never matters; other frames pass as
//! they arrive. Server-to-client bytes are never changed.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use loona_hpack::decoder::DecoderError;
use loona_hpack::{Decoder, Encoder};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The first bytes of every HTTP/2 client connection.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Length of an HTTP/2 frame header.
const FRAME_HEADER_LEN: usize = 9;
/// Largest frame payload the front sends: the SETTINGS_MAX_FRAME_SIZE every peer accepts.
const MAX_SENT_PAYLOAD: usize = 16_384;
/// Largest encoded header block (HEADERS and CONTINUATION payloads) the front buffers.
pub const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// Largest decoded header list (name + value + 32 per field, as RFC 7541 counts) the front
/// re-encodes. Above h2's own limits, so the front refuses nothing h2 would have accepted.
pub const MAX_HEADER_LIST: usize = 256 * 1024;
/// Largest HPACK dynamic table a client may ask for. The server advertises the protocol's 4096
/// (tonic never changes it); accepting more keeps the front right if that ever changes, and
/// bounds its memory.
const MAX_CLIENT_TABLE: usize = 64 * 1024;
/// What replaces an invalid `:authority`: the usual authority of a Unix-socket peer.
const LOCAL_AUTHORITY: &[u8] = b"localhost";
/// Bytes read from the client at a time.
const READ_CHUNK: usize = 32 * 1024;

const HEADERS: u8 = 0x1;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// Why the front closed a connection; each maps to an HTTP/2 error code for the GOAWAY frame.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("the client did not open with the HTTP/2 connection preface")]
    BadPreface,
    #[error("malformed HTTP/2 frame: {0}")]
    Protocol(&'static str),
    #[error("HTTP/2 frame too short for its fields: {0}")]
    FrameSize(&'static str),
    #[error("cannot decode a header block: {0}")]
    Hpack(DecoderError),
    #[error("a header block is longer than {MAX_HEADER_BLOCK} bytes")]
    BlockTooLarge,
    #[error("a header list is longer than {MAX_HEADER_LIST} bytes once decoded")]
    ListTooLarge,
}

impl FrontError {
    /// The HTTP/2 error code (RFC 9113 section 7) that names this failure.
    pub fn code(&self) -> u32 {
        match self {
            FrontError::BadPreface | FrontError::Protocol(_) => 0x1, // PROTOCOL_ERROR
            FrontError::FrameSize(_) => 0x6,                         // FRAME_SIZE_ERROR
            FrontError::Hpack(_) | FrontError::BlockTooLarge => 0x9, // COMPRESSION_ERROR
            FrontError::ListTooLarge => 0xb,                         // ENHANCE_YOUR_CALM
        }
    }
}

/// A frame header as read from the client.
#[derive(Clone, Copy)]
struct FrameHead {
    raw: [u8; FRAME_HEADER_LEN],
    len: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHead {
    fn parse(raw: [u8; FRAME_HEADER_LEN]) -> FrameHead {
        FrameHead {
            raw,
            len: usize::from(raw[0]) << 16 | usize::from(raw[1]) << 8 | usize::from(raw[2]),
            kind: raw[3],
            flags: raw[4],
            stream: u32::from_be_bytes([raw[5], raw[6], raw[7], raw[8]]) & 0x7fff_ffff,
        }
    }
}

/// Where the reader stands in the client's byte stream.
enum State {
    /// Matching the connection preface; the number of bytes matched so far.
    Preface(usize),
    /// Reading a frame header.
    Head {
        raw: [u8; FRAME_HEADER_LEN],
        have: usize,
    },
    /// Copying the payload of a frame that carries no header block; bytes left.
    PassThrough(usize),
    /// Gathering the payload of a HEADERS or CONTINUATION frame; bytes left.
    HeaderPayload { head: FrameHead, left: usize },
}

impl State {
    fn next_frame() -> State {
        State::Head {
            raw: [0; FRAME_HEADER_LEN],
            have: 0,
        }
    }
}

/// The HEADERS frame that opened the header block being gathered.
struct OpenBlock {
    stream: u32,
    end_stream: bool,
    priority: Option<[u8; 5]>,
}

/// Rewrites the client-to-server byte stream of one HTTP/2 connection whose first request has
/// an invalid `:authority`: header blocks are decoded and re-encoded (with an invalid
/// `:authority` replaced by `localhost`), every other frame is copied as it arrives. Holds at
/// most one header block in memory. After a first request that needs nothing, copies all.
pub struct RequestRewriter {
    state: State,
    decoder: Decoder<'static>,
    encoder: Encoder<'static>,
    /// The header block being gathered until a frame with END_HEADERS.
    open: Option<OpenBlock>,
    /// Its fragment so far (for a HEADERS frame being read, the raw payload).
    fragment: Vec<u8>,
    /// The re-encoded block.
    encoded: Vec<u8>,
    /// Whether header blocks are re-encoded: the first request had an invalid `:authority`.
    rewriting: bool,
    /// Whether the rest of the connection passes unchanged: the first request's was valid.
    verbatim: bool,
    last_stream: u32,
    rewrites: u64,
}

impl Default for RequestRewriter {
    fn default() -> Self {
        RequestRewriter::new()
    }
}

impl RequestRewriter {
    /// A rewriter for a new connection, expecting the connection preface.
    pub fn new() -> RequestRewriter {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(MAX_CLIENT_TABLE);
        let mut encoder = Encoder::new();
        // Never index anything: the server's table stays empty (see the module comment).
        encoder.set_max_table_size(0);
        RequestRewriter {
            state: State::Preface(0),
            decoder,
            encoder,
            open: None,
            fragment: Vec::new(),
            encoded: Vec::new(),
            rewriting: false,
            verbatim: false,
            last_stream: 0,
            rewrites: 0,
        }
    }

    /// The highest stream whose request reached the server (for a GOAWAY frame).
    pub fn last_stream(&self) -> u32 {
        self.last_stream
    }

    /// How many `:authority` values were replaced so far.
    pub fn rewrites(&self) -> u64 {
        self.rewrites
    }

    /// Whether the rest of the connection needs no rewriting (its first request did not).
    pub fn is_verbatim(&self) -> bool {
        self.verbatim
    }

    /// Takes bytes read from the client and appends what the server should read to `out`.
    /// After an error the connection must be closed: the stream cannot be followed further.
    pub fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), FrontError> {
        while !input.is_empty() {
            if self.verbatim {
                out.extend_from_slice(input);
                return Ok(());
            }
            match &mut self.state {
                State::Preface(seen) => {
                    let n = (PREFACE.len() - *seen).min(input.len());
                    if input[..n] != PREFACE[*seen..*seen + n] {
                        return Err(FrontError::BadPreface);
                    }
                    out.extend_from_slice(&input[..n]);
                    *seen += n;
                    input = &input[n..];
                    if *seen == PREFACE.len() {
                        self.state = State::next_frame();
                    }
                }
                State::Head { raw, have } => {
                    let n = (FRAME_HEADER_LEN - *have).min(input.len());
                    raw[*have..*have + n].copy_from_slice(&input[..n]);
                    *have += n;
                    input = &input[n..];
                    if *have == FRAME_HEADER_LEN {
                        let head = FrameHead::parse(*raw);
                        self.start_frame(head, out)?;
                    }
                }
                State::PassThrough(left) => {
                    let n = (*left).min(input.len());
                    out.extend_from_slice(&input[..n]);
                    *left -= n;
                    input = &input[n..];
                    if *left == 0 {
                        self.state = State::next_frame();
                    }
                }
                State::HeaderPayload { head, left } => {
                    let n = (*left).min(input.len());
                    self.fragment.extend_from_slice(&input[..n]);
                    *left -= n;
                    input = &input[n..];
                    if *left == 0 {
                        let head = *head;
                        self.state = State::next_frame();
                        self.end_header_frame(head, out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Acts on a frame header: header-block frames are gathered, others copied through.
    fn start_frame(&mut self, head: FrameHead, out: &mut Vec<u8>) -> Result<(), FrontError> {
        if let Some(open) = &self.open {
            if head.kind != CONTINUATION || head.stream != open.stream {
                return Err(FrontError::Protocol(
                    "a header block was interrupted before its END_HEADERS",
                ));
            }
        }
        match head.kind {
            HEADERS | CONTINUATION => {
                if head.kind == HEADERS && head.stream == 0 {
                    return Err(FrontError::Protocol("HEADERS frame on stream 0"));
                }
                if head.kind == CONTINUATION && self.open.is_none() {
                    return Err(FrontError::Protocol(
                        "CONTINUATION frame without a header block to continue",
                    ));
                }
                // Refused before anything is buffered; `fragment` never exceeds the cap.
                if head.len > MAX_HEADER_BLOCK - self.fragment.len() {
                    return Err(FrontError::BlockTooLarge);
                }
                if head.len == 0 {
                    self.state = State::next_frame();
                    self.end_header_frame(head, out)
                } else {
                    self.state = State::HeaderPayload {
                        head,
                        left: head.len,
                    };
                    Ok(())
                }
            }
            PUSH_PROMISE => Err(FrontError::Protocol("a client sent PUSH_PROMISE")),
            _ => {
                out.extend_from_slice(&head.raw);
                self.state = if head.len == 0 {
                    State::next_frame()
                } else {
                    State::PassThrough(head.len)
                };
                Ok(())
            }
        }
    }

    /// A HEADERS or CONTINUATION payload is complete in `fragment`.
    fn end_header_frame(&mut self, head: FrameHead, out: &mut Vec<u8>) -> Result<(), FrontError> {
        if head.kind == HEADERS {
            // The payload alone is in `fragment`: strip padding and priority fields.
            let mut start = 0;
            let mut pad = 0;
            if head.flags & PADDED != 0 {
                pad = usize::from(*self.fragment.first().ok_or(FrontError::FrameSize(
                    "a padded HEADERS frame without its pad length",
                ))?);
                start = 1;
            }
            let priority = if head.flags & PRIORITY != 0 {
                let fields = self
                    .fragment
                    .get(start..start + 5)
                    .ok_or(FrontError::FrameSize(
                        "a HEADERS frame without room for its priority fields",
                    ))?;
                start += 5;
                let mut p = [0; 5];
                p.copy_from_slice(fields);
                Some(p)
            } else {
                None
            };
            if pad > self.fragment.len() - start {
                return Err(FrontError::Protocol(
                    "HEADERS padding longer than the frame",
                ));
            }
            self.fragment.truncate(self.fragment.len() - pad);
            self.fragment.drain(..start);
            self.open = Some(OpenBlock {
                stream: head.stream,
                end_stream: head.flags & END_STREAM != 0,
                priority,
            });
        }
        if head.flags & END_HEADERS != 0 {
            if let Some(open) = self.open.take() {
                self.forward_block(&open, out)?;
            }
        }
        Ok(())
    }

    /// Decodes the gathered block and writes it as HEADERS + CONTINUATION frames: re-encoded
    /// on a connection being rewritten, as it came on one whose first request was valid.
    fn forward_block(&mut self, open: &OpenBlock, out: &mut Vec<u8>) -> Result<(), FrontError> {
        self.encoded.clear();
        let (encoder, encoded) = (&mut self.encoder, &mut self.encoded);
        let mut list_size = 0usize;
        let mut rewrites = 0;
        self.decoder
            .decode_with_cb(&self.fragment, |name, value| {
                list_size = list_size.saturating_add(name.len() + value.len() + 32);
                if list_size > MAX_HEADER_LIST {
                    return;
                }
                let value: &[u8] = if &*name == b":authority" && !is_valid_authority(&value) {
                    rewrites += 1;
                    LOCAL_AUTHORITY
                } else {
                    &value
                };
                // Writing into a Vec cannot fail.
                let _ = encoder.encode_header_into((&name, value), encoded);
            })
            .map_err(FrontError::Hpack)?;
        if list_size > MAX_HEADER_LIST {
            return Err(FrontError::ListTooLarge);
        }
        self.last_stream = self.last_stream.max(open.stream);
        if !self.rewriting && rewrites == 0 {
            // The first request needs nothing: the client's HPACK bytes go on unchanged and
            // so does the rest of the connection (the server's table matches the client's).
            self.verbatim = true;
            put_block(out, open, &self.fragment);
        } else {
            if !self.rewriting {
                // A dynamic table size update to 0 (RFC 7541 section 6.3) before the first
                // re-encoded field: the server's table stays empty, whatever size it
                // advertised, and no later block can depend on it.
                self.encoded.insert(0, 0x20);
                self.rewriting = true;
            }
            self.rewrites += rewrites;
            put_block(out, open, &self.encoded);
        }
        recycle(&mut self.fragment);
        recycle(&mut self.encoded);
        Ok(())
    }
}

/// Writes a header block as a HEADERS frame (with the opening frame's priority fields and
/// END_STREAM) and as many CONTINUATION frames as needed, none over 16384 bytes.
fn put_block(out: &mut Vec<u8>, open: &OpenBlock, block: &[u8]) {
    let priority: &[u8] = open.priority.as_ref().map_or(&[], |p| &p[..]);
    let first = (MAX_SENT_PAYLOAD - priority.len()).min(block.len());
    let (chunk, mut rest) = block.split_at(first);
    let mut flags = if rest.is_empty() { END_HEADERS } else { 0 };
    if open.end_stream {
        flags |= END_STREAM;
    }
    if !priority.is_empty() {
        flags |= PRIORITY;
    }
    put_frame_head(
        out,
        priority.len() + chunk.len(),
        HEADERS,
        flags,
        open.stream,
    );
    out.extend_from_slice(priority);
    out.extend_from_slice(chunk);
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(MAX_SENT_PAYLOAD.min(rest.len()));
        rest = tail;
        let flags = if rest.is_empty() { END_HEADERS } else { 0 };
        put_frame_head(out, chunk.len(), CONTINUATION, flags, open.stream);
        out.extend_from_slice(chunk);
    }
}

/// Whether h2 accepts `value` as an `:authority` (it parses it as an `http` URI authority).
fn is_valid_authority(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// Empties a scratch buffer, giving back memory an unusually large header block took.
fn recycle(buf: &mut Vec<u8>) {
    buf.clear();
    buf.shrink_to(2 * MAX_SENT_PAYLOAD);
}

fn put_frame_head(out: &mut Vec<u8>, len: usize, kind: u8, flags: u8, stream: u32) {
    let len = (len as u32).to_be_bytes();
    out.extend_from_slice(&[len[1], len[2], len[3], kind, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
}

/// A GOAWAY frame: the last stream processed, the error code and a reason for people.
fn goaway_frame(last_stream: u32, code: u32, reason: &str) -> Vec<u8> {
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + 8 + reason.len());
    put_frame_head(&mut frame, 8 + reason.len(), GOAWAY, 0, 0);
    frame.extend_from_slice(&last_stream.to_be_bytes());
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(reason.as_bytes());
    frame
}

/// Follows the frames the server writes, so a GOAWAY is only ever put between two of them.
#[derive(Default)]
struct FrameBoundary {
    len_bytes: [u8; 3],
    have: usize,
    payload_left: usize,
}

impl FrameBoundary {
    fn advance(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
            for (i, &b) in bytes[..n].iter().enumerate() {
                if let Some(slot) = self.len_bytes.get_mut(self.have + i) {
                    *slot = b;
                }
            }
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER_LEN {
                let [a, b, c] = self.len_bytes;
                self.payload_left = usize::from(a) << 16 | usize::from(b) << 8 | usize::from(c);
                self.have = 0;
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.payload_left == 0
    }
}

/// A connection the front is closing: the GOAWAY frame to send and how far it got.
struct Closing {
    goaway: Vec<u8>,
    written: usize,
    done: bool,
    reason: String,
}

/// An accepted connection as the server reads and writes it: reads come through a
/// [`RequestRewriter`], writes go to the client unchanged. On malformed input it sends a GOAWAY
/// (when the server is between frames) and fails the server's reads and writes.
pub struct AuthorityFront<S> {
    inner: S,
    rewriter: RequestRewriter,
    incoming: Box<[u8]>,
    /// Rewritten bytes not yet read by the server, from `pending_at`.
    pending: Vec<u8>,
    pending_at: usize,
    sent: FrameBoundary,
    closing: Option<Closing>,
}

impl<S> AuthorityFront<S> {
    /// Wraps an accepted connection.
    pub fn new(inner: S) -> AuthorityFront<S> {
        AuthorityFront {
            inner,
            rewriter: RequestRewriter::new(),
            incoming: vec![0; READ_CHUNK].into_boxed_slice(),
            pending: Vec::new(),
            pending_at: 0,
            sent: FrameBoundary::default(),
            closing: None,
        }
    }

    fn start_closing(&mut self, error: FrontError) {
        tracing::debug!(%error, code = error.code(), "closing a Unix-socket connection");
        let reason = error.to_string();
        self.pending.clear();
        self.pending_at = 0;
        self.closing = Some(Closing {
            goaway: goaway_frame(self.rewriter.last_stream(), error.code(), &reason),
            written: 0,
            done: false,
            reason,
        });
    }
}

impl<S: AsyncWrite + Unpin> AuthorityFront<S> {
    /// Sends the GOAWAY if it can, then fails: the server drops the connection.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let Some(closing) = self.closing.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        if !closing.done && (closing.written > 0 || self.sent.at_boundary()) {
            while closing.written < closing.goaway.len() {
                match Pin::new(&mut self.inner).poll_write(cx, &closing.goaway[closing.written..]) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(n)) if n > 0 => closing.written += n,
                    Poll::Ready(_) => break,
                }
            }
        }
        closing.done = true;
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            closing.reason.clone(),
        )))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for AuthorityFront<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if this.pending_at < this.pending.len() {
                let n = buf.remaining().min(this.pending.len() - this.pending_at);
                buf.put_slice(&this.pending[this.pending_at..this.pending_at + n]);
                this.pending_at += n;
                if this.pending_at == this.pending.len() {
                    this.pending.clear();
                    this.pending_at = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if this.closing.is_some() {
                return this.poll_close(cx);
            }
            if this.rewriter.is_verbatim() {
                return Pin::new(&mut this.inner).poll_read(cx, buf);
            }
            let mut chunk = ReadBuf::new(&mut this.incoming);
            ready!(Pin::new(&mut this.inner).poll_read(cx, &mut chunk))?;
            if chunk.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
            let rewrites = this.rewriter.rewrites();
            if let Err(e) = this.rewriter.feed(chunk.filled(), &mut this.pending) {
                this.start_closing(e);
            } else if rewrites == 0 && this.rewriter.rewrites() > 0 {
                tracing::debug!("a client sent an invalid :authority; serving it as localhost");
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for AuthorityFront<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            return this.poll_close(cx).map_ok(|()| 0);
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.sent.advance(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closing.is_some() {
            return this.poll_close(cx).map_ok(|()| 0);
        }
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for b in bufs {
            let k = left.min(b.len());
            this.sent.advance(&b[..k]);
            left -= k;
            if left == 0 {
                break;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

impl<S: tonic::transport::server::Connected> tonic::transport::server::Connected
    for AuthorityFront<S>
{
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use loona_hpack::encoder;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const DATA: u8 = 0x0;
    const SETTINGS: u8 = 0x4;
    const RST_STREAM: u8 = 0x3;
    const SOCKET_AUTHORITY: &str = "tmp%2Fwfdb%2Fwfdb.sock";
    const PROTOCOL_ERROR: u32 = 0x1;
    const FRAME_SIZE_ERROR: u32 = 0x6;
    const COMPRESSION_ERROR: u32 = 0x9;
    const ENHANCE_YOUR_CALM: u32 = 0xb;

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::new();
        put_frame_head(&mut f, payload.len(), kind, flags, stream);
        f.extend_from_slice(payload);
        f
    }

    /// A gRPC request's header fields, as grpcio sends them.
    fn request(authority: &str, path: &str) -> Fields {
        [
            (":path", path),
            (":authority", authority),
            (":method", "POST"),
            (":scheme", "http"),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            ("grpc-accept-encoding", "identity, deflate, gzip"),
            (
                "user-agent",
                "grpc-python/1.85.3 grpc-c/58.0.0 (linux; chttp2)",
            ),
        ]
        .iter()
        .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect()
    }

    fn with_authority(fields: &Fields, authority: &str) -> Fields {
        fields
            .iter()
            .map(|(n, v)| {
                if n == b":authority" {
                    (n.clone(), authority.as_bytes().to_vec())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect()
    }

    /// Encodes like a client: incremental indexing into the client's dynamic table.
    fn encode(encoder: &mut Encoder<'static>, fields: &Fields) -> Vec<u8> {
        encoder.encode(fields.iter().map(|(n, v)| (&n[..], &v[..])))
    }

    /// The preface and an empty SETTINGS frame, as every client opens.
    fn opening() -> Vec<u8> {
        let mut b = PREFACE.to_vec();
        b.extend(frame(SETTINGS, 0, 0, &[]));
        b
    }

    /// A connection that sends one request in one HEADERS frame: the fields and the bytes.
    fn one_request(authority: &str, path: &str, flags: u8) -> (Fields, Vec<u8>) {
        let sent = request(authority, path);
        let mut input = opening();
        let block = encode(&mut Encoder::new(), &sent);
        input.extend(frame(HEADERS, flags, 1, &block));
        (sent, input)
    }

    fn rewrite(input: &[u8]) -> Result<Vec<u8>, FrontError> {
        let mut out = Vec::new();
        RequestRewriter::new().feed(input, &mut out)?;
        Ok(out)
    }

    struct Frame {
        kind: u8,
        flags: u8,
        stream: u32,
        payload: Vec<u8>,
    }

    fn frames(mut bytes: &[u8]) -> Vec<Frame> {
        let mut all = Vec::new();
        while !bytes.is_empty() {
            let mut raw = [0; FRAME_HEADER_LEN];
            raw.copy_from_slice(&bytes[..FRAME_HEADER_LEN]);
            let head = FrameHead::parse(raw);
            let end = FRAME_HEADER_LEN + head.len;
            all.push(Frame {
                kind: head.kind,
                flags: head.flags,
                stream: head.stream,
                payload: bytes[FRAME_HEADER_LEN..end].to_vec(),
            });
            bytes = &bytes[end..];
        }
        all
    }

    /// A header block as the server sees it: opening flags, priority fields and its fields.
    struct ServerBlock {
        stream: u32,
        flags: u8,
        priority: Option<Vec<u8>>,
        fields: Fields,
    }

    /// What the server reads after the preface: header blocks decoded with one decoder (as
    /// h2 does), every other frame as it is. Checks the framing rules the front promises.
    fn server_view(out: &[u8]) -> (Vec<ServerBlock>, Vec<Frame>) {
        assert_eq!(&out[..PREFACE.len()], PREFACE);
        let mut decoder = Decoder::new();
        let (mut blocks, mut others) = (Vec::new(), Vec::new());
        // The block being gathered, and its fragment so far.
        let mut open: Option<(ServerBlock, Vec<u8>)> = None;
        for f in frames(&out[PREFACE.len()..]) {
            assert!(
                f.payload.len() <= MAX_SENT_PAYLOAD,
                "frame over 16384 bytes"
            );
            match f.kind {
                HEADERS => {
                    assert!(open.is_none());
                    assert_eq!(f.flags & PADDED, 0, "padding is stripped");
                    let (priority, fragment) = if f.flags & PRIORITY != 0 {
                        (Some(f.payload[..5].to_vec()), f.payload[5..].to_vec())
                    } else {
                        (None, f.payload)
                    };
                    let block = ServerBlock {
                        stream: f.stream,
                        flags: f.flags,
                        priority,
                        fields: Vec::new(),
                    };
                    open = Some((block, fragment));
                }
                CONTINUATION => {
                    let (block, fragment) = open.as_mut().expect("CONTINUATION after HEADERS");
                    assert_eq!(block.stream, f.stream);
                    fragment.extend(f.payload);
                    block.flags |= f.flags & END_HEADERS;
                }
                _ => {
                    assert!(open.is_none(), "a frame inside a header block");
                    others.push(f);
                    continue;
                }
            }
            if f.flags & END_HEADERS != 0 {
                let (mut block, fragment) = open.take().unwrap();
                block.fields = decoder.decode(&fragment).expect("the server can decode it");
                blocks.push(block);
            }
        }
        assert!(open.is_none(), "an unfinished header block");
        (blocks, others)
    }

    #[test]
    fn an_invalid_authority_becomes_localhost() {
        for bad in [
            SOCKET_AUTHORITY,
            "/run/user/1000/wfdb/wfdb.sock",
            "",
            "outbound|8081||svc",
        ] {
            let (sent, mut input) = one_request(bad, "/grpc.health.v1.Health/Check", END_HEADERS);
            input.extend(frame(DATA, END_STREAM, 1, b"\0\0\0\0\0"));
            let out = rewrite(&input).unwrap();
            let (blocks, others) = server_view(&out);
            assert_eq!(blocks.len(), 1);
            // A table size update to 0 first: the server never stores an entry.
            let headers = frames(&out[PREFACE.len()..])
                .into_iter()
                .find(|f| f.kind == HEADERS);
            assert_eq!(headers.unwrap().payload[0], 0x20);
            assert_eq!(
                blocks[0].fields,
                with_authority(&sent, "localhost"),
                "{bad:?}"
            );
            assert_eq!(blocks[0].stream, 1);
            assert_eq!(blocks[0].flags, END_HEADERS);
            // Other frames pass unchanged: SETTINGS before, DATA after.
            assert_eq!(others.len(), 2);
            assert_eq!((others[0].kind, others[0].payload.len()), (SETTINGS, 0));
            assert_eq!((others[1].kind, others[1].flags), (DATA, END_STREAM));
            assert_eq!(others[1].payload, b"\0\0\0\0\0");
        }
    }

    #[test]
    fn a_valid_authority_leaves_the_connection_unchanged() {
        for good in [
            "localhost",
            "localhost:50051",
            "[::1]:8080",
            "wfdb.example:443",
        ] {
            let flags = END_HEADERS | END_STREAM;
            let (_, mut input) = one_request(good, "/workflowdb.v1.Catalog/GetClock", flags);
            let mut rewriter = RequestRewriter::new();
            let mut out = Vec::new();
            rewriter.feed(&input, &mut out).unwrap();
            assert_eq!(out, input, "{good:?}");
            assert!(rewriter.is_verbatim());
            // Whatever follows is not even parsed.
            let later = [&frame(DATA, 0, 1, b"abc")[..], b"\xff\xff\xff anything"].concat();
            rewriter.feed(&later, &mut out).unwrap();
            input.extend(later);
            assert_eq!(out, input);
            assert_eq!(rewriter.rewrites(), 0);
        }
        // A padded first request: the same HPACK bytes, framed without the padding.
        let sent = request("localhost", "/a/B");
        let block = encode(&mut Encoder::new(), &sent);
        let mut input = opening();
        input.extend(frame(
            HEADERS,
            PADDED | END_HEADERS,
            1,
            &[&[3], &block[..], &[0; 3]].concat(),
        ));
        let out = rewrite(&input).unwrap();
        let mut expected = opening();
        expected.extend(frame(HEADERS, END_HEADERS, 1, &block));
        assert_eq!(out, expected);
    }

    #[test]
    fn padding_priority_and_continuation_frames_are_handled() {
        let sent = request(SOCKET_AUTHORITY, "/workflowdb.v1.Catalog/ListFiles");
        let block = encode(&mut Encoder::new(), &sent);
        let (a, rest) = block.split_at(7);
        let (b, c) = rest.split_at(20);
        let priority = [0x80, 0, 0, 0, 0x10]; // exclusive, depends on stream 0, weight 17
        let mut headers = vec![4]; // pad length
        headers.extend(priority);
        headers.extend(a);
        headers.extend([0; 4]);
        let mut input = opening();
        input.extend(frame(HEADERS, PADDED | PRIORITY | END_STREAM, 3, &headers));
        input.extend(frame(CONTINUATION, 0, 3, b));
        input.extend(frame(CONTINUATION, END_HEADERS, 3, c));
        let (blocks, _) = server_view(&rewrite(&input).unwrap());
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].stream, 3);
        assert_eq!(blocks[0].flags, PRIORITY | END_STREAM | END_HEADERS);
        assert_eq!(blocks[0].priority.as_deref(), Some(&priority[..]));
        assert_eq!(blocks[0].fields, with_authority(&sent, "localhost"));
    }

    #[test]
    fn the_dynamic_table_stays_consistent_across_requests() {
        let mut client = Encoder::new();
        let mut input = opening();
        let mut expected = Vec::new();
        let mut sizes = Vec::new();
        for (i, (authority, path)) in [
            (SOCKET_AUTHORITY, "/grpc.health.v1.Health/Check"),
            (SOCKET_AUTHORITY, "/workflowdb.v1.Catalog/GetClock"),
            ("localhost:7000", "/workflowdb.v1.Catalog/GetClock"),
            (SOCKET_AUTHORITY, "/workflowdb.v1.Catalog/GetClock"),
            ("/run/wfdb.sock", "/workflowdb.v1.Catalog/Stats"),
            (SOCKET_AUTHORITY, "/grpc.health.v1.Health/Check"),
        ]
        .into_iter()
        .enumerate()
        {
            let mut sent = request(authority, path);
            sent.push((b"x-request".to_vec(), format!("{i}").into_bytes()));
            let mut block = Vec::new();
            if i == 3 {
                // The client shrinks its table mid-connection (evicting entries).
                encoder::encode_integer_into(200, 5, 0x20, &mut block).unwrap();
                client.set_max_table_size(200);
            }
            block.extend(encode(&mut client, &sent));
            sizes.push(block.len());
            let stream = 2 * i as u32 + 1;
            input.extend(frame(HEADERS, END_HEADERS, stream, &block));
            input.extend(frame(DATA, END_STREAM, stream, b"\0\0\0\0\0"));
            let authority = if authority == "localhost:7000" {
                authority
            } else {
                "localhost"
            };
            expected.push(with_authority(&sent, authority));
        }
        // The test is only worth something if the client really used its dynamic table.
        assert!(sizes[1] + 50 < sizes[0], "{sizes:?}");
        let (blocks, others) = server_view(&rewrite(&input).unwrap());
        let got: Vec<Fields> = blocks.into_iter().map(|b| b.fields).collect();
        assert_eq!(got, expected);
        assert_eq!(others.len(), 1 + 6);
    }

    #[test]
    fn a_large_block_is_split_into_frames_of_16384_bytes() {
        let mut sent = request(SOCKET_AUTHORITY, "/workflowdb.v1.Sessions/SaveSession");
        sent.push((b"x-big".to_vec(), vec![b'v'; 40_000]));
        let block = encode(&mut Encoder::new(), &sent);
        let mut input = opening();
        let mut parts = block.chunks(16_000).peekable();
        let mut kind = HEADERS;
        while let Some(part) = parts.next() {
            let flags = if parts.peek().is_none() {
                END_HEADERS
            } else {
                0
            };
            input.extend(frame(kind, flags, 1, part));
            kind = CONTINUATION;
        }
        let out = rewrite(&input).unwrap();
        let header_frames: Vec<Frame> = frames(&out[PREFACE.len()..])
            .into_iter()
            .filter(|f| f.kind != SETTINGS)
            .collect();
        assert_eq!(header_frames.len(), 3);
        assert_eq!(header_frames[0].payload.len(), MAX_SENT_PAYLOAD);
        assert_eq!(header_frames[0].flags, 0);
        assert_eq!(header_frames[2].flags, END_HEADERS);
        let (blocks, _) = server_view(&out);
        assert_eq!(blocks[0].fields, with_authority(&sent, "localhost"));
    }

    #[test]
    fn data_streams_through_without_being_buffered() {
        let (_, input) = one_request(SOCKET_AUTHORITY, "/x/Y", END_HEADERS);
        let mut rewriter = RequestRewriter::new();
        let mut out = Vec::new();
        rewriter.feed(&input, &mut out).unwrap();
        out.clear();
        // A DATA frame of 1 MiB: its header and each piece of payload come out at once.
        let mut head = Vec::new();
        put_frame_head(&mut head, 1 << 20, DATA, END_STREAM, 1);
        rewriter.feed(&head, &mut out).unwrap();
        assert_eq!(out, head);
        for _ in 0..64 {
            out.clear();
            rewriter.feed(&[7; 16_384], &mut out).unwrap();
            assert_eq!(out, [7; 16_384]);
            assert_eq!(rewriter.fragment.len(), 0);
        }
        // The frame is over: the next bytes are a frame header again.
        out.clear();
        let ping = frame(0x6, 0, 0, &[1; 8]);
        rewriter.feed(&ping, &mut out).unwrap();
        assert_eq!(out, ping);
    }

    #[test]
    fn byte_by_byte_input_gives_the_same_output() {
        let mut client = Encoder::new();
        let mut input = opening();
        for stream in [1, 3, 5] {
            let block = encode(&mut client, &request(SOCKET_AUTHORITY, "/a/B"));
            let (a, b) = block.split_at(block.len() / 2);
            let mut payload = vec![2];
            payload.extend(a);
            payload.extend([0, 0]);
            input.extend(frame(HEADERS, PADDED, stream, &payload));
            input.extend(frame(CONTINUATION, END_HEADERS, stream, b));
            input.extend(frame(DATA, END_STREAM, stream, &[stream as u8; 300]));
        }
        let whole = rewrite(&input).unwrap();
        let mut rewriter = RequestRewriter::new();
        let mut out = Vec::new();
        for b in &input {
            rewriter.feed(std::slice::from_ref(b), &mut out).unwrap();
        }
        assert_eq!(out, whole);
        assert_eq!(server_view(&whole).0.len(), 3);
    }

    /// The error code the front closes with, for a client that sends `after_opening`.
    fn failure(after_opening: &[u8]) -> u32 {
        let mut input = opening();
        input.extend(after_opening);
        match rewrite(&input) {
            Ok(_) => panic!("accepted"),
            Err(e) => e.code(),
        }
    }

    #[test]
    fn malformed_input_is_refused_with_the_right_error_code() {
        let block = encode(&mut Encoder::new(), &request(SOCKET_AUTHORITY, "/a/B"));
        let unfinished = frame(HEADERS, 0, 1, &block);

        let e = rewrite(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
        assert!(matches!(e, FrontError::BadPreface), "{e}");
        assert_eq!(
            failure(&frame(CONTINUATION, END_HEADERS, 1, &block)),
            PROTOCOL_ERROR
        );
        let interrupted = [unfinished.clone(), frame(DATA, 0, 1, b"x")].concat();
        assert_eq!(failure(&interrupted), PROTOCOL_ERROR);
        let other_stream = [unfinished, frame(CONTINUATION, END_HEADERS, 3, &[])].concat();
        assert_eq!(failure(&other_stream), PROTOCOL_ERROR);
        assert_eq!(
            failure(&frame(HEADERS, END_HEADERS, 0, &block)),
            PROTOCOL_ERROR
        );
        assert_eq!(
            failure(&frame(PUSH_PROMISE, END_HEADERS, 1, &[0, 0, 0, 2])),
            PROTOCOL_ERROR
        );
        let overpadded = [&[200][..], &block].concat();
        assert_eq!(
            failure(&frame(HEADERS, END_HEADERS | PADDED, 1, &overpadded)),
            PROTOCOL_ERROR
        );
        assert_eq!(
            failure(&frame(HEADERS, END_HEADERS | PADDED, 1, &[])),
            FRAME_SIZE_ERROR
        );
        assert_eq!(
            failure(&frame(HEADERS, END_HEADERS | PRIORITY, 1, &[0, 0, 1])),
            FRAME_SIZE_ERROR
        );
        // HPACK: an index past both tables; a table larger than allowed; a truncated string.
        assert_eq!(
            failure(&frame(HEADERS, END_HEADERS, 1, &[0xbe])),
            COMPRESSION_ERROR
        );
        let mut huge_table = Vec::new();
        encoder::encode_integer_into(1 << 20, 5, 0x20, &mut huge_table).unwrap();
        assert_eq!(
            failure(&frame(HEADERS, END_HEADERS, 1, &huge_table)),
            COMPRESSION_ERROR
        );
        assert_eq!(
            failure(&frame(HEADERS, END_HEADERS, 1, &block[..block.len() - 3])),
            COMPRESSION_ERROR
        );
    }

    #[test]
    fn oversized_header_blocks_are_refused_before_being_buffered() {
        // One frame announcing 1 MiB: refused on its 9-byte header alone.
        let mut head = Vec::new();
        put_frame_head(&mut head, 1 << 20, HEADERS, END_HEADERS, 1);
        let mut input = opening();
        input.extend(&head);
        assert!(matches!(rewrite(&input), Err(FrontError::BlockTooLarge)));
        // Frames that add up past the cap.
        let mut input = opening();
        input.extend(frame(HEADERS, 0, 1, &[0x82; 16_384]));
        for _ in 0..MAX_HEADER_BLOCK / 16_384 {
            input.extend(frame(CONTINUATION, 0, 1, &[0x82; 16_384]));
        }
        assert!(matches!(rewrite(&input), Err(FrontError::BlockTooLarge)));
        // A small block that decodes to a huge list: 200 references to a 4000-byte entry.
        let mut client = Encoder::new();
        let mut first = request(SOCKET_AUTHORITY, "/a/B");
        first.push((b"x-big".to_vec(), vec![b'v'; 4000]));
        let mut input = opening();
        input.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            1,
            &encode(&mut client, &first),
        ));
        input.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0xbe; 200]));
        let e = rewrite(&input).unwrap_err();
        assert!(matches!(e, FrontError::ListTooLarge), "{e}");
        assert_eq!(e.code(), ENHANCE_YOUR_CALM);
    }

    #[test]
    fn server_frame_boundaries_are_followed_across_writes() {
        let mut b = FrameBoundary::default();
        let settings = frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0, 100]);
        b.advance(&settings[..4]);
        assert!(!b.at_boundary());
        b.advance(&settings[4..12]);
        assert!(!b.at_boundary());
        b.advance(&settings[12..]);
        assert!(b.at_boundary());
        let two = [frame(0x6, 0, 0, &[0; 8]), frame(SETTINGS, 1, 0, &[])].concat();
        b.advance(&two);
        assert!(b.at_boundary());
    }

    /// Reads one frame, or None at the end of the stream.
    async fn read_frame(io: &mut tokio::io::DuplexStream) -> Option<Frame> {
        let mut raw = [0; FRAME_HEADER_LEN];
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            io.read_exact(&mut raw).await.ok()?;
            let head = FrameHead::parse(raw);
            let mut payload = vec![0; head.len];
            io.read_exact(&mut payload).await.ok()?;
            Some(Frame {
                kind: head.kind,
                flags: head.flags,
                stream: head.stream,
                payload,
            })
        });
        read.await.expect("a frame or the end within 10 s")
    }

    /// Sends a gRPC-like request with `authority` to a real h2 server, with
    /// or without the front; returns the authority the server saw (None: no request reached
    /// it) and the frames the client read up to the response or a reset.
    async fn request_h2(authority: &str, through_front: bool) -> (Option<String>, Vec<Frame>) {
        let (mut client, server_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            if through_front {
                serve_h2(AuthorityFront::new(server_io)).await
            } else {
                serve_h2(server_io).await
            }
        });
        let flags = END_HEADERS | END_STREAM;
        let (_, input) = one_request(authority, "/grpc.health.v1.Health/Check", flags);
        client.write_all(&input).await.unwrap();
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut client).await {
            let done = f.stream == 1 && (f.kind == HEADERS || f.kind == RST_STREAM);
            got.push(f);
            if done {
                break;
            }
        }
        drop(client);
        (server.await.unwrap(), got)
    }

    /// Serves requests with h2 until the client leaves; the last request's authority.
    async fn serve_h2<T: AsyncRead + AsyncWrite + Unpin>(io: T) -> Option<String> {
        let mut conn = h2::server::handshake(io).await.ok()?;
        let mut seen = None;
        while let Some(Ok((req, mut respond))) = conn.accept().await {
            seen = req.uri().authority().map(|a| a.to_string());
            let _ = respond.send_response(http::Response::new(()), true);
        }
        seen
    }

    #[tokio::test]
    async fn h2_refuses_the_socket_path_and_accepts_it_through_the_front() {
        // As gRPC's C core sends it, and as grpc-java and grpcurl do.
        for authority in [SOCKET_AUTHORITY, "/tmp/wfdb/wfdb.sock"] {
            let (seen, frames) = request_h2(authority, false).await;
            assert_eq!(seen, None);
            let last = frames.last().expect("a reply");
            assert_eq!((last.kind, last.stream), (RST_STREAM, 1));
            assert_eq!(last.payload, PROTOCOL_ERROR.to_be_bytes());

            let (seen, frames) = request_h2(authority, true).await;
            assert_eq!(seen.as_deref(), Some("localhost"));
            let last = frames.last().expect("a reply");
            assert_eq!((last.kind, last.stream), (HEADERS, 1));
        }
        // The convention goes through unchanged.
        let (seen, _) = request_h2("localhost", true).await;
        assert_eq!(seen.as_deref(), Some("localhost"));
    }

    #[tokio::test]
    async fn malformed_input_gets_a_goaway_and_the_connection_closes() {
        let (mut client, server_io) = tokio::io::duplex(1 << 16);
        let server = tokio::spawn(async move {
            let mut conn = h2::server::handshake(AuthorityFront::new(server_io))
                .await
                .ok()?;
            conn.accept().await.map(|r| r.is_ok())
        });
        let mut input = opening();
        input.extend(frame(HEADERS, END_HEADERS, 1, &[0xbe]));
        client.write_all(&input).await.unwrap();
        let mut frames = Vec::new();
        while let Some(f) = read_frame(&mut client).await {
            frames.push(f);
        }
        let goaway = frames.iter().find(|f| f.kind == GOAWAY).expect("a GOAWAY");
        assert_eq!(
            &goaway.payload[4..8],
            &0x9u32.to_be_bytes(),
            "COMPRESSION_ERROR"
        );
        assert!(String::from_utf8_lossy(&goaway.payload[8..]).contains("header block"));
        assert_eq!(
            frames.last().map(|f| f.kind),
            Some(GOAWAY),
            "nothing after the GOAWAY"
        );
        assert_ne!(
            server.await.unwrap(),
            Some(true),
            "no request reached the server"
        );
    }
}
