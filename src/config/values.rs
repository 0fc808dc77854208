//! The kinds of values a setting can hold, parsed the same way from flags, the environment and
//! the configuration file, and shown the same way by `wfdb config show`.

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::access::{LocalGrant, LocalPrincipal, Scope, Scopes, TokenGrant};

/// What a setting holds, with the bounds its values must respect.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// One path (`~/` and, in the file, paths relative to the file's folder are resolved).
    Path,
    /// A list of paths.
    Paths,
    /// A list of strings.
    Strings,
    /// An IP address and port.
    Addr,
    /// A whole number in `min..=max`.
    Int { min: u64, max: u64 },
    /// A duration in `min..=max`.
    Duration { min: Duration, max: Duration },
    /// A duration, or `forever`.
    Retention,
    /// A log format name.
    LogFormat,
    /// A log filter in `RUST_LOG` syntax.
    LogFilter,
    /// Scopes of other local users: an array of `{uid = N, scopes = [...]}` or
    /// `{gid = N, scopes = [...]}` tables (file only).
    LocalUsers,
    /// TCP tokens: an array of `{name = "...", file = "...", scopes = [...]}` tables (file only).
    Tokens,
}

/// How the daemon writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// The journal's native fields under systemd, else human-readable.
    Auto,
    /// Human-readable lines (coloured on a terminal).
    Human,
    /// One JSON object per line.
    Json,
    /// Native journal entries (fields such as PRIORITY, CODE_FILE, and our own).
    Journald,
}

impl LogFormat {
    /// Every name, for messages and completions.
    pub const NAMES: [&'static str; 4] = ["auto", "human", "json", "journald"];

    /// The format's name.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Auto => "auto",
            LogFormat::Human => "human",
            LogFormat::Json => "json",
            LogFormat::Journald => "journald",
        }
    }

    fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "auto" => Some(LogFormat::Auto),
            "human" => Some(LogFormat::Human),
            "json" => Some(LogFormat::Json),
            "journald" => Some(LogFormat::Journald),
            _ => None,
        }
    }
}

/// A setting's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (an optional setting left out).
    Unset,
    Path(PathBuf),
    Paths(Vec<PathBuf>),
    Strings(Vec<String>),
    Addr(SocketAddr),
    Int(u64),
    Duration(Duration),
    /// A retention: `None` keeps forever.
    Retention(Option<Duration>),
    LogFormat(LogFormat),
    Text(String),
    LocalUsers(Vec<LocalGrant>),
    Tokens(Vec<TokenGrant>),
}

impl Value {
    /// The value as `config show` prints it.
    pub fn render(&self) -> String {
        match self {
            Value::Unset => "-".into(),
            Value::Paths(v) if v.is_empty() => "-".into(),
            Value::Strings(v) if v.is_empty() => "-".into(),
            Value::LocalUsers(v) if v.is_empty() => "-".into(),
            Value::Tokens(v) if v.is_empty() => "-".into(),
            Value::LocalUsers(v) => join_shown(v),
            Value::Tokens(v) => join_shown(v),
            Value::Path(p) => p.display().to_string(),
            Value::Paths(ps) => ps
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
            Value::Strings(v) => v.join(", "),
            Value::Addr(a) => a.to_string(),
            Value::Int(n) => n.to_string(),
            Value::Duration(d) => format_duration(*d),
            Value::Retention(None) => "forever".into(),
            Value::Retention(Some(d)) => format_duration(*d),
            Value::LogFormat(f) => f.name().into(),
            Value::Text(s) => s.clone(),
        }
    }

