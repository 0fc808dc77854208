//! Free-form JSON parts (metadata, context snapshot, agent states, workflow progress,
//! performance metrics, input requirements, output format) are persisted as JSON *text* holding
//! an object, because bincode cannot round-trip `serde_json::Value`. These helpers convert
//! between that text and `serde_json` values, and keep the text canonical: compact, keys sorted
//! (serde_json's default map is ordered by key), so equal objects have equal text.

use super::RegistryError;
use serde_json::{Map, Value};

/// The canonical text of an empty object.
pub const EMPTY_OBJECT: &str = "{}";

/// Parses JSON text that must hold an object. `field` names the part in errors.
pub fn parse_object_text(field: &str, text: &str) -> Result<Map<String, Value>, RegistryError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(RegistryError::NotAnObject {
            field: field.to_string(),
            message: format!("must be a JSON object, not {}", json_kind(&other)),
        }),
        Err(e) => Err(RegistryError::NotAnObject {
            field: field.to_string(),
            message: format!("is not valid JSON: {e}"),
        }),
    }
}

/// The canonical text of a JSON value that must be an object (`null` counts as `{}`, since
/// the original system's optional dicts are often omitted or `None`).
pub fn object_text_from_value(field: &str, value: &Value) -> Result<String, RegistryError> {
    match value {
        Value::Object(map) => Ok(object_text(map)),
        Value::Null => Ok(EMPTY_OBJECT.to_string()),
        other => Err(RegistryError::NotAnObject {
            field: field.to_string(),
            message: format!("must be a JSON object, not {}", json_kind(other)),
        }),
    }
}

/// Re-encodes JSON object text canonically (empty text counts as `{}`).
pub fn canonical_object_text(field: &str, text: &str) -> Result<String, RegistryError> {
    if text.trim().is_empty() {
        return Ok(EMPTY_OBJECT.to_string());
    }
    parse_object_text(field, text).map(|m| object_text(&m))
}

/// The canonical text of an object map.
pub fn object_text(map: &Map<String, Value>) -> String {
    // Serializing a map of `Value`s cannot fail (keys are strings).
    serde_json::to_string(map).unwrap_or_else(|_| EMPTY_OBJECT.to_string())
}

/// The object held by stored text, or an empty object if the text is not one (stored text is
/// validated on the way in, so this only guards against a damaged record).
pub fn object_value(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// "a string", "an array", … for messages.
pub fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_only() {
        assert!(parse_object_text("metadata", r#"{"a":1}"#).is_ok());
        let e = parse_object_text("metadata", "[1]").unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata: must be a JSON object, not an array"
        );
        let e = parse_object_text("metadata", "{").unwrap_err();
        assert!(
            e.to_string().starts_with("metadata: is not valid JSON"),
            "{e}"
        );
        assert!(object_text_from_value("x", &json!("s")).is_err());
        assert_eq!(object_text_from_value("x", &Value::Null).unwrap(), "{}");
    }

    #[test]
    fn canonical_text_sorts_keys() {
        let t = canonical_object_text("m", r#"{ "b": 1, "a": {"d": 2, "c": [1, 2]} }"#).unwrap();
        assert_eq!(t, r#"{"a":{"c":[1,2],"d":2},"b":1}"#);
        assert_eq!(canonical_object_text("m", "  ").unwrap(), "{}");
        assert_eq!(object_value("not json"), json!({}));
        assert_eq!(object_value(&t)["b"], json!(1));
    }
}
