//! The top-level fields of a record's JSON object, read without building a `serde_json::Value`
//! tree: names and strings borrow from the record where they have no escapes, and only nested
//! objects and arrays (stored as JSON text) become values. Schema inference and batch building
//! read every record of a columnar topic through this, so allocating a map and a string per
//! field was most of the indexer's time.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

/// One top-level field's value.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    Null,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(Cow<'a, str>),
    /// An object or an array.
    Nested(Value),
}

impl FieldValue<'_> {
    /// The same value as a `serde_json::Value` (for its JSON text).
    pub fn to_value(&self) -> Value {
        match self {
            FieldValue::Null => Value::Null,
            FieldValue::Bool(b) => Value::Bool(*b),
            FieldValue::I64(n) => Value::from(*n),
            FieldValue::U64(n) => Value::from(*n),
            FieldValue::F64(n) => Value::from(*n),
            FieldValue::Str(s) => Value::String(s.to_string()),
            FieldValue::Nested(v) => v.clone(),
        }
    }
}

/// A record's value as the columnar store reads it: parsed once, then used both to widen the
/// topic's schema and to fill the row.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordValue<'a> {
    Tombstone,
    /// A JSON object: its top-level fields in order (duplicates kept).
    Object(Vec<(Cow<'a, str>, FieldValue<'a>)>),
    /// Anything else, stored whole in `_value`.
    Raw(&'a [u8]),
}

impl<'a> RecordValue<'a> {
    pub fn read(value: Option<&'a [u8]>) -> Self {
        match value {
            None => RecordValue::Tombstone,
            Some(bytes) => {
                object_fields(bytes).map_or(RecordValue::Raw(bytes), RecordValue::Object)
            }
        }
    }
}

/// The fields of `bytes` in the order they appear (duplicates kept), or `None` when `bytes`
/// is not one JSON object.
pub fn object_fields(bytes: &[u8]) -> Option<Vec<(Cow<'_, str>, FieldValue<'_>)>> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let fields = de.deserialize_any(TopLevel).ok()?;
    de.end().ok()?;
    fields
}

struct TopLevel;

impl<'de> Visitor<'de> for TopLevel {
    type Value = Option<Vec<(Cow<'de, str>, FieldValue<'de>)>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(Name(name)) = map.next_key()? {
            fields.push((name, map.next_value()?));
        }
        Ok(Some(fields))
    }

    // Anything else is valid JSON but not an object: consumed, then reported as such.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A field name, borrowed unless it had escapes.
struct Name<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(NameVisitor)
    }
}

struct NameVisitor;

impl<'de> Visitor<'de> for NameVisitor {
    type Value = Name<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Name(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Name(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Name(Cow::Owned(s)))
    }
}

impl<'de> Deserialize<'de> for FieldValue<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = FieldValue<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(FieldValue::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(FieldValue::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(FieldValue::I64(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(FieldValue::U64(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(FieldValue::F64(n))
    }
    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Borrowed(s)))
    }
    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Owned(s.to_string())))
    }
    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(FieldValue::Str(Cow::Owned(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(FieldValue::Nested)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(FieldValue::Nested)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field as `serde_json` itself reads it: the reference this module must agree with.
    fn reference(bytes: &[u8]) -> Option<Vec<(String, Value)>> {
        match serde_json::from_slice::<Value>(bytes) {
            Ok(Value::Object(m)) => Some(m.into_iter().collect()),
            _ => None,
        }
    }

    #[test]
    fn fields_agree_with_serde_json_values() {
        let cases: &[&[u8]] = &[
            br#"{"a": 1, "b": -2, "c": 1.5, "d": "x", "e": true, "f": null}"#,
            br#"{"big": 18446744073709551615, "neg": -9223372036854775808, "exp": 1e3}"#,
            br#"{"esc\"aped": "line\nbreak \u00e9", "plain": "caf\u00e9"}"#,
            br#"{"o": {"x": [1, {"y": 2}]}, "arr": [1, "two", null]}"#,
            br#"  {"spaced" : "yes"}  "#,
            br#"{}"#,
        ];
        for case in cases {
            let got = object_fields(case).expect("an object");
            let mut got: Vec<(String, Value)> = got
                .into_iter()
                .map(|(k, v)| (k.into_owned(), v.to_value()))
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(
                Some(got),
                reference(case),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn names_and_strings_without_escapes_are_borrowed() {
        let fields = object_fields(br#"{"name": "value", "n\u0061me": "v\u0061lue"}"#).unwrap();
        assert!(matches!(fields[0].0, Cow::Borrowed("name")));
        assert!(matches!(
            &fields[0].1,
            FieldValue::Str(Cow::Borrowed("value"))
        ));
        assert!(matches!(&fields[1].0, Cow::Owned(s) if s == "name"));
        assert!(matches!(&fields[1].1, FieldValue::Str(Cow::Owned(s)) if s == "value"));
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        let not_objects: &[&[u8]] = &[
            b"plain text",
            b"[1, 2]",
            b"\"a string\"",
            b"42",
            b"null",
            br#"{"a": 1} trailing"#,
            br#"{"a": 1"#,
            br#"{"a": 1}{"b": 2}"#,
            &[0xff, 0xfe],
            b"",
        ];
        for case in not_objects {
            assert_eq!(
                object_fields(case),
                None,
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn duplicate_names_are_all_reported_in_order() {
        let fields = object_fields(br#"{"a": 1, "a": "x"}"#).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields[0].1, FieldValue::U64(1));
        assert_eq!(fields[1].1, FieldValue::Str(Cow::Borrowed("x")));
    }
}