    /// The value as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            Value::Unset | Value::Retention(None) => serde_json::Value::Null,
            Value::Path(p) => json!(p.to_string_lossy()),
            Value::Paths(ps) => json!(ps.iter().map(|p| p.to_string_lossy()).collect::<Vec<_>>()),
            Value::Strings(v) => json!(v),
            Value::Addr(a) => json!(a.to_string()),
            Value::Int(n) => json!(n),
            Value::Duration(d) | Value::Retention(Some(d)) => json!(format_duration(*d)),
            Value::LogFormat(f) => json!(f.name()),
            Value::Text(s) => json!(s),
            Value::LocalUsers(v) => json!(v
                .iter()
                .map(|g| {
                    let (key, id) = match g.who {
                        LocalPrincipal::Uid(u) => ("uid", u),
                        LocalPrincipal::Gid(x) => ("gid", x),
                    };
                    json!({ key: id, "scopes": g.scopes.names() })
                })
                .collect::<Vec<_>>()),
            Value::Tokens(v) => json!(v
                .iter()
                .map(|t| json!({
                    "name": t.name,
                    "file": t.file.to_string_lossy(),
                    "scopes": t.scopes.names(),
                }))
                .collect::<Vec<_>>()),
        }
    }
}

fn join_shown<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(T::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where relative paths and `~/` in a value are resolved.
pub struct PathBase<'a> {
    /// The folder relative paths are taken from.
    pub dir: &'a Path,
    /// The home folder, for `~/`.
    pub home: Option<&'a Path>,
}

impl PathBase<'_> {
    /// Resolves a path as bytes: Linux paths need not be UTF-8.
    fn resolve(&self, s: &OsStr) -> Result<PathBuf, String> {
        let bytes = s.as_bytes();
        if bytes.is_empty() {
            return Err("expected a path, got an empty string".into());
        }
        if bytes.contains(&0) {
            return Err("a path cannot contain NUL".into());
        }
        if bytes == b"~" || bytes.starts_with(b"~/") {
            let Some(home) = self.home else {
                return Err(format!(
                    "cannot expand `{}`: HOME is not set",
                    s.to_string_lossy()
                ));
            };
            let rest = bytes[1..].strip_prefix(b"/").unwrap_or_default();
            return Ok(home.join(OsStr::from_bytes(rest)));
        }
        Ok(self.dir.join(s))
    }
}

/// Parses an environment value, which may be any bytes: paths are taken as they are,
/// everything else must be UTF-8.
pub fn parse_os(kind: Kind, s: &OsStr, base: &PathBase<'_>) -> Result<Value, String> {
    match kind {
        Kind::Path => base.resolve(s).map(Value::Path),
        Kind::Paths => s
            .as_bytes()
            .split(|b| *b == b':')
            .filter(|p| !p.is_empty())
            .map(|p| base.resolve(OsStr::from_bytes(p)))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Paths),
        _ => match s.to_str() {
            Some(text) => parse_str(kind, text, base),
            None => Err("is not valid UTF-8".into()),
        },
    }
}

/// Parses a flag or environment value (lists are comma-separated; paths colon-separated).
pub fn parse_str(kind: Kind, s: &str, base: &PathBase<'_>) -> Result<Value, String> {
    match kind {
        Kind::Path | Kind::Paths => parse_os(kind, OsStr::new(s), base),
        Kind::Strings => Ok(Value::Strings(
            s.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(String::from)
                .collect(),
        )),
        Kind::Addr => parse_addr(s),
        Kind::Int { min, max } => {
            let n: u64 = s
                .trim()
                .parse()
                .map_err(|_| format!("expected a whole number, got `{s}`"))?;
            check_int(n, min, max)
        }
        Kind::Duration { min, max } => check_duration(parse_duration(s)?, min, max),
        Kind::Retention => parse_retention(s),
        Kind::LogFormat => parse_log_format(s),
        Kind::LogFilter => parse_log_filter(s),
        Kind::LocalUsers | Kind::Tokens => Err(
            "can only be set in the configuration file (access rules live in one reviewed place)"
                .into(),
        ),
    }
}

