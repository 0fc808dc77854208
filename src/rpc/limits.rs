//! Bounds on every request, checked in one place before any work: a tower layer reads each
//! request message off the wire and walks it with the service descriptors, so every string,
//! byte string, repeated field, map and `google.protobuf.Struct` of every method is measured
//! against the table below before a handler decodes it. The numbers are documented in the
//! README ("Limits"); keep the two in step.
//!
//! Sizes and shapes (a string too long, not UTF-8, a glob too complex, nesting too deep) are
//! INVALID_ARGUMENT; counts (too many items, keys, owned paths) are RESOURCE_EXHAUSTED. Every
//! refusal names the limit and the field. Error messages quote at most [`QUOTE_CHARS`]
//! characters of any input, through [`short`].

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use hyper::body::{Body, Frame, SizeHint};
use hyper::{Request, Response};
use prost_types::field_descriptor_proto::{Label, Type};
use tonic::Status;
use tower::{Layer, Service};

/// One documented bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// The name the README and error messages use.
    pub name: &'static str,
    /// The bound itself (bytes, items or levels).
    pub value: usize,
    /// What it bounds.
    pub what: &'static str,
}

/// Any string field not named by a narrower limit (bytes).
pub const STRING: Limit = Limit {
    name: "string",
    value: 16 * 1024,
    what: "bytes in a string field (names, ids, paths, roots, kinds); names written to the \
           registry are further held to their domain rule (128 characters)",
};
/// Free text fields: `description`, `message`, `error`, `text`, `reason` (bytes).
pub const TEXT: Limit = Limit {
    name: "text",
    value: 64 * 1024,
    what: "bytes in a free-text field (description, message, error, text, reason)",
};
/// A path or root given as a string (`path`, `path_prefix`, `root`, `paths`, `files`): the
/// system's PATH_MAX.
pub const PATH: Limit = Limit {
    name: "path",
    value: 4096,
    what: "bytes in a path or root (path, path_prefix, root, paths, files)",
};
/// A path given as raw bytes (`path_bytes`).
pub const PATH_BYTES: Limit = Limit {
    name: "path_bytes",
    value: 4096,
    what: "bytes in a path given as bytes",
};
/// A glob: listing and subscription filters, an agent's owned paths (bytes).
pub const GLOB_BYTES: Limit = Limit {
    name: "glob",
    value: 1024,
    what: "bytes in a glob (glob filters, owned_paths)",
};
/// Wildcards (`*`, `?`) in one glob.
pub const GLOB_WILDCARDS: Limit = Limit {
    name: "glob_wildcards",
    value: 64,
    what: "wildcards (* and ?) in one glob",
};
/// Alternations (`{a,b}` groups) in one glob.
pub const GLOB_ALTERNATIONS: Limit = Limit {
    name: "glob_alternations",
    value: 16,
    what: "alternation groups ({a,b}) and their branches / 4 in one glob",
};
/// Character classes (`[...]`) in one glob.
pub const GLOB_CLASSES: Limit = Limit {
    name: "glob_classes",
    value: 32,
    what: "character classes ([...]) in one glob",
};
/// Items in any repeated field or map not named below.
pub const LIST: Limit = Limit {
    name: "list",
    value: 10_000,
    what: "items in a repeated field or map",
};
/// Owned-path globs of one agent.
pub const OWNED_PATHS: Limit = Limit {
    name: "owned_paths",
    value: 1_000,
    what: "owned-path globs of one agent",
};
/// Owned-path globs of every agent together.
pub const OWNED_PATHS_TOTAL: Limit = Limit {
    name: "owned_paths_total",
    value: 100_000,
    what: "owned-path globs of all agents together",
};
/// Keys of one `google.protobuf.Struct`.
pub const STRUCT_KEYS: Limit = Limit {
    name: "struct_keys",
    value: 1_000,
    what: "keys in one Struct (JSON object)",
};
/// Values of one `google.protobuf.ListValue`.
pub const STRUCT_LIST: Limit = Limit {
    name: "struct_list",
    value: 10_000,
    what: "values in one ListValue (JSON array)",
};
/// Nesting of `Struct`/`ListValue` values.
pub const STRUCT_DEPTH: Limit = Limit {
    name: "struct_depth",
    value: 32,
    what: "levels of nested Struct/ListValue (JSON objects and arrays)",
};
/// A string inside a `Struct` (bytes): as large as a whole session may be (a session's
/// context may be one blob), and the session size limit bounds their sum.
pub const STRUCT_STRING: Limit = Limit {
    name: "struct_string",
    value: crate::registry::session::MAX_RESTORABLE_SESSION_BYTES as usize,
    what: "bytes in one string value inside a Struct",
};
/// Nesting of messages in one request (below the decoder's own recursion limit of 100, so
/// a deep request is refused with this limit's name rather than as undecodable; a JSON level
/// takes two message levels).
pub const NESTING: Limit = Limit {
    name: "nesting",
    value: 90,
    what: "levels of nested messages in one request",
};
/// One request message on the wire (bytes).
pub const MESSAGE: Limit = Limit {
    name: "message",
    value: 64 * 1024 * 1024,
    what: "bytes in one request message",
};
/// Concurrent calls on one connection (HTTP/2 streams).
pub const STREAMS_PER_CONNECTION: Limit = Limit {
    name: "streams_per_connection",
    value: 256,
    what: "calls open at once on one connection",
};

