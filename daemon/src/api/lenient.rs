//! Request bodies decoded as LXD's Go decoder decodes them: `null` gives a field its zero value
//! (`false`, `0`, `""`, an empty list or map), and unknown fields are ignored. Clients in the
//! wild send `"ephemeral": null`, `"devices": null`, `"width": null`; LXD takes them, so silo
//! does too. Nothing here relaxes a check: the decoded value is validated as before.

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{DeserializeOwned, Deserializer, IntoDeserializer, Visitor};
use serde_json::{Map, Value};

/// Decodes `body` into `T` with Go's rules for `null` (see the module notes).
pub fn from_slice<T: DeserializeOwned>(body: &[u8]) -> Result<T, serde_json::Error> {
    let v: Value = serde_json::from_slice(body)?;
    T::deserialize(Lenient(v))
}

/// A JSON value whose `null`s read as the zero value of whatever type is asked for.
struct Lenient(Value);

impl<'de> IntoDeserializer<'de, serde_json::Error> for Lenient {
    type Deserializer = Lenient;
    fn into_deserializer(self) -> Lenient {
        self
    }
}

type E = serde_json::Error;

fn visit_map<'de, V: Visitor<'de>>(m: Map<String, Value>, v: V) -> Result<V::Value, E> {
    let mut d = MapDeserializer::new(m.into_iter().map(|(k, x)| (k, Lenient(x))));
    let out = v.visit_map(&mut d)?;
    d.end()?;
    Ok(out)
}

fn visit_seq<'de, V: Visitor<'de>>(a: Vec<Value>, v: V) -> Result<V::Value, E> {
    let mut d = SeqDeserializer::new(a.into_iter().map(Lenient));
    let out = v.visit_seq(&mut d)?;
    d.end()?;
    Ok(out)
}

/// For each primitive: the zero value on `null`, else the value as it is.
macro_rules! zero_on_null {
    ($($method:ident => $zero:expr;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
                match self.0 {
                    Value::Null => $zero(v),
                    other => Lenient(other).deserialize_any(v),
                }
            }
        )*
    };
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
            Value::Array(a) => visit_seq(a, v),
            Value::Object(m) => visit_map(m, v),
        }
    }

    zero_on_null! {
        deserialize_bool => |v: V| v.visit_bool(false);
        deserialize_i8 => |v: V| v.visit_i64(0);
        deserialize_i16 => |v: V| v.visit_i64(0);
        deserialize_i32 => |v: V| v.visit_i64(0);
        deserialize_i64 => |v: V| v.visit_i64(0);
        deserialize_u8 => |v: V| v.visit_u64(0);
        deserialize_u16 => |v: V| v.visit_u64(0);
        deserialize_u32 => |v: V| v.visit_u64(0);
        deserialize_u64 => |v: V| v.visit_u64(0);
        deserialize_f32 => |v: V| v.visit_f64(0.0);
        deserialize_f64 => |v: V| v.visit_f64(0.0);
        deserialize_char => |v: V| v.visit_char('\0');
        deserialize_str => |v: V| v.visit_str("");
        deserialize_string => |v: V| v.visit_string(String::new());
        deserialize_bytes => |v: V| v.visit_bytes(&[]);
        deserialize_byte_buf => |v: V| v.visit_byte_buf(Vec::new());
        deserialize_seq => |v: V| visit_seq(Vec::new(), v);
        deserialize_map => |v: V| visit_map(Map::new(), v);
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, E> {
        match self.0 {
            Value::Null => v.visit_none(),
            other => v.visit_some(Lenient(other)),
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
        _fields: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, E> {
        self.deserialize_map(v)
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
}