/// Parses a value of the configuration file.
pub fn parse_toml(
    kind: Kind,
    v: &toml::de::DeValue<'_>,
    base: &PathBase<'_>,
) -> Result<Value, String> {
    use toml::de::DeValue;
    let got = v.type_str();
    match (kind, v) {
        (Kind::Path, DeValue::String(s)) => base.resolve(OsStr::new(s.as_ref())).map(Value::Path),
        (Kind::Paths, DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) => base.resolve(OsStr::new(s.as_ref())),
                other => Err(format!(
                    "expected an array of path strings, found a {} in it",
                    other.type_str()
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Paths),
        (Kind::Strings, DeValue::Array(items)) => items
            .iter()
            .map(|item| match item.get_ref() {
                DeValue::String(s) if !s.is_empty() => Ok(s.to_string()),
                DeValue::String(_) => Err("an empty string is not allowed in this list".into()),
                other => Err(format!(
                    "expected an array of strings, found a {} in it",
                    other.type_str()
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Strings),
        (Kind::Addr, DeValue::String(s)) => parse_addr(s),
        (Kind::Int { min, max }, DeValue::Integer(i)) => {
            let n = i64::from_str_radix(i.as_str(), i.radix())
                .map_err(|_| format!("`{}` is out of range", i.as_str()))?;
            let n = u64::try_from(n).map_err(|_| format!("must not be negative, got {n}"))?;
            check_int(n, min, max)
        }
        (Kind::Duration { min, max }, DeValue::String(s)) => {
            check_duration(parse_duration(s)?, min, max)
        }
        (Kind::Duration { min, max }, DeValue::Integer(_) | DeValue::Float(_)) => {
            check_duration(seconds_of(v)?, min, max)
        }
        (Kind::Retention, DeValue::String(s)) => parse_retention(s),
        (Kind::Retention, DeValue::Integer(_) | DeValue::Float(_)) => {
            let d = seconds_of(v)?;
            Ok(Value::Retention((!d.is_zero()).then_some(d)))
        }
        (Kind::LogFormat, DeValue::String(s)) => parse_log_format(s),
        (Kind::LogFilter, DeValue::String(s)) => parse_log_filter(s),
        (Kind::LocalUsers, DeValue::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                parse_local_grant(item.get_ref()).map_err(|e| format!("entry {}: {e}", i + 1))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Value::LocalUsers),
        (Kind::Tokens, DeValue::Array(items)) => {
            let mut tokens: Vec<TokenGrant> = Vec::new();
            for (i, item) in items.iter().enumerate() {
                let t = parse_token_grant(item.get_ref(), base)
                    .map_err(|e| format!("entry {}: {e}", i + 1))?;
                if tokens.iter().any(|o| o.name == t.name) {
                    return Err(format!(
                        "entry {}: the name `{}` is used twice",
                        i + 1,
                        t.name
                    ));
                }
                tokens.push(t);
            }
            Ok(Value::Tokens(tokens))
        }
        (kind, _) => Err(format!("expected {}, found a {got}", describe(kind))),
    }
}

/// What a kind of value looks like, for messages.
pub fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Path => "a path string",
        Kind::Paths => "an array of path strings",
        Kind::Strings => "an array of strings",
        Kind::Addr => "an address string like \"127.0.0.1:9464\"",
        Kind::Int { .. } => "a whole number",
        Kind::Duration { .. } => "a duration like \"250ms\", \"2s\", \"5m\" or a number of seconds",
        Kind::Retention => "a duration like \"30d\" or \"forever\"",
        Kind::LogFormat => "one of \"auto\", \"human\", \"json\", \"journald\"",
        Kind::LogFilter => "a log filter string like \"info\" or \"wfdb=debug,info\"",
        Kind::LocalUsers => {
            "an array of tables like [{ uid = 1001, scopes = [\"read\"] }, { gid = 100, scopes = [\"read\", \"write\"] }]"
        }
        Kind::Tokens => {
            "an array of tables like [{ name = \"ci\", file = \"ci.token\", scopes = [\"read\"] }]"
        }
    }
}

/// The fields of an inline or `[[...]]` table, refusing any not in `known`.
fn table_fields<'v>(
    v: &'v toml::de::DeValue<'_>,
    known: &[&str],
) -> Result<Vec<(String, &'v toml::de::DeValue<'v>)>, String> {
    use toml::de::DeValue;
    let DeValue::Table(table) = v else {
        return Err(format!("expected a table, found a {}", v.type_str()));
    };
    let mut out = Vec::new();
    for (k, v) in table.iter() {
        let name = k.get_ref().to_string();
        if !known.contains(&name.as_str()) {
            return Err(format!(
                "unknown field {} (known: {})",
                crate::quote::short(&name),
                known.join(", ")
            ));
        }
        out.push((name, v.get_ref()));
    }
    Ok(out)
}

fn parse_scopes(v: &toml::de::DeValue<'_>) -> Result<Scopes, String> {
    use toml::de::DeValue;
    let known = || {
        Scope::ALL
            .iter()
            .map(|s| format!("\"{}\"", s.name()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let DeValue::Array(items) = v else {
        return Err(format!(
            "`scopes` must be an array of scope names ({}), found a {}",
            known(),
            v.type_str()
        ));
    };
    let mut scopes = Scopes::NONE;
    for item in items.iter() {
        match item.get_ref() {
            DeValue::String(s) => match Scope::parse(s) {
                Some(scope) => scopes = scopes.with(scope),
                None => {
                    return Err(format!(
                        "unknown scope {} (known: {})",
                        crate::quote::short(s),
                        known()
                    ));
                }
            },
            other => {
                return Err(format!(
                    "`scopes` must hold scope names, found a {}",
                    other.type_str()
                ))
            }
        }
    }
    if scopes.is_empty() {
        return Err(format!("`scopes` must name at least one of {}", known()));
    }
    Ok(scopes)
}

fn parse_id(name: &str, v: &toml::de::DeValue<'_>) -> Result<u32, String> {
    use toml::de::DeValue;
    let DeValue::Integer(i) = v else {
        return Err(format!(
            "`{name}` must be a whole number, found a {}",
            v.type_str()
        ));
    };
    i64::from_str_radix(i.as_str(), i.radix())
        .ok()
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "`{name}` must be in 0..=4294967295, got {}",
                crate::quote::short(i.as_str())
            )
        })
}

fn parse_local_grant(v: &toml::de::DeValue<'_>) -> Result<LocalGrant, String> {
    let mut who = None;
    let mut scopes = None;
    for (name, value) in table_fields(v, &["uid", "gid", "scopes"])? {
        match name.as_str() {
            "scopes" => scopes = Some(parse_scopes(value)?),
            "uid" | "gid" => {
                if who.is_some() {
                    return Err("give either `uid` or `gid`, not both".into());
                }
                let id = parse_id(&name, value)?;
                who = Some(if name == "uid" {
                    LocalPrincipal::Uid(id)
                } else {
                    LocalPrincipal::Gid(id)
                });
            }
            _ => {}
        }
    }
    Ok(LocalGrant {
        who: who.ok_or("needs a `uid` or a `gid`")?,
        scopes: scopes.ok_or("needs `scopes`")?,
    })
}

fn parse_token_grant(v: &toml::de::DeValue<'_>, base: &PathBase<'_>) -> Result<TokenGrant, String> {
    use toml::de::DeValue;
    let (mut name, mut file, mut scopes) = (None, None, None);
    for (field, value) in table_fields(v, &["name", "file", "scopes"])? {
        match (field.as_str(), value) {
            ("scopes", _) => scopes = Some(parse_scopes(value)?),
            ("name", DeValue::String(s)) => {
                let ok = !s.is_empty()
                    && s.len() <= 64
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    return Err("`name` must be 1 to 64 letters, digits, `-`, `_` or `.`".into());
                }
                name = Some(s.to_string());
            }
            ("file", DeValue::String(s)) => file = Some(base.resolve(OsStr::new(s.as_ref()))?),
            (field, other) => {
                return Err(format!(
                    "`{field}` must be a string, found a {}",
                    other.type_str()
                ))
            }
        }
    }
    Ok(TokenGrant {
        name: name.ok_or("needs a `name`")?,
        file: file.ok_or("needs a `file` holding the secret (never the secret itself)")?,
        scopes: scopes.ok_or("needs `scopes`")?,
    })
}