/// Every limit, for the README table and its test.
pub const ALL: &[Limit] = &[
    STRING,
    TEXT,
    PATH,
    PATH_BYTES,
    GLOB_BYTES,
    GLOB_WILDCARDS,
    GLOB_ALTERNATIONS,
    GLOB_CLASSES,
    LIST,
    OWNED_PATHS,
    OWNED_PATHS_TOTAL,
    STRUCT_KEYS,
    STRUCT_LIST,
    STRUCT_DEPTH,
    STRUCT_STRING,
    NESTING,
    MESSAGE,
    STREAMS_PER_CONNECTION,
];

pub use crate::quote::{bounded_message, short, short_bytes, MAX_STATUS_MESSAGE, QUOTE_CHARS};

/// The refusal of a value over a size or shape limit.
fn over(field: &str, limit: Limit, got: usize) -> Status {
    Status::invalid_argument(format!(
        "{field} has {got} {}; the `{}` limit is {} (see README, Limits)",
        unit(limit),
        limit.name,
        limit.value
    ))
}

/// The refusal of a count over a limit.
pub fn too_many(field: &str, limit: Limit, got: usize) -> Status {
    Status::resource_exhausted(format!(
        "{field} has {got} {}; the `{}` limit is {} (see README, Limits)",
        unit(limit),
        limit.name,
        limit.value
    ))
}

fn unit(limit: Limit) -> &'static str {
    match limit.name {
        "string" | "text" | "path" | "path_bytes" | "glob" | "struct_string" | "message" => "bytes",
        "glob_wildcards" => "wildcards",
        "glob_alternations" => "alternations",
        "glob_classes" => "classes",
        "struct_depth" | "nesting" => "levels",
        "struct_keys" => "keys",
        _ => "items",
    }
}

/// Checks a glob's size and complexity (wildcards, alternations, classes), so no glob can make
/// a compile slow or large.
pub fn check_glob(field: &str, glob: &str) -> Result<(), Status> {
    if glob.len() > GLOB_BYTES.value {
        return Err(over(field, GLOB_BYTES, glob.len()));
    }
    let bytes = glob.as_bytes();
    let (mut wild, mut groups, mut branches, mut classes) = (0usize, 0usize, 0usize, 0usize);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' => wild += 1,
            b'{' => groups += 1,
            b',' => branches += 1,
            b'[' => classes += 1,
            _ => {}
        }
        i += 1;
    }
    if wild > GLOB_WILDCARDS.value {
        return Err(over(field, GLOB_WILDCARDS, wild));
    }
    let alternations = groups + branches / 4;
    if alternations > GLOB_ALTERNATIONS.value {
        return Err(over(field, GLOB_ALTERNATIONS, alternations));
    }
    if classes > GLOB_CLASSES.value {
        return Err(over(field, GLOB_CLASSES, classes));
    }
    Ok(())
}

/// How a string or bytes field is bounded.
#[derive(Clone, Copy, Debug)]
enum Bound {
    String(Limit),
    Glob,
    Bytes(Option<Limit>),
}

/// A field of a request message, as the walker needs it.
#[derive(Clone, Debug)]
struct Field {
    /// `Message.field`, for error messages.
    label: String,
    repeated: bool,
    kind: FieldKind,
    /// Items allowed when repeated.
    max_items: Limit,
}

#[derive(Clone, Debug)]
enum FieldKind {
    Text(Bound),
    Message(String),
    /// Scalars: only their wire type is checked (0 varint, 1 fixed64, 5 fixed32).
    Scalar(u64),
}

