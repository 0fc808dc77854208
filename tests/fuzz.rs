//! A seeded fuzz test of every method of every service (issue 12): requests are encoded by
//! hand from the embedded descriptors, so they can hold what no typed client sends (invalid
//! UTF-8 in string fields, wrong wire types, truncated messages) besides huge and deep strings,
//! long lists, big maps, deep Structs, NaN and infinities, path escapes, absolute paths and
//! NUL. It fails on any panic in the daemon's log, any INTERNAL or UNKNOWN status other than a
//! decode error, any status outside the documented set, the daemon dying, or its resident
//! memory above a bound. `WFDB_FUZZ_SEED` picks another seed; `WFDB_FUZZ_ROUNDS` more rounds.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use common::{start, write_old, Daemon, Dirs};
use prost::Message;
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{DescriptorProto, FileDescriptorSet};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Code;

/// Resident memory the daemon may reach while fuzzed.
const RSS_LIMIT_BYTES: u64 = 1536 * 1024 * 1024;

/// The statuses a hostile request may get (README: every error a client sees is one of these).
const ALLOWED: &[Code] = &[
    Code::Ok,
    Code::InvalidArgument,
    Code::NotFound,
    Code::AlreadyExists,
    Code::FailedPrecondition,
    Code::ResourceExhausted,
    Code::OutOfRange,
    Code::DeadlineExceeded,
];

/// A small deterministic generator (splitmix64), with a byte budget for big strings so one
/// request stays a few MiB.
struct Rng(u64, usize);

/// Bytes of big strings one request may hold.
const BUDGET: usize = 3 << 20;

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

/// Raw protobuf bytes in and out, so requests can be anything.
#[derive(Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// One method to call.
struct Method {
    path: String,
    input: String,
    server_streaming: bool,
}

/// Every message by full name (`.package.Message`) and every method of the sets.
fn schema(sets: &[&[u8]]) -> (HashMap<String, DescriptorProto>, Vec<Method>) {
    fn add(prefix: &str, m: &DescriptorProto, out: &mut HashMap<String, DescriptorProto>) {
        let full = format!("{prefix}{}", m.name());
        for n in &m.nested_type {
            add(&format!("{full}."), n, out);
        }
        out.insert(full, m.clone());
    }
    let mut messages = HashMap::new();
    let mut methods = Vec::new();
    for bytes in sets {
        let set = FileDescriptorSet::decode(*bytes).unwrap();
        for file in &set.file {
            let prefix = if file.package().is_empty() {
                ".".to_string()
            } else {
                format!(".{}.", file.package())
            };
            for m in &file.message_type {
                add(&prefix, m, &mut messages);
            }
            for s in &file.service {
                for m in &s.method {
                    methods.push(Method {
                        path: format!("/{}{}/{}", &prefix[1..], s.name(), m.name()),
                        input: m.input_type().to_string(),
                        server_streaming: m.server_streaming(),
                    });
                }
            }
        }
    }
    (messages, methods)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(out: &mut Vec<u8>, number: i32, wire: u64) {
    varint(out, ((number as u64) << 3) | wire);
}

fn delimited(out: &mut Vec<u8>, number: i32, payload: &[u8]) {
    key(out, number, 2);
    varint(out, payload.len() as u64);
    out.extend_from_slice(payload);
}

/// A hostile string (as raw bytes: it need not be UTF-8).
fn hostile_text(rng: &mut Rng, method: &str) -> Vec<u8> {
    let watch = method.ends_with("Admin/Watch");
    let text = hostile_text_unbudgeted(rng, watch);
    if text.len() > 64 && text.len() > rng.1 {
        return b"over-budget".to_vec();
    }
    rng.1 = rng.1.saturating_sub(text.len());
    text
}

fn hostile_text_unbudgeted(rng: &mut Rng, watch: bool) -> Vec<u8> {
    match rng.below(18) {
        0 => Vec::new(),
        1 => b"x".to_vec(),
        2 => vec![b'a'; 1 << 20],
        3 => vec![b'*'; 90_000],
        4 => "*".repeat(60).into_bytes(),
        5 => b"../../../../etc/passwd".to_vec(),
        // Watch must not be sent folders that exist: a fuzzed daemon watching `/` would
        // catalogue the machine, which is what Watch is for, not a bug.
        6 if watch => b"/nonexistent-wfdb-fuzz/x".to_vec(),
        6 => b"/etc/passwd".to_vec(),
        7 => b"a\0b".to_vec(),
        8 => vec![0xff, 0xfe, b'a', 0xc3],
        9 => "é🦀\u{202e}".repeat(1000).into_bytes(),
        10 => "{a,".repeat(3000).into_bytes(),
        11 => "[".repeat(20_000).into_bytes(),
        12 => "src/**/*.{rs,py}".as_bytes().to_vec(),
        13 => b"NaN".to_vec(),
        14 => "n".repeat(12_000).into_bytes(),
        15 if watch => b"relative/..".to_vec(),
        15 => b"/".to_vec(),
        16 => b"README.md".to_vec(),
        _ => format!("f{}", rng.below(1000)).into_bytes(),
    }
}

/// A hostile `google.protobuf.Value`: deep, wide, or odd numbers.
fn hostile_value(rng: &mut Rng, depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    match rng.below(8) {
        0 => {
            key(&mut out, 2, 1);
            let f = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 1e308, -0.0][rng.below(5)];
            out.extend_from_slice(&f.to_le_bytes());
        }
        1 if depth > 0 => delimited(&mut out, 3, &hostile_text(rng, "")),
        2 if depth > 0 => delimited(&mut out, 5, &hostile_struct(rng, depth - 1)),
        3 if depth > 0 => {
            let mut list = Vec::new();
            if rng.chance(4) {
                // Long and flat: 20,000 numbers.
                let one = hostile_value(rng, 0);
                for _ in 0..20_000 {
                    delimited(&mut list, 1, &one);
                }
            } else {
                for _ in 0..2 {
                    delimited(&mut list, 1, &hostile_value(rng, depth - 1));
                }
            }
            delimited(&mut out, 6, &list);
        }
        4 => {
            key(&mut out, 4, 0);
            varint(&mut out, 2);
        }
        _ => {
            key(&mut out, 1, 0);
            varint(&mut out, 0);
        }
    }
    out
}

