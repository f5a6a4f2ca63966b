//! What text of an event is embedded (vector.field).

use chronik_meta::VectorField;
use serde_json::Value;

/// The text to embed for an event, or `None` when it has no such field (the event is skipped
/// and counted). Strings are embedded as they are; other JSON values as their JSON text.
pub(crate) fn text_of(
    field: &VectorField,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Option<String> {
    match field {
        VectorField::Key => key.map(|k| String::from_utf8_lossy(k).into_owned()),
        VectorField::Value => {
            let v = value?;
            // A JSON string value embeds its content, not its quotes.
            match serde_json::from_slice::<Value>(v) {
                Ok(Value::String(s)) => Some(s),
                _ => Some(String::from_utf8_lossy(v).into_owned()),
            }
        }
        VectorField::Path(path) => {
            let mut at: Value = serde_json::from_slice(value?).ok()?;
            for seg in path {
                at = match at {
                    Value::Object(mut m) => m.remove(seg)?,
                    Value::Array(mut a) => {
                        let i: usize = seg.parse().ok()?;
                        if i >= a.len() {
                            return None;
                        }
                        a.swap_remove(i)
                    }
                    _ => return None,
                };
            }
            match at {
                Value::Null => None,
                Value::String(s) => Some(s),
                other => Some(other.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let v = br#"{"a": {"b": "deep text", "n": 3, "list": ["x", "y"]}, "nil": null}"#;
        let path = |p: &str| VectorField::Path(p.split('.').map(str::to_string).collect());
        assert_eq!(
            text_of(&path("a.b"), None, Some(v)).as_deref(),
            Some("deep text")
        );
        assert_eq!(text_of(&path("a.n"), None, Some(v)).as_deref(), Some("3"));
        assert_eq!(
            text_of(&path("a.list.1"), None, Some(v)).as_deref(),
            Some("y")
        );
        assert_eq!(text_of(&path("a.missing"), None, Some(v)), None);
        assert_eq!(text_of(&path("nil"), None, Some(v)), None);
        assert_eq!(text_of(&path("a.b"), None, Some(b"not json")), None);
        assert_eq!(text_of(&path("a.b"), None, None), None);
        assert_eq!(
            text_of(&VectorField::Key, Some(b"k1"), Some(v)).as_deref(),
            Some("k1")
        );
        assert_eq!(text_of(&VectorField::Key, None, Some(v)), None);
        assert_eq!(
            text_of(&VectorField::Value, None, Some(b"\"quoted\"")).as_deref(),
            Some("quoted")
        );
        assert_eq!(
            text_of(&VectorField::Value, None, Some(b"plain text")).as_deref(),
            Some("plain text")
        );
        assert_eq!(text_of(&VectorField::Value, None, None), None);
    }
}