/// Special handling of the well-known JSON types.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Json {
    No,
    /// `google.protobuf.Struct` or `ListValue`: one more level of JSON nesting.
    Container,
}

/// The request types of every method, and every message's fields, from the descriptors.
#[derive(Debug, Default)]
pub struct Schema {
    messages: HashMap<String, HashMap<u32, Field>>,
    /// `/package.Service/Method` → input type (`.package.Message`).
    methods: HashMap<String, String>,
}

impl Schema {
    /// Reads the descriptor sets (ours; the well-known types come with them).
    pub fn new(sets: &[&[u8]]) -> Schema {
        use prost::Message;
        let mut schema = Schema::default();
        for bytes in sets {
            let set = match prost_types::FileDescriptorSet::decode(*bytes) {
                Ok(set) => set,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read a descriptor set for the limits");
                    continue;
                }
            };
            for file in &set.file {
                let package = file.package();
                let prefix = if package.is_empty() {
                    String::from(".")
                } else {
                    format!(".{package}.")
                };
                for m in &file.message_type {
                    schema.add_message(&prefix, m);
                }
                for s in &file.service {
                    for m in &s.method {
                        schema.methods.insert(
                            format!("/{}{}/{}", &prefix[1..], s.name(), m.name()),
                            m.input_type().to_string(),
                        );
                    }
                }
            }
        }
        schema
    }

    fn add_message(&mut self, prefix: &str, m: &prost_types::DescriptorProto) {
        let full = format!("{prefix}{}", m.name());
        let short_name = m.name().to_string();
        let mut fields = HashMap::new();
        for f in &m.field {
            let name = f.name();
            let kind = match f.r#type() {
                Type::String => FieldKind::Text(string_bound(&full, name)),
                Type::Bytes => FieldKind::Text(if name.contains("path") {
                    Bound::Bytes(Some(PATH_BYTES))
                } else {
                    Bound::Bytes(None)
                }),
                Type::Message | Type::Group => FieldKind::Message(f.type_name().to_string()),
                Type::Double | Type::Fixed64 | Type::Sfixed64 => FieldKind::Scalar(1),
                Type::Float | Type::Fixed32 | Type::Sfixed32 => FieldKind::Scalar(5),
                _ => FieldKind::Scalar(0),
            };
            let max_items = match (full.as_str(), name) {
                (_, "owned_paths") => OWNED_PATHS,
                (".google.protobuf.Struct", _) => STRUCT_KEYS,
                (".google.protobuf.ListValue", _) => STRUCT_LIST,
                _ => LIST,
            };
            fields.insert(
                u32::try_from(f.number()).unwrap_or(0),
                Field {
                    label: format!("{short_name}.{name}"),
                    repeated: f.label() == Label::Repeated,
                    kind,
                    max_items,
                },
            );
        }
        self.messages.insert(full.clone(), fields);
        let nested_prefix = format!("{full}.");
        for n in &m.nested_type {
            self.add_message(&nested_prefix, n);
        }
    }

    /// Whether requests of `path` are checked (a method of ours).
    pub fn input_of(&self, path: &str) -> Option<&str> {
        self.methods.get(path).map(String::as_str)
    }

    /// Checks one encoded message of type `message` (`.package.Message`) against every limit.
    pub fn check(&self, message: &str, bytes: &[u8]) -> Result<(), Status> {
        self.walk(message, bytes, 1, 0)
    }

    fn walk(
        &self,
        message: &str,
        mut bytes: &[u8],
        depth: usize,
        json_depth: usize,
    ) -> Result<(), Status> {
        if depth > NESTING.value {
            return Err(over(message_name(message), NESTING, depth));
        }
        let (json, json_depth) = match message {
            ".google.protobuf.Struct" | ".google.protobuf.ListValue" => {
                (Json::Container, json_depth + 1)
            }
            _ => (Json::No, json_depth),
        };
        if json == Json::Container && json_depth > STRUCT_DEPTH.value {
            return Err(over("a Struct", STRUCT_DEPTH, json_depth));
        }
        let fields = self.messages.get(message);
        let mut counts: HashMap<u32, usize> = HashMap::new();
        while !bytes.is_empty() {
            let key = varint(&mut bytes).ok_or_else(|| malformed(message))?;
            let number = u32::try_from(key >> 3).map_err(|_| malformed(message))?;
            let wire = key & 7;
            let field = fields.and_then(|f| f.get(&number));
            let payload = match wire {
                0 => {
                    varint(&mut bytes).ok_or_else(|| malformed(message))?;
                    None
                }
                1 | 5 => {
                    let n = if wire == 1 { 8 } else { 4 };
                    if bytes.len() < n {
                        return Err(malformed(message));
                    }
                    bytes = &bytes[n..];
                    None
                }
                2 => {
                    let len = varint(&mut bytes).ok_or_else(|| malformed(message))?;
                    let len = usize::try_from(len).map_err(|_| malformed(message))?;
                    if bytes.len() < len {
                        return Err(malformed(message));
                    }
                    let (head, tail) = bytes.split_at(len);
                    bytes = tail;
                    Some(head)
                }
                _ => return Err(malformed(message)),
            };
            let Some(field) = field else {
                // Unknown fields are skipped by the decoder; their size is bounded by the
                // message limit.
                continue;
            };
            if field.repeated {
                let n = counts.entry(number).or_insert(0);
                *n += 1;
                if *n > field.max_items.value {
                    return Err(too_many(&field.label, field.max_items, *n));
                }
            }
            match field.kind {
                // A scalar in its own wire type, or a packed repeated one.
                FieldKind::Scalar(w) if w == wire || (wire == 2 && field.repeated) => {}
                FieldKind::Scalar(_) => return Err(wrong_wire(&field.label)),
                _ if wire != 2 => return Err(wrong_wire(&field.label)),
                _ => {}
            }
            let Some(payload) = payload else {
                continue;
            };
            match &field.kind {
                FieldKind::Text(bound) => check_text(&field.label, *bound, payload)?,
                FieldKind::Message(type_name) => {
                    self.walk(type_name, payload, depth + 1, json_depth)?
                }
                // A packed repeated scalar: its size is bounded by the message limit.
                FieldKind::Scalar(_) => {}
            }
        }
        Ok(())
    }
}

