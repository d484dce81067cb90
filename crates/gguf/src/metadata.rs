//! The metadata key-value store of a file: entries in file order, lookup by
//! key, and typed getters whose errors name the key and both types
//! ("metadata key `llama.block_count` has type string, expected u32").

use std::collections::HashMap;

use crate::error::{GgufError, Result};
use crate::value::{Array, ArrayElement, ScalarValue, Value};

/// Metadata of a GGUF file. Keys are unique (the reader rejects files
/// that repeat one).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    /// Adds an entry; gives it back if the key is already present.
    pub(crate) fn insert(&mut self, key: &str, value: Value) -> Result<(), Value> {
        if self.index.contains_key(key) {
            return Err(value);
        }
        self.index.insert(key.to_string(), self.entries.len());
        self.entries.push((key.to_string(), value));
        Ok(())
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index
            .get(key)
            .and_then(|&i| self.entries.get(i))
            .map(|(_, v)| v)
    }

    /// Whether `key` is present.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// The value of `key`, or [`GgufError::MissingKey`].
    pub fn require(&self, key: &str) -> Result<&Value> {
        self.get(key).ok_or_else(|| GgufError::MissingKey {
            key: key.to_string(),
        })
    }

    fn wrong_type(key: &str, found: &Value, expected: impl Into<String>) -> GgufError {
        GgufError::WrongType {
            key: key.to_string(),
            found: found.type_name(),
            expected: expected.into(),
        }
    }

    /// The value of `key` as scalar type `T` (exactly that type).
    pub fn get_as<T: ScalarValue>(&self, key: &str) -> Result<T> {
        let v = self.require(key)?;
        T::from_value(v).ok_or_else(|| Self::wrong_type(key, v, T::TYPE.name()))
    }

    /// The value of `key` as a string.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            Value::String(s) => Ok(s),
            v => Err(Self::wrong_type(key, v, "string")),
        }
    }

    /// The value of `key` as an array of any element type.
    pub fn get_array(&self, key: &str) -> Result<&Array> {
        match self.require(key)? {
            Value::Array(a) => Ok(a),
            v => Err(Self::wrong_type(key, v, "array")),
        }
    }

    /// The value of `key` as an array of `T`
    /// (`get_slice::<String>("tokenizer.ggml.tokens")`).
    pub fn get_slice<T: ArrayElement>(&self, key: &str) -> Result<&[T]> {
        let v = self.require(key)?;
        let expected = || format!("array of {}", T::TYPE);
        match v {
            Value::Array(a) => a
                .as_slice::<T>()
                .ok_or_else(|| Self::wrong_type(key, v, expected())),
            _ => Err(Self::wrong_type(key, v, expected())),
        }
    }

    /// The value of `key` as a count: any integer type, non-negative. GGUF
    /// writers differ in the width they use for sizes (u32 or u64, some
    /// i32), and the specification asks readers to take either.
    pub fn get_count(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        let n = v
            .as_integer()
            .ok_or_else(|| Self::wrong_type(key, v, "an integer"))?;
        u64::try_from(n).map_err(|_| GgufError::OutOfRange {
            key: key.to_string(),
            value: v.to_string(),
            expected: "a non-negative count",
        })
    }
}

macro_rules! getters {
    ($($name:ident: $t:ty),* $(,)?) => {
        impl Metadata {$(
            #[doc = concat!("The value of `key` as `", stringify!($t), "` (exactly that type).")]
            pub fn $name(&self, key: &str) -> Result<$t> {
                self.get_as::<$t>(key)
            }
        )*}
    };
}

getters! {
    get_u8: u8, get_i8: i8, get_u16: u16, get_i16: i16, get_u32: u32, get_i32: i32,
    get_u64: u64, get_i64: i64, get_f32: f32, get_f64: f64, get_bool: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn getters_say_what_is_wrong() {
        let mut m = Metadata::default();
        m.insert("a.count", Value::U32(7)).unwrap();
        m.insert("a.name", Value::from("x")).unwrap();
        m.insert("a.neg", Value::I32(-1)).unwrap();
        m.insert("a.list", Value::from(vec![1.5f32])).unwrap();
        assert!(m.insert("a.count", Value::U8(1)).is_err());
        assert_eq!(m.get_u32("a.count").unwrap(), 7);
        assert_eq!(m.get_count("a.count").unwrap(), 7);
        assert_eq!(m.get_str("a.name").unwrap(), "x");
        assert_eq!(m.get_slice::<f32>("a.list").unwrap(), &[1.5]);
        assert_eq!(
            m.get_u64("a.count").unwrap_err().to_string(),
            "metadata key `a.count` has type u32, expected u64"
        );
        assert_eq!(
            m.get_slice::<String>("a.list").unwrap_err().to_string(),
            "metadata key `a.list` has type array of f32, expected array of string"
        );
        assert_eq!(
            m.get_str("b").unwrap_err().to_string(),
            "metadata key `b` is missing"
        );
        assert!(matches!(
            m.get_count("a.neg"),
            Err(GgufError::OutOfRange { .. })
        ));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["a.count", "a.name", "a.neg", "a.list"]);
    }
}