/// A Struct nested `depth` deep, 40 when asked for a deep one, or with thousands of keys.
fn hostile_struct(rng: &mut Rng, depth: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let keys = if rng.chance(6) { 3000 } else { 2 };
    for i in 0..keys.min(if depth == 0 { 2 } else { keys }) {
        let mut entry = Vec::new();
        delimited(&mut entry, 1, format!("k{i}").as_bytes());
        let value = if keys > 2 {
            // Wide and flat.
            hostile_value(rng, 0)
        } else if rng.chance(3) && depth > 0 {
            let mut v = Vec::new();
            delimited(&mut v, 5, &hostile_struct(rng, depth - 1));
            v
        } else {
            hostile_value(rng, depth.min(2))
        };
        delimited(&mut entry, 2, &value);
        delimited(&mut out, 1, &entry);
    }
    out
}

/// A hostile message of type `name`.
fn hostile_message(
    rng: &mut Rng,
    messages: &HashMap<String, DescriptorProto>,
    name: &str,
    method: &str,
    depth: usize,
) -> Vec<u8> {
    if name == ".google.protobuf.Struct" {
        let depth = if rng.chance(3) { 40 } else { 4 };
        return hostile_struct(rng, depth);
    }
    if name == ".google.protobuf.Value" {
        return hostile_value(rng, 4);
    }
    let Some(m) = messages.get(name) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in &m.field {
        if rng.chance(3) {
            continue;
        }
        let repeated = f.label() == Label::Repeated;
        let count = if repeated {
            match rng.below(6) {
                0 => 20_000,
                1 => 1001,
                _ => 1 + rng.below(3),
            }
        } else {
            1
        };
        for _ in 0..count {
            let n = f.number();
            match f.r#type() {
                Type::String | Type::Bytes => {
                    let text = if count > 100 {
                        format!("src/{}*.py", rng.below(100)).into_bytes()
                    } else {
                        hostile_text(rng, method)
                    };
                    delimited(&mut out, n, &text);
                }
                Type::Message => {
                    if depth == 0 || count > 100 {
                        delimited(&mut out, n, &[]);
                    } else {
                        let inner =
                            hostile_message(rng, messages, f.type_name(), method, depth - 1);
                        delimited(&mut out, n, &inner);
                    }
                }
                Type::Double => {
                    key(&mut out, n, 1);
                    let v = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e308][rng.below(5)];
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Type::Float => {
                    key(&mut out, n, 5);
                    let v = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -1.0][rng.below(4)];
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Type::Fixed64 | Type::Sfixed64 => {
                    key(&mut out, n, 1);
                    out.extend_from_slice(&rng.next().to_le_bytes());
                }
                Type::Fixed32 | Type::Sfixed32 => {
                    key(&mut out, n, 5);
                    out.extend_from_slice(&(rng.next() as u32).to_le_bytes());
                }
                _ => {
                    key(&mut out, n, 0);
                    let v = [0, 1, 2, u64::MAX, i64::MIN as u64, 1 << 40, 50_000][rng.below(7)];
                    varint(&mut out, v);
                }
            }
        }
    }
    // Sometimes a broken message: truncated, or a field in the wrong wire type.
    match rng.below(12) {
        0 if !out.is_empty() => {
            let cut = rng.below(out.len());
            out.truncate(cut);
        }
        1 => {
            key(&mut out, 1, 0);
            varint(&mut out, 7);
        }
        _ => {}
    }
    out
}