fn message_name(full: &str) -> &str {
    full.rsplit('.').next().unwrap_or(full)
}

fn malformed(message: &str) -> Status {
    Status::invalid_argument(format!(
        "the request is not a valid {} message (truncated or malformed protobuf)",
        message_name(message)
    ))
}

fn wrong_wire(field: &str) -> Status {
    Status::invalid_argument(format!(
        "{field} has the wrong protobuf wire type (not a valid request)"
    ))
}

/// The bound of a string field, by its name.
fn string_bound(message: &str, name: &str) -> Bound {
    match (message, name) {
        (".google.protobuf.Struct.FieldsEntry", "key") => Bound::String(STRING),
        (".google.protobuf.Value", _) => Bound::String(STRUCT_STRING),
        (_, "glob" | "owned_paths") => Bound::Glob,
        (_, "path" | "path_prefix" | "root" | "paths" | "files") => Bound::String(PATH),
        (_, "description" | "message" | "error" | "text" | "reason") => Bound::String(TEXT),
        _ => Bound::String(STRING),
    }
}

fn check_text(field: &str, bound: Bound, payload: &[u8]) -> Result<(), Status> {
    match bound {
        Bound::Bytes(None) => Ok(()),
        Bound::Bytes(Some(limit)) => {
            if payload.len() > limit.value {
                Err(over(field, limit, payload.len()))
            } else {
                Ok(())
            }
        }
        Bound::String(limit) => {
            if payload.len() > limit.value {
                return Err(over(field, limit, payload.len()));
            }
            utf8(field, payload).map(|_| ())
        }
        Bound::Glob => {
            if payload.len() > GLOB_BYTES.value {
                return Err(over(field, GLOB_BYTES, payload.len()));
            }
            check_glob(field, utf8(field, payload)?)
        }
    }
}

fn utf8<'a>(field: &str, payload: &'a [u8]) -> Result<&'a str, Status> {
    std::str::from_utf8(payload).map_err(|e| {
        Status::invalid_argument(format!(
            "{field} is not valid UTF-8 (bad byte at {}); string fields must be UTF-8",
            e.valid_up_to()
        ))
    })
}

/// Reads a protobuf varint.
fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << (7 * shift);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The layer that checks every request of our services against [`Schema`].
#[derive(Clone)]
pub struct LimitsLayer {
    schema: Arc<Schema>,
}

impl LimitsLayer {
    /// A layer over the public services' descriptors.
    pub fn new() -> Self {
        LimitsLayer {
            schema: Arc::new(Schema::new(&[super::FILE_DESCRIPTOR_SET])),
        }
    }
}

impl Default for LimitsLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for LimitsLayer {
    type Service = Limited<S>;

