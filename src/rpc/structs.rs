//! `google.protobuf.Struct` ⇄ `serde_json::Value`: how the free-form JSON parts of the
//! workflow database (metadata, context snapshots, input requirements, ...) travel.
//!
//! JSON numbers become doubles on the wire (that is what `Struct` holds); on the way back a
//! double with no fractional part within ±2^53 becomes a JSON integer again, so `{"n": 1}`
//! round-trips as `{"n": 1}`, not `{"n": 1.0}`. A NaN or infinity (not JSON) becomes `null`.

use prost_types::value::Kind;
use prost_types::{ListValue, Struct, Value as PbValue};
use serde_json::{Map, Number, Value};

use crate::registry::json::{object_text, object_value};

/// Largest integer a double holds exactly.
const MAX_EXACT: f64 = 9_007_199_254_740_992.0;

/// A JSON object as a `Struct`.
pub fn struct_from_map(map: &Map<String, Value>) -> Struct {
    Struct {
        fields: map.iter().map(|(k, v)| (k.clone(), pb_value(v))).collect(),
    }
}

/// A JSON value as a protobuf `Value`.
pub fn pb_value(v: &Value) -> PbValue {
    let kind = match v {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(*b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        Value::String(s) => Kind::StringValue(s.clone()),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(pb_value).collect(),
        }),
        Value::Object(m) => Kind::StructValue(struct_from_map(m)),
    };
    PbValue { kind: Some(kind) }
}

/// A `Struct` as a JSON object.
pub fn map_from_struct(s: &Struct) -> Map<String, Value> {
    s.fields
        .iter()
        .map(|(k, v)| (k.clone(), json_value(v)))
        .collect()
}

/// A protobuf `Value` as JSON.
pub fn json_value(v: &PbValue) -> Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(*b),
        Some(Kind::NumberValue(f)) => number(*f),
        Some(Kind::StringValue(s)) => Value::String(s.clone()),
        Some(Kind::ListValue(l)) => Value::Array(l.values.iter().map(json_value).collect()),
        Some(Kind::StructValue(s)) => Value::Object(map_from_struct(s)),
    }
}

fn number(f: f64) -> Value {
    if f.fract() == 0.0 && f.abs() <= MAX_EXACT {
        // Exact: |f| ≤ 2^53 and integral.
        Value::Number(Number::from(f as i64))
    } else {
        Number::from_f64(f).map_or(Value::Null, Value::Number)
    }
}

/// The canonical JSON text of an optional `Struct` (absent: `{}`), as the registry keeps it.
pub fn text_of(s: Option<&Struct>) -> String {
    match s {
        Some(s) => object_text(&map_from_struct(s)),
        None => crate::registry::EMPTY_OBJECT.to_string(),
    }
}

/// The `Struct` of stored JSON object text.
pub fn struct_of_text(text: &str) -> Struct {
    match object_value(text) {
        Value::Object(m) => struct_from_map(&m),
        _ => Struct::default(),
    }
}

/// A JSON value that must be an object, as a `Struct` (anything else: empty).
pub fn struct_of_value(v: &Value) -> Struct {
    match v {
        Value::Object(m) => struct_from_map(m),
        _ => Struct::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_integers_and_nesting() {
        let v = json!({"n": 1, "f": 0.75, "neg": -3, "s": "x", "b": true, "z": null,
                       "list": [1, "a", {"k": [2.5]}], "o": {"deep": {"x": 9007199254740992u64}}});
        let Value::Object(m) = &v else { panic!() };
        let back = Value::Object(map_from_struct(&struct_from_map(m)));
        assert_eq!(back, v);
        assert_eq!(text_of(None), "{}");
        assert_eq!(
            text_of(Some(&struct_from_map(m))),
            crate::registry::json::object_text(m)
        );
        assert_eq!(number(f64::NAN), Value::Null);
    }
}