fn seconds_of(v: &toml::de::DeValue<'_>) -> Result<Duration, String> {
    use toml::de::DeValue;
    let secs = match v {
        DeValue::Integer(i) => i64::from_str_radix(i.as_str(), i.radix())
            .map_err(|_| format!("`{}` is out of range", i.as_str()))?
            as f64,
        DeValue::Float(f) => f
            .as_str()
            .replace('_', "")
            .parse::<f64>()
            .map_err(|_| format!("`{}` is not a usable number", f.as_str()))?,
        other => return Err(format!("expected a number, found a {}", other.type_str())),
    };
    duration_from_secs(secs)
}

fn duration_from_secs(secs: f64) -> Result<Duration, String> {
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!(
            "a duration must be a positive number of seconds, got {secs}"
        ));
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{secs} seconds is out of range"))
}

/// Parses `250ms`, `2s`, `1.5m`, `3h`, `7d` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        format!("expected a duration like \"250ms\", \"2s\", \"5m\", \"7d\" or a number of seconds, got `{s}`")
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let scale = match unit.trim() {
        "" | "s" | "sec" | "secs" => 1.0,
        "ms" => 0.001,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        "d" => 86_400.0,
        _ => return Err(bad()),
    };
    duration_from_secs(n * scale)
}

/// Shows a duration in the largest unit that keeps it whole.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if d.subsec_nanos() % 1_000_000 != 0 {
        return format!("{}s", d.as_secs_f64());
    }
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
    ] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