    fn layer(&self, inner: S) -> Limited<S> {
        Limited {
            inner,
            schema: Arc::clone(&self.schema),
        }
    }
}

/// A service whose requests are checked before they reach it.
#[derive(Clone)]
pub struct Limited<S> {
    inner: S,
    schema: Arc<Schema>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B> Service<Request<B>> for Limited<S>
where
    S: Service<Request<tonic::body::Body>, Response = Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<tower::BoxError> + Send + 'static,
{
    type Response = Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The ready service answers this call; a clone waits for the next one.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let input = self.schema.input_of(req.uri().path()).map(str::to_string);
        let Some(input) = input else {
            return Box::pin(inner.call(req.map(tonic::body::Body::new)));
        };
        let schema = Arc::clone(&self.schema);
        Box::pin(async move {
            let (parts, mut body) = req.into_parts();
            match first_message(&mut body).await {
                Ok(head) => {
                    if let Some(message) = head.message() {
                        if let Err(status) = schema.check(&input, message) {
                            tracing::debug!(
                                method = parts.uri.path(),
                                code = ?status.code(),
                                "request refused by a limit"
                            );
                            return Ok(status.into_http());
                        }
                    }
                    let body = Replay {
                        head: Some(head.buffered.freeze()),
                        rest: Some(body),
                    };
                    inner
                        .call(Request::from_parts(parts, tonic::body::Body::new(body)))
                        .await
                }
                Err(status) => Ok(status.into_http()),
            }
        })
    }
}

/// The start of a request body: its first gRPC frame, when it is whole and not compressed.
struct Head {
    buffered: BytesMut,
    complete: bool,
}

impl Head {
    /// The first frame's message, when it can be checked (compressed frames are refused by
    /// the server, which accepts no compression).
    fn message(&self) -> Option<&[u8]> {
        if !self.complete || self.buffered.len() < 5 || self.buffered[0] != 0 {
            return None;
        }
        let len = u32::from_be_bytes([
            self.buffered[1],
            self.buffered[2],
            self.buffered[3],
            self.buffered[4],
        ]) as usize;
        self.buffered.get(5..5 + len)
    }
}

