//! Request bodies decoded as LXD decodes them.
//!
//! JSON bodies follow Go's `encoding/json`, which LXD 5.0 uses for every request:
//! - `null` gives a field its zero value (`false`, `0`, `""`, an empty list or map); clients in
//!   the wild send `"ephemeral": null`, `"devices": null`, `"width": null`. An `Option` field
//!   reads `null` as `None`, as Go leaves a nil pointer or slice nil.
//! - unknown fields are ignored;
//! - a key matches a field whatever its case (`"Name"` fills `name`), an exact match first;
//! - types are otherwise strict, as Go's are: a number is refused for a `string` field or a
//!   `map[string]string` value, a string for a number or a boolean, `1.5` or `-1` for an
//!   unsigned or narrower integer that cannot hold it.
//!
//! YAML documents (`silo init --preseed`, `silo config edit`) follow `gopkg.in/yaml.v2`, which
//! LXD's client uses: on top of the above, a scalar is taken as its text where a string is
//! wanted (`limits.cpu: 2` is `"2"`), and YAML 1.1's boolean words (`yes`, `off`, ...) are
//! booleans where a boolean is wanted. See [`from_yaml_value`].
//!
//! Nothing here relaxes a check: the decoded value is validated as before.

use std::collections::BTreeSet;

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// Decodes a JSON request body into `T` with Go's rules (see the module notes).
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    from_value(parse(body)?)
}

/// Decodes a JSON request body into `T`, and names (lower-cased, as keys match fields whatever
/// their case) the top-level keys the body set to something other than `null`: a PATCH handler
/// changes only those, as LXD's handlers check `reqRaw` for what was passed.
pub fn from_slice_with_keys<T: DeserializeOwned>(
    body: &[u8],
) -> Result<(T, BTreeSet<String>), serde_json::Error> {
    let v = parse(body)?;
    let keys = match &v {
        Value::Object(m) => m
            .iter()
            .filter(|(_, x)| !x.is_null())
            .map(|(k, _)| k.to_ascii_lowercase())
            .collect(),
        _ => BTreeSet::new(),
    };
    Ok((from_value(v)?, keys))
}

/// Decodes an already parsed JSON value into `T` with Go's `encoding/json` rules.
pub fn from_value<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Lenient(v, Mode::Json))
}

/// Decodes a YAML document, already read into a JSON value, into `T` with the rules of Go's
/// `yaml.v2`: as [`from_value`], and scalars are their text where a string is wanted, YAML 1.1
/// boolean words are booleans where a boolean is wanted.
pub fn from_yaml_value<T: DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
    T::deserialize(Lenient(v, Mode::Yaml))
}

/// Go replaces invalid UTF-8 inside strings with U+FFFD instead of refusing the body; outside
/// a string such a byte is a syntax error either way.
fn parse(body: &[u8]) -> Result<Value, serde_json::Error> {
    match std::str::from_utf8(body) {
        Ok(s) => serde_json::from_str(s),
        Err(_) => serde_json::from_str(&String::from_utf8_lossy(body)),
    }
}

/// Whose decoder's rules apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Go's `encoding/json`.
    Json,
    /// Go's `gopkg.in/yaml.v2`.
    Yaml,
}

/// A JSON value whose `null`s read as the zero value of whatever type is asked for.
#[derive(Debug)]
struct Lenient(Value, Mode);

impl<'de> IntoDeserializer<'de, serde_json::Error> for Lenient {
    type Deserializer = Lenient;
    fn into_deserializer(self) -> Lenient {
        self
    }
}

type E = serde_json::Error;

fn visit_map<'de, V: Visitor<'de>>(m: Map<String, Value>, mode: Mode, v: V) -> Result<V::Value, E> {
    let mut d = MapDeserializer::new(m.into_iter().map(|(k, x)| (k, Lenient(x, mode))));
    let out = v.visit_map(&mut d)?;
    d.end()?;
    Ok(out)
}