fn parse_retention(s: &str) -> Result<Value, String> {
    match s.trim() {
        "forever" | "never" | "0" => Ok(Value::Retention(None)),
        other => parse_duration(other).map(|d| Value::Retention(Some(d))),
    }
}

fn parse_addr(s: &str) -> Result<Value, String> {
    s.trim().parse::<SocketAddr>().map(Value::Addr).map_err(|_| {
        format!("expected an IP address and port like \"127.0.0.1:9464\" or \"[::1]:9464\", got `{s}`")
    })
}

fn parse_log_format(s: &str) -> Result<Value, String> {
    LogFormat::parse(s.trim())
        .map(Value::LogFormat)
        .ok_or_else(|| {
            format!(
                "expected one of {}, got `{s}`",
                LogFormat::NAMES.map(|n| format!("\"{n}\"")).join(", ")
            )
        })
}

fn parse_log_filter(s: &str) -> Result<Value, String> {
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map(|_| Value::Text(s.to_string()))
        .map_err(|e| format!("not a valid log filter (`{s}`): {e}"))
}

fn check_int(n: u64, min: u64, max: u64) -> Result<Value, String> {
    if n < min || n > max {
        return Err(format!("must be between {min} and {max}, got {n}"));
    }
    Ok(Value::Int(n))
}