/// Reads the body until its first gRPC frame is whole (or the body ends), never more than the
/// message limit.
async fn first_message<B>(body: &mut B) -> Result<Head, Status>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<tower::BoxError>,
{
    let mut buffered = BytesMut::new();
    loop {
        if buffered.len() >= 5 {
            let len =
                u32::from_be_bytes([buffered[1], buffered[2], buffered[3], buffered[4]]) as usize;
            if len > MESSAGE.value {
                return Err(Status::resource_exhausted(format!(
                    "the request message has {len} bytes; the `message` limit is {} \
                     (see README, Limits)",
                    MESSAGE.value
                )));
            }
            if buffered.len() >= 5 + len {
                return Ok(Head {
                    buffered,
                    complete: true,
                });
            }
        }
        let frame = std::future::poll_fn(|cx| Pin::new(&mut *body).poll_frame(cx)).await;
        match frame {
            None => {
                return Ok(Head {
                    buffered,
                    complete: false,
                })
            }
            Some(Err(e)) => {
                let e: tower::BoxError = e.into();
                return Err(Status::cancelled(format!(
                    "the request body failed: {}",
                    bounded_message(e.to_string())
                )));
            }
            Some(Ok(frame)) => {
                if let Ok(mut data) = frame.into_data() {
                    while data.has_remaining() {
                        let chunk = data.chunk();
                        buffered.extend_from_slice(chunk);
                        let n = chunk.len();
                        data.advance(n);
                    }
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A body that yields the bytes already read, then the rest of the original body.
    struct Replay<B> {
        head: Option<Bytes>,
        #[pin]
        rest: Option<B>,
    }
}

impl<B> Body for Replay<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        if let Some(head) = this.head.take() {
            if !head.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(head))));
            }
        }
        match this.rest.as_pin_mut() {
            Some(rest) => rest.poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.head.as_ref().is_none_or(Bytes::is_empty)
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn schema() -> Schema {
        Schema::new(&[crate::rpc::FILE_DESCRIPTOR_SET])
    }

    #[test]
    fn short_quotes_a_prefix_only() {
        assert_eq!(short("abc"), "\"abc\"");
        let long = "x".repeat(12_000);
        let s = short(&long);
        assert!(s.len() < 100, "{s}");
        assert!(s.contains("12000 bytes"), "{s}");
        // Never cuts inside a character.
        let wide = "é".repeat(100);
        assert!(short(&wide).contains("200 bytes"));
        assert!(short_bytes(&[0xff; 10_000]).contains("10000 bytes"));
        let m = bounded_message("é".repeat(5000));
        assert!(m.len() < MAX_STATUS_MESSAGE + 64);
    }

    #[test]
    fn the_readme_documents_every_limit() {
        let readme = include_str!("../../README.md");
        for l in ALL {
            assert!(
                readme.contains(&format!("| `{}` |", l.name)),
                "README's Limits table lacks `{}`",
                l.name
            );
        }
    }

    #[test]
    fn globs_are_bounded_in_size_and_complexity() {
        assert!(check_glob("g", "src/**/*.rs").is_ok());
        assert!(check_glob("g", "{a,b,c}/*.{rs,py}").is_ok());
        let e = check_glob("ListFilesRequest.glob", &"*".repeat(90_000)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("`glob` limit"), "{}", e.message());
        assert!(e.message().contains("ListFilesRequest.glob"));
        let e = check_glob("g", &"*a".repeat(65)).unwrap_err();
        assert!(e.message().contains("glob_wildcards"), "{}", e.message());
        let e = check_glob("g", &"{a,b}".repeat(17)).unwrap_err();
        assert!(e.message().contains("glob_alternations"), "{}", e.message());
        let e = check_glob("g", &"[ab]".repeat(33)).unwrap_err();
        assert!(e.message().contains("glob_classes"), "{}", e.message());
        // Escaped wildcards are literal.
        assert!(check_glob("g", &"\\*".repeat(100)).is_ok());
    }

    #[test]
    fn every_method_of_ours_has_a_known_input() {
        let s = schema();
        for m in crate::rpc::served_methods()
            .iter()
            .filter(|m| m.starts_with("/workflowdb.v1."))
        {
            let input = s.input_of(m).unwrap_or_else(|| panic!("{m}"));
            assert!(s.messages.contains_key(input), "{input}");
        }
        assert!(s.messages.contains_key(".google.protobuf.Struct"));
        assert!(s.messages.contains_key(".google.protobuf.Value"));
    }

    #[test]
    fn the_walker_checks_strings_lists_and_structs() {
        use crate::proto;
        let s = schema();
        let ok = proto::ListFilesRequest {
            glob: "*.rs".into(),
            ..Default::default()
        };
        assert!(s
            .check(".workflowdb.v1.ListFilesRequest", &ok.encode_to_vec())
            .is_ok());
        let long = proto::GetAgentRequest {
            name: "a".repeat(20_000),
        };
        let e = s
            .check(".workflowdb.v1.GetAgentRequest", &long.encode_to_vec())
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("GetAgentRequest.name"),
            "{}",
            e.message()
        );
        assert!(e.message().len() < 200);

        let agent = proto::Agent {
            name: "a".into(),
            owned_paths: vec!["src/*".into(); 1001],
            ..Default::default()
        };
        let req = proto::RegisterAgentRequest {
            agent: Some(agent),
            ..Default::default()
        };
        let e = s
            .check(".workflowdb.v1.RegisterAgentRequest", &req.encode_to_vec())
            .unwrap_err();
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert!(e.message().contains("owned_paths"), "{}", e.message());

        // A Struct nested deeper than the limit.
        let mut v = prost_types::Value {
            kind: Some(prost_types::value::Kind::StringValue("x".into())),
        };
        for _ in 0..40 {
            v = prost_types::Value {
                kind: Some(prost_types::value::Kind::ListValue(
                    prost_types::ListValue { values: vec![v] },
                )),
            };
        }
        let mut info = prost_types::Struct::default();
        info.fields.insert("k".into(), v);
        let req = proto::RegisterAgentRequest {
            name: "a".into(),
            agent_info: Some(info),
            ..Default::default()
        };
        let e = s
            .check(".workflowdb.v1.RegisterAgentRequest", &req.encode_to_vec())
            .unwrap_err();
        assert!(e.message().contains("struct_depth"), "{}", e.message());

        // Invalid UTF-8 in a string field, and a truncated message.
        let mut raw = vec![0x0a, 3, b'a', 0xff, b'b'];
        let e = s.check(".workflowdb.v1.GetAgentRequest", &raw).unwrap_err();
        assert!(e.message().contains("UTF-8"), "{}", e.message());
        raw.truncate(3);
        let e = s.check(".workflowdb.v1.GetAgentRequest", &raw).unwrap_err();
        assert!(e.message().contains("not a valid"), "{}", e.message());
    }
}