fn visit_seq<'de, V: Visitor<'de>>(a: Vec<Value>, mode: Mode, v: V) -> Result<V::Value, E> {
    let mut d = SeqDeserializer::new(a.into_iter().map(|x| Lenient(x, mode)));
    let out = v.visit_seq(&mut d)?;
    d.end()?;
    Ok(out)
}

/// Go matches a key to a struct field case-insensitively when no field has the exact name.
/// Keys are renamed to the field's own spelling; when both `name` and `Name` are sent the exact
/// one wins (Go keeps whichever comes last in the text, which a parsed map no longer knows).
fn fold_keys(m: Map<String, Value>, fields: &'static [&'static str]) -> Map<String, Value> {
    if m.keys().all(|k| fields.contains(&k.as_str())) {
        return m;
    }
    let mut out = Map::new();
    let mut folded = Vec::new();
    for (k, x) in m {
        if fields.contains(&k.as_str()) {
            out.insert(k, x);
        } else if let Some(f) = fields.iter().find(|f| f.eq_ignore_ascii_case(&k)) {
            folded.push((f.to_string(), x));
        } else {
            out.insert(k, x);
        }
    }
    for (f, x) in folded {
        out.entry(f).or_insert(x);
    }
    out
}

/// YAML 1.1's boolean words, as `yaml.v2` resolves a plain scalar for a `bool` field.
fn yaml_bool(s: &str) -> Option<bool> {
    match s {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

/// For each primitive: the zero value on `null`, else the value as it is.
macro_rules! zero_on_null {
    ($($method:ident => $zero:expr;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
                match self.0 {
                    Value::Null => $zero(v, self.1),
                    other => Lenient(other, self.1).deserialize_any(v),
                }
            }
        )*
    };
}

impl Lenient {
    /// A string is wanted: `null` is `""`; in YAML a number or boolean is its text.
    fn string<'de, V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match (self.0, self.1) {
            (Value::Null, _) => v.visit_string(String::new()),
            (Value::Number(n), Mode::Yaml) => v.visit_string(n.to_string()),
            (Value::Bool(b), Mode::Yaml) => v.visit_string(b.to_string()),
            (other, mode) => Lenient(other, mode).deserialize_any(v),
        }
    }
}