fn check_duration(d: Duration, min: Duration, max: Duration) -> Result<Value, String> {
    if d < min || d > max {
        return Err(format!(
            "must be between {} and {}, got {}",
            format_duration(min),
            format_duration(max),
            format_duration(d)
        ));
    }
    Ok(Value::Duration(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> PathBase<'static> {
        PathBase {
            dir: Path::new("/etc/wfdb"),
            home: Some(Path::new("/home/a")),
        }
    }

    #[test]
    fn durations_parse_in_every_unit_and_show_in_the_largest_whole_one() {
        for (s, d) in [
            ("250ms", Duration::from_millis(250)),
            ("2s", Duration::from_secs(2)),
            ("2", Duration::from_secs(2)),
            ("1.5", Duration::from_millis(1500)),
            ("5m", Duration::from_secs(300)),
            ("3h", Duration::from_secs(3 * 3600)),
            ("7d", Duration::from_secs(7 * 86_400)),
        ] {
            assert_eq!(parse_duration(s), Ok(d), "{s}");
        }
        for bad in ["", "fast", "-1s", "2 weeks", "1e400", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(Duration::from_millis(10)), "10ms");
        assert_eq!(format_duration(Duration::from_secs(120)), "2m");
        assert_eq!(format_duration(Duration::from_secs(30 * 86_400)), "30d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn paths_resolve_home_and_relative_to_the_base() {
        let b = base();
        assert_eq!(
            parse_str(Kind::Path, "~/db", &b),
            Ok(Value::Path("/home/a/db".into()))
        );
        assert_eq!(
            parse_str(Kind::Path, "db", &b),
            Ok(Value::Path("/etc/wfdb/db".into()))
        );
        assert_eq!(
            parse_str(Kind::Path, "/abs", &b),
            Ok(Value::Path("/abs".into()))
        );
        assert_eq!(
            parse_str(Kind::Paths, "/a::b", &b),
            Ok(Value::Paths(vec!["/a".into(), "/etc/wfdb/b".into()]))
        );
        let homeless = PathBase {
            dir: Path::new("/"),
            home: None,
        };
        assert!(parse_str(Kind::Path, "~/x", &homeless).is_err());
        // Paths from the environment may be any bytes; other values must be UTF-8.
        let raw = <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
            b"/srv/caf\xe9:rel".to_vec(),
        );
        assert_eq!(
            parse_os(Kind::Paths, &raw, &b),
            Ok(Value::Paths(vec![
                PathBuf::from(
                    <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(
                        b"/srv/caf\xe9".to_vec()
                    )
                ),
                "/etc/wfdb/rel".into()
            ]))
        );
        let bad =
            <std::ffi::OsString as std::os::unix::ffi::OsStringExt>::from_vec(b"12\xff".to_vec());
        assert_eq!(
            parse_os(Kind::Int { min: 0, max: 99 }, &bad, &b),
            Err("is not valid UTF-8".into())
        );
        assert!(parse_str(Kind::Path, "", &b).is_err());
    }

    #[test]
    fn bounds_and_formats_are_checked() {
        let b = base();
        let int = Kind::Int { min: 1, max: 10 };
        assert_eq!(parse_str(int, "5", &b), Ok(Value::Int(5)));
        assert!(parse_str(int, "0", &b)
            .unwrap_err()
            .contains("between 1 and 10"));
        assert!(parse_str(int, "x", &b)
            .unwrap_err()
            .contains("whole number"));
        assert!(parse_str(Kind::Addr, "localhost", &b).is_err());
        assert_eq!(
            parse_str(Kind::Addr, "127.0.0.1:1", &b),
            Ok(Value::Addr("127.0.0.1:1".parse().unwrap()))
        );
        assert_eq!(
            parse_str(Kind::LogFormat, "json", &b),
            Ok(Value::LogFormat(LogFormat::Json))
        );
        assert!(parse_str(Kind::LogFormat, "xml", &b).is_err());
        assert!(parse_str(Kind::LogFilter, "info,wfdb=debug", &b).is_ok());
        assert!(parse_str(Kind::LogFilter, "wfdb=loud", &b).is_err());
        assert_eq!(
            parse_str(Kind::Retention, "forever", &b),
            Ok(Value::Retention(None))
        );
        assert_eq!(
            parse_str(Kind::Strings, " a, b ,,c", &b),
            Ok(Value::Strings(vec!["a".into(), "b".into(), "c".into()]))
        );
    }
}
