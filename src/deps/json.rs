//! A small, tolerant JSON reader for manifests: accepts comments and trailing commas (as
//! `tsconfig.json` does), keeps object key order, never panics (depth is bounded).

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Value>),
    Obj(Vec<(String, Value)>),
}

impl Value {
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Obj(kv) => kv.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
}

const MAX_DEPTH: u32 = 64;

struct Parser<'a> {
    t: &'a [u8],
    i: usize,
}

/// Parse a JSON (with comments) document; `None` when it is not one.
pub fn parse(text: &[u8]) -> Option<Value> {
    let text = text.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(text);
    let mut p = Parser { t: text, i: 0 };
    let v = p.value(0)?;
    Some(v)
}

impl Parser<'_> {
    fn ws(&mut self) {
        let t = self.t;
        while self.i < t.len() {
            match t[self.i] {
                b' ' | b'\t' | b'\r' | b'\n' => self.i += 1,
                b'/' if t.get(self.i + 1) == Some(&b'/') => {
                    while self.i < t.len() && t[self.i] != b'\n' {
                        self.i += 1;
                    }
                }
                b'/' if t.get(self.i + 1) == Some(&b'*') => {
                    self.i += 2;
                    while self.i < t.len()
                        && !(t[self.i] == b'*' && t.get(self.i + 1) == Some(&b'/'))
                    {
                        self.i += 1;
                    }
                    self.i = (self.i + 2).min(t.len());
                }
                _ => return,
            }
        }
    }

    fn value(&mut self, depth: u32) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        self.ws();
        let b = *self.t.get(self.i)?;
        match b {
            b'{' => {
                self.i += 1;
                let mut kv = Vec::new();
                loop {
                    self.ws();
                    match *self.t.get(self.i)? {
                        b'}' => {
                            self.i += 1;
                            return Some(Value::Obj(kv));
                        }
                        b',' => self.i += 1,
                        b'"' => {
                            let k = self.string()?;
                            self.ws();
                            if self.t.get(self.i) != Some(&b':') {
                                return None;
                            }
                            self.i += 1;
                            let v = self.value(depth + 1)?;
                            kv.push((k, v));
                        }
                        _ => return None,
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    match *self.t.get(self.i)? {
                        b']' => {
                            self.i += 1;
                            return Some(Value::Arr(items));
                        }
                        b',' => self.i += 1,
                        _ => items.push(self.value(depth + 1)?),
                    }
                }
            }
            b'"' => Some(Value::Str(self.string()?)),
            _ => {
                let start = self.i;
                while self.i < self.t.len()
                    && !matches!(
                        self.t[self.i],
                        b',' | b'}' | b']' | b' ' | b'\n' | b'\r' | b'\t' | b'/'
                    )
                {
                    self.i += 1;
                }
                let word = std::str::from_utf8(&self.t[start..self.i]).ok()?;
                match word {
                    "null" => Some(Value::Null),
                    "true" => Some(Value::Bool(true)),
                    "false" => Some(Value::Bool(false)),
                    _ => word.parse::<f64>().ok().map(Value::Num),
                }
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        // at the opening quote
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        while self.i < self.t.len() {
            let b = self.t[self.i];
            match b {
                b'"' => {
                    self.i += 1;
                    return Some(String::from_utf8_lossy(&out).into_owned());
                }
                b'\\' => {
                    let e = *self.t.get(self.i + 1)?;
                    self.i += 2;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.t.get(self.i..self.i + 4)?;
                            let code =
                                u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                            self.i += 4;
                            let c = char::from_u32(code).unwrap_or('\u{FFFD}');
                            let mut buf = [0u8; 4];
                            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                _ => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_jsonc() {
        let v = parse(
            br#"{ // c
            "a": [1, "x", {"b": null},], /* d */ "c": "\u0041\n", }"#,
        )
        .unwrap();
        assert_eq!(v.get("c").and_then(|v| v.as_str()), Some("A\n"));
        assert!(matches!(v.get("a"), Some(Value::Arr(a)) if a.len() == 3));
        assert!(parse(b"{\"a\": ").is_none());
        let deep = "[".repeat(10_000);
        assert!(parse(deep.as_bytes()).is_none());
    }
}