impl<'de> Deserializer<'de> for Lenient {
    type Error = E;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(b),
            Value::Number(n) => {
                if let Some(u) = n.as_u64() {
                    v.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    v.visit_i64(i)
                } else {
                    v.visit_f64(n.as_f64().unwrap_or(0.0))
                }
            }
            Value::String(s) => v.visit_string(s),
            Value::Array(a) => visit_seq(a, self.1, v),
            Value::Object(m) => visit_map(m, self.1, v),
        }
    }

    zero_on_null! {
        deserialize_i8 => |v: V, _mode: Mode| v.visit_i64(0);
        deserialize_i16 => |v: V, _mode: Mode| v.visit_i64(0);
        deserialize_i32 => |v: V, _mode: Mode| v.visit_i64(0);
        deserialize_i64 => |v: V, _mode: Mode| v.visit_i64(0);
        deserialize_u8 => |v: V, _mode: Mode| v.visit_u64(0);
        deserialize_u16 => |v: V, _mode: Mode| v.visit_u64(0);
        deserialize_u32 => |v: V, _mode: Mode| v.visit_u64(0);
        deserialize_u64 => |v: V, _mode: Mode| v.visit_u64(0);
        deserialize_f32 => |v: V, _mode: Mode| v.visit_f64(0.0);
        deserialize_f64 => |v: V, _mode: Mode| v.visit_f64(0.0);
        deserialize_char => |v: V, _mode: Mode| v.visit_char('\0');
        deserialize_bytes => |v: V, _mode: Mode| v.visit_bytes(&[]);
        deserialize_byte_buf => |v: V, _mode: Mode| v.visit_byte_buf(Vec::new());
        deserialize_seq => |v: V, mode: Mode| visit_seq(Vec::new(), mode, v);
        deserialize_map => |v: V, mode: Mode| visit_map(Map::new(), mode, v);
    }

    fn deserialize_bool<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match (self.0, self.1) {
            (Value::Null, _) => v.visit_bool(false),
            (Value::String(s), Mode::Yaml) => match yaml_bool(&s) {
                Some(b) => v.visit_bool(b),
                None => v.visit_string(s),
            },
            (other, mode) => Lenient(other, mode).deserialize_any(v),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        self.string(v)
    }

    fn deserialize_string<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        self.string(v)
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Null => v.visit_none(),
            other => v.visit_some(Lenient(other, self.1)),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        v.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, E> {
        v.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        v: V,
    ) -> Result<V::Value, E> {
        v.visit_newtype_struct(self)
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _len: usize, v: V) -> Result<V::Value, E> {
        self.deserialize_seq(v)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        v: V,
    ) -> Result<V::Value, E> {
        self.deserialize_seq(v)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, E> {
        match self.0 {
            Value::Object(m) => visit_map(fold_keys(m, fields), self.1, v),
            other => Lenient(other, self.1).deserialize_map(v),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, E> {
        // Enums in requests are unit variants named by strings; serde_json's own handling of
        // them is kept (a null one is refused, as there is no zero variant to pick).
        self.0.deserialize_enum(name, variants, v)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        self.deserialize_any(v)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        v.visit_unit()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    #[derive(Debug, Default, Deserialize, PartialEq)]
    struct Inner {
        #[serde(default)]
        kind: String,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Req {
        name: String,
        #[serde(default)]
        ephemeral: bool,
        #[serde(default)]
        width: u16,
        #[serde(default)]
        timeout: i64,
        #[serde(default)]
        config: BTreeMap<String, String>,
        #[serde(default)]
        profiles: Vec<String>,
        #[serde(default)]
        source: Inner,
        #[serde(default)]
        note: Option<String>,
    }

    #[test]
    fn null_is_the_zero_value_everywhere() {
        let r: Req = super::from_slice(
            br#"{"name":"c1","ephemeral":null,"width":null,"timeout":null,"config":null,
                "profiles":null,"source":null,"note":null}"#,
        )
        .expect("decodes");
        assert_eq!(
            r,
            Req {
                name: "c1".into(),
                ephemeral: false,
                width: 0,
                timeout: 0,
                config: BTreeMap::new(),
                profiles: Vec::new(),
                source: Inner::default(),
                note: None,
            }
        );
    }

    #[test]
    fn null_inside_maps_and_lists_and_unknown_fields() {
        let r: Req = super::from_slice(
            br#"{"name":"c1","config":{"limits.cpu":null,"a":"b"},"profiles":[null,"p"],
                "source":{"kind":null,"extra":1},"zzz":{"deep":[1,null]},"timeout":-1,"note":"x"}"#,
        )
        .expect("decodes");
        assert_eq!(r.config.get("limits.cpu").map(String::as_str), Some(""));
        assert_eq!(r.config.get("a").map(String::as_str), Some("b"));
        assert_eq!(r.profiles, vec!["".to_string(), "p".to_string()]);
        assert_eq!(r.timeout, -1);
        assert_eq!(r.note.as_deref(), Some("x"));
    }

    #[test]
    fn wrong_types_are_still_refused() {
        assert!(super::from_slice::<Req>(br#"{"name":"c1","ephemeral":"yes"}"#).is_err());
        assert!(super::from_slice::<Req>(br#"{"name":"c1","width":-3}"#).is_err());
        assert!(super::from_slice::<Req>(br#"{"ephemeral":true}"#).is_err());
        assert!(super::from_slice::<Req>(b"not json").is_err());
    }

    /// Go's encoding/json refuses these too: a number for a string, a string for a number
    /// or a boolean, a fraction for an integer, a number for a `map[string]string` value.
    #[test]
    fn json_types_are_as_strict_as_go() {
        for body in [
            br#"{"name":5}"#.as_slice(),
            br#"{"name":"c1","timeout":"5"}"#,
            br#"{"name":"c1","timeout":1.5}"#,
            br#"{"name":"c1","ephemeral":1}"#,
            br#"{"name":"c1","config":{"limits.cpu":2}}"#,
            br#"{"name":"c1","config":{"x":true}}"#,
            br#"{"name":"c1","profiles":"default"}"#,
        ] {
            assert!(
                super::from_slice::<Req>(body).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    /// Go matches keys to fields case-insensitively, the exact spelling first.
    #[test]
    fn keys_match_fields_whatever_their_case() {
        let r: Req =
            super::from_slice(br#"{"Name":"c1","EPHEMERAL":true,"Source":{"Kind":"image"}}"#)
                .expect("decodes");
        assert_eq!(r.name, "c1");
        assert!(r.ephemeral);
        assert_eq!(r.source.kind, "image");
        let r: Req = super::from_slice(br#"{"Name":"upper","name":"exact"}"#).expect("decodes");
        assert_eq!(r.name, "exact");
        // Map keys are data, not field names: their case is kept.
        let r: Req =
            super::from_slice(br#"{"name":"c1","config":{"User.Key":"v"}}"#).expect("decodes");
        assert_eq!(r.config.get("User.Key").map(String::as_str), Some("v"));
    }

    /// A top-level `null` leaves every field at its zero value, as `json.Unmarshal` does.
    #[test]
    fn null_body_is_the_zero_request() {
        let r: Inner = super::from_slice(b"null").expect("decodes");
        assert_eq!(r, Inner::default());
    }

    /// Invalid UTF-8 inside a string becomes U+FFFD, as in Go; it is not a refusal.
    #[test]
    fn invalid_utf8_in_strings_is_replaced() {
        let r: Req = super::from_slice(b"{\"name\":\"c\xff1\"}").expect("decodes");
        assert_eq!(r.name, "c\u{fffd}1");
    }

    #[test]
    fn keys_of_a_patch_body() {
        let (r, keys): (Req, _) =
            super::from_slice_with_keys(br#"{"name":"c1","Config":{"a":"b"},"profiles":null}"#)
                .expect("decodes");
        assert_eq!(r.config.len(), 1);
        assert!(keys.contains("name") && keys.contains("config"));
        assert!(!keys.contains("profiles"), "null is as good as absent");
    }

    /// yaml.v2 reads a scalar as its text for a string field and YAML 1.1's words as booleans.
    #[test]
    fn yaml_scalars_are_text_where_text_is_wanted() {
        let v = serde_json::json!({
            "name": 12, "ephemeral": "yes",
            "config": {"limits.cpu": 2, "security.nesting": true, "size": 1.5},
            "profiles": [7],
        });
        let r: Req = super::from_yaml_value(v).expect("decodes");
        assert_eq!(r.name, "12");
        assert!(r.ephemeral);
        assert_eq!(r.config.get("limits.cpu").map(String::as_str), Some("2"));
        assert_eq!(
            r.config.get("security.nesting").map(String::as_str),
            Some("true")
        );
        assert_eq!(r.config.get("size").map(String::as_str), Some("1.5"));
        assert_eq!(r.profiles, vec!["7".to_string()]);
        let r: Req = super::from_yaml_value(serde_json::json!({"name": "c", "ephemeral": "off"}))
            .expect("decodes");
        assert!(!r.ephemeral);
        // Still refused, as by yaml.v2: a word that is no boolean, text for a number.
        assert!(super::from_yaml_value::<Req>(
            serde_json::json!({"name": "c", "ephemeral": "maybe"})
        )
        .is_err());
        assert!(
            super::from_yaml_value::<Req>(serde_json::json!({"name": "c", "timeout": "5"}))
                .is_err()
        );
    }
}