/// Whether the daemon still runs (an exited child stays a zombie until waited for).
fn alive(d: &Daemon) -> bool {
    std::fs::read_to_string(format!("/proc/{}/stat", d.child.id()))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_string()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

fn rss_bytes(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Sends one raw request and returns its final status (streams are read for a while).
async fn call(ch: &tonic::transport::Channel, m: &Method, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(ch.clone())
        .max_decoding_message_size(usize::MAX)
        .max_encoding_message_size(usize::MAX);
    if let Err(e) = grpc.ready().await {
        return tonic::Status::unavailable(format!("not ready: {e}"));
    }
    let path: http::uri::PathAndQuery = m.path.parse().unwrap();
    let mut req = tonic::Request::new(body);
    req.set_timeout(Duration::from_secs(20));
    if m.server_streaming {
        let mut stream = match grpc.server_streaming(req, path, Raw).await {
            Ok(r) => r.into_inner(),
            Err(s) => return s,
        };
        // Read a little of a stream (a subscription never ends), then let it go.
        let deadline = tokio::time::Instant::now() + Duration::from_millis(300);
        loop {
            match tokio::time::timeout_at(deadline, stream.message()).await {
                Err(_) | Ok(Ok(None)) => return tonic::Status::ok(""),
                Ok(Ok(Some(_))) => continue,
                Ok(Err(s)) => return s,
            }
        }
    }
    match grpc.unary(req, path, Raw).await {
        Ok(_) => tonic::Status::ok(""),
        Err(s) => s,
    }
}

fn acceptable(s: &tonic::Status) -> bool {
    if ALLOWED.contains(&s.code()) {
        return true;
    }
    // A message the decoder cannot read (only requests to health and reflection get here:
    // ours are refused with INVALID_ARGUMENT by the limits first).
    matches!(s.code(), Code::Internal | Code::Unknown) && s.message().contains("decode")
}

#[tokio::test]
async fn every_method_survives_hostile_requests() {
    let seed: u64 = std::env::var("WFDB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234);
    let rounds: usize = std::env::var("WFDB_FUZZ_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let dirs = Dirs::new();
    let root = dirs.tmp.path().join("repo");
    for i in 0..50 {
        write_old(
            &root.join(format!("src/m{}/f{i}.py", i % 5)),
            format!("import os\nfrom src.m0 import f{}\n", i / 2).as_bytes(),
        );
    }
    write_old(&root.join("README.md"), b"# repo\n");
    let d = start(&dirs, &[root.as_os_str()]).await;
    let (messages, methods) = schema(&[
        workflowdb::rpc::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
    ]);
    assert!(methods.len() > 50, "{} methods", methods.len());
    // Every method the daemon serves is fuzzed (reflection is exercised by its own tests).
    for served in workflowdb::rpc::served_methods() {
        assert!(
            served.contains("reflection") || methods.iter().any(|m| m.path == served),
            "{served} is not fuzzed"
        );
    }
    let ch = d.channel().await;
    let mut rng = Rng(seed, BUDGET);
    let started = Instant::now();
    let mut calls = 0usize;
    let mut by_code: HashMap<Code, usize> = HashMap::new();
    let mut peak = 0u64;
    let mut decode_errors = std::collections::BTreeSet::new();
    for round in 0..rounds {
        for m in &methods {
            rng.1 = BUDGET;
            let body = hostile_message(&mut rng, &messages, &m.input, &m.path, 3);
            let size = body.len();
            let status = call(&ch, m, body).await;
            calls += 1;
            *by_code.entry(status.code()).or_default() += 1;
            if status.code() == Code::Internal {
                decode_errors.insert(m.path.clone());
            }
            assert!(
                acceptable(&status),
                "seed {seed} round {round}: {} ({size} bytes) answered {:?}: {}",
                m.path,
                status.code(),
                &status.message()[..status.message().len().min(300)]
            );
            assert!(
                status.message().len() <= 2048,
                "{}: a {}-byte status message",
                m.path,
                status.message().len()
            );
            assert!(
                alive(&d),
                "seed {seed}: the daemon died after {}:\n{}",
                m.path,
                d.log_text()
            );
            let rss = rss_bytes(&d);
            peak = peak.max(rss);
            assert!(
                rss < RSS_LIMIT_BYTES,
                "seed {seed}: {} left the daemon at {} MiB",
                m.path,
                rss >> 20
            );
        }
    }
    // Still answering, and never panicked.
    common::stats(&d).await;
    let log = d.log_text();
    assert!(
        !log.contains("panicked"),
        "seed {seed}: the daemon logged a panic:\n{}",
        log.lines()
            .filter(|l| l.contains("panicked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    eprintln!(
        "fuzz: seed {seed}, {calls} calls in {:?}, peak RSS {} MiB, codes {by_code:?}, \
         decode errors from {decode_errors:?}",
        started.elapsed(),
        peak >> 20
    );
}
