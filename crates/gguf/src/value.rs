//! Metadata values: the thirteen GGUF value types, typed arrays (an array
//! of `u32` is a `Vec<u32>`, not a vector of boxed values, so memory stays
//! within a small multiple of the file's bytes), and short summaries for
//! printing.

use std::fmt::{self, Write as _};

/// A GGUF metadata value type, with its id in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueType {
    /// `uint8` (id 0).
    U8,
    /// `int8` (id 1).
    I8,
    /// `uint16` (id 2).
    U16,
    /// `int16` (id 3).
    I16,
    /// `uint32` (id 4).
    U32,
    /// `int32` (id 5).
    I32,
    /// `float32` (id 6).
    F32,
    /// `bool` (id 7): one byte, 0 or 1.
    Bool,
    /// `string` (id 8): u64 length then UTF-8 bytes.
    String,
    /// `array` (id 9): element type, u64 count, elements.
    Array,
    /// `uint64` (id 10).
    U64,
    /// `int64` (id 11).
    I64,
    /// `float64` (id 12).
    F64,
}

impl ValueType {
    /// The type with id `id`.
    pub fn from_id(id: u32) -> Option<ValueType> {
        Some(match id {
            0 => ValueType::U8,
            1 => ValueType::I8,
            2 => ValueType::U16,
            3 => ValueType::I16,
            4 => ValueType::U32,
            5 => ValueType::I32,
            6 => ValueType::F32,
            7 => ValueType::Bool,
            8 => ValueType::String,
            9 => ValueType::Array,
            10 => ValueType::U64,
            11 => ValueType::I64,
            12 => ValueType::F64,
            _ => return None,
        })
    }

    /// The id written in files.
    pub fn id(self) -> u32 {
        match self {
            ValueType::U8 => 0,
            ValueType::I8 => 1,
            ValueType::U16 => 2,
            ValueType::I16 => 3,
            ValueType::U32 => 4,
            ValueType::I32 => 5,
            ValueType::F32 => 6,
            ValueType::Bool => 7,
            ValueType::String => 8,
            ValueType::Array => 9,
            ValueType::U64 => 10,
            ValueType::I64 => 11,
            ValueType::F64 => 12,
        }
    }

    /// Short name: "u8" .. "f64", "bool", "string", "array".
    pub fn name(self) -> &'static str {
        match self {
            ValueType::U8 => "u8",
            ValueType::I8 => "i8",
            ValueType::U16 => "u16",
            ValueType::I16 => "i16",
            ValueType::U32 => "u32",
            ValueType::I32 => "i32",
            ValueType::F32 => "f32",
            ValueType::Bool => "bool",
            ValueType::String => "string",
            ValueType::Array => "array",
            ValueType::U64 => "u64",
            ValueType::I64 => "i64",
            ValueType::F64 => "f64",
        }
    }

    /// Fewest bytes one value of this type takes in a file: its size for
    /// fixed-size types, the length prefix for strings, the element type
    /// and count for arrays. Counts are checked against this before any
    /// allocation.
    pub fn min_encoded_len(self) -> u64 {
        match self {
            ValueType::U8 | ValueType::I8 | ValueType::Bool => 1,
            ValueType::U16 | ValueType::I16 => 2,
            ValueType::U32 | ValueType::I32 | ValueType::F32 => 4,
            ValueType::U64 | ValueType::I64 | ValueType::F64 | ValueType::String => 8,
            ValueType::Array => 12,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `uint8`.
    U8(u8),
    /// `int8`.
    I8(i8),
    /// `uint16`.
    U16(u16),
    /// `int16`.
    I16(i16),
    /// `uint32`.
    U32(u32),
    /// `int32`.
    I32(i32),
    /// `float32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// `string`.
    String(String),
    /// `array` (possibly of arrays).
    Array(Array),
    /// `uint64`.
    U64(u64),
    /// `int64`.
    I64(i64),
    /// `float64`.
    F64(f64),
}

/// A metadata array: the elements of one type, stored unboxed.
#[derive(Debug, Clone, PartialEq)]
pub enum Array {
    /// `uint8` elements.
    U8(Vec<u8>),
    /// `int8` elements.
    I8(Vec<i8>),
    /// `uint16` elements.
    U16(Vec<u16>),
    /// `int16` elements.
    I16(Vec<i16>),
    /// `uint32` elements.
    U32(Vec<u32>),
    /// `int32` elements.
    I32(Vec<i32>),
    /// `float32` elements.
    F32(Vec<f32>),
    /// `bool` elements.
    Bool(Vec<bool>),
    /// `string` elements.
    String(Vec<String>),
    /// Nested arrays, each with its own element type.
    Array(Vec<Array>),
    /// `uint64` elements.
    U64(Vec<u64>),
    /// `int64` elements.
    I64(Vec<i64>),
    /// `float64` elements.
    F64(Vec<f64>),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The type as error messages name it: "u32", "string", "array of f32".
    pub fn type_name(&self) -> String {
        match self {
            Value::Array(a) => a.type_name(),
            v => v.value_type().name().to_string(),
        }
    }

    /// Any integer value, widened (negative ones as `i128` below zero).
    pub fn as_integer(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value on one line, shortened for people: strings quoted with
    /// control characters escaped and cut after `max_chars` characters,
    /// arrays as `[type; len]` followed by their first `max_items` items.
    pub fn summary(&self, max_chars: usize, max_items: usize) -> String {
        let mut out = String::new();
        match self {
            Value::String(s) => push_str_summary(&mut out, s, max_chars),
            Value::Array(a) => {
                let _ = write!(out, "[{}; {}]", a.element_type_name(), a.len());
                if !a.is_empty() && max_items > 0 {
                    out.push(' ');
                    a.push_items(&mut out, max_chars, max_items);
                }
            }
            v => {
                let _ = write!(out, "{v}");
            }
        }
        out
    }
}

/// Appends `s` quoted and escaped, cut after `max_chars` characters with a
/// note of its full length.
fn push_str_summary(out: &mut String, s: &str, max_chars: usize) {
    out.push('"');
    for (shown, c) in s.chars().enumerate() {
        if shown == max_chars {
            let _ = write!(out, "\"… ({} bytes)", s.len());
            return;
        }
        match c {
            // Inside double quotes a single quote needs no escape.
            '\'' => out.push(c),
            c => out.extend(c.escape_debug()),
        }
    }
    out.push('"');
}

impl fmt::Display for Value {
    /// Scalars as Rust prints them; strings quoted and escaped; arrays in
    /// full.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v:?}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(s) => write!(f, "{s:?}"),
            Value::Array(a) => write!(f, "{a}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v:?}"),
        }
    }
}

impl Array {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Array::U8(v) => v.len(),
            Array::I8(v) => v.len(),
            Array::U16(v) => v.len(),
            Array::I16(v) => v.len(),
            Array::U32(v) => v.len(),
            Array::I32(v) => v.len(),
            Array::F32(v) => v.len(),
            Array::Bool(v) => v.len(),
            Array::String(v) => v.len(),
            Array::Array(v) => v.len(),
            Array::U64(v) => v.len(),
            Array::I64(v) => v.len(),
            Array::F64(v) => v.len(),
        }
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Array::U8(_) => ValueType::U8,
            Array::I8(_) => ValueType::I8,
            Array::U16(_) => ValueType::U16,
            Array::I16(_) => ValueType::I16,
            Array::U32(_) => ValueType::U32,
            Array::I32(_) => ValueType::I32,
            Array::F32(_) => ValueType::F32,
            Array::Bool(_) => ValueType::Bool,
            Array::String(_) => ValueType::String,
            Array::Array(_) => ValueType::Array,
            Array::U64(_) => ValueType::U64,
            Array::I64(_) => ValueType::I64,
            Array::F64(_) => ValueType::F64,
        }
    }

    /// "array of u32", "array of array".
    pub fn type_name(&self) -> String {
        format!("array of {}", self.element_type())
    }

    fn element_type_name(&self) -> &'static str {
        self.element_type().name()
    }

    /// The elements as a slice of `T`, if they are of type `T`
    /// (`a.as_slice::<String>()`, `a.as_slice::<f32>()`).
    pub fn as_slice<T: ArrayElement>(&self) -> Option<&[T]> {
        T::slice(self)
    }

    /// Appends `[a, b, c, …]`, at most `max_items` of them.
    fn push_items(&self, out: &mut String, max_chars: usize, max_items: usize) {
        fn push_all<T>(
            out: &mut String,
            items: &[T],
            max_items: usize,
            mut one: impl FnMut(&mut String, &T),
        ) {
            out.push('[');
            for (i, item) in items.iter().take(max_items).enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                one(out, item);
            }
            if items.len() > max_items {
                out.push_str(", …");
            }
            out.push(']');
        }
        fn plain<T: fmt::Debug>(out: &mut String, v: &T) {
            let _ = write!(out, "{v:?}");
        }
        match self {
            Array::U8(v) => push_all(out, v, max_items, plain),
            Array::I8(v) => push_all(out, v, max_items, plain),
            Array::U16(v) => push_all(out, v, max_items, plain),
            Array::I16(v) => push_all(out, v, max_items, plain),
            Array::U32(v) => push_all(out, v, max_items, plain),
            Array::I32(v) => push_all(out, v, max_items, plain),
            Array::F32(v) => push_all(out, v, max_items, plain),
            Array::Bool(v) => push_all(out, v, max_items, plain),
            Array::String(v) => {
                push_all(out, v, max_items, |o, s| push_str_summary(o, s, max_chars))
            }
            Array::Array(v) => push_all(out, v, max_items, |o, a| {
                let _ = write!(o, "[{}; {}]", a.element_type_name(), a.len());
            }),
            Array::U64(v) => push_all(out, v, max_items, plain),
            Array::I64(v) => push_all(out, v, max_items, plain),
            Array::F64(v) => push_all(out, v, max_items, plain),
        }
    }
}

impl fmt::Display for Array {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        match self {
            // Nested arrays in full, recursively (depth is bounded by the
            // reader).
            Array::Array(v) => {
                out.push('[');
                for (i, a) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{a}");
                }
                out.push(']');
            }
            Array::String(v) => {
                out.push('[');
                for (i, s) in v.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    let _ = write!(out, "{s:?}");
                }
                out.push(']');
            }
            a => a.push_items(&mut out, usize::MAX, usize::MAX),
        }
        f.write_str(&out)
    }
}

/// Element types that an [`Array`] can be viewed as a slice of.
pub trait ArrayElement: Sized {
    /// The GGUF type of the elements.
    const TYPE: ValueType;
    /// The elements, if `array` holds this type.
    fn slice(array: &Array) -> Option<&[Self]>;
}

/// Scalar types that a [`Value`] can be read as.
pub trait ScalarValue: Sized {
    /// The GGUF type.
    const TYPE: ValueType;
    /// The value, if `value` is of this type.
    fn from_value(value: &Value) -> Option<Self>;
}

macro_rules! typed {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl ArrayElement for $t {
            const TYPE: ValueType = ValueType::$variant;
            fn slice(array: &Array) -> Option<&[Self]> {
                match array {
                    Array::$variant(v) => Some(v),
                    _ => None,
                }
            }
        }

        impl ScalarValue for $t {
            const TYPE: ValueType = ValueType::$variant;
            fn from_value(value: &Value) -> Option<Self> {
                match value {
                    Value::$variant(v) => Some(v.clone()),
                    _ => None,
                }
            }
        }

        impl From<$t> for Value {
            fn from(v: $t) -> Value {
                Value::$variant(v)
            }
        }

        impl From<Vec<$t>> for Value {
            fn from(v: Vec<$t>) -> Value {
                Value::Array(Array::$variant(v))
            }
        }

        impl From<Vec<$t>> for Array {
            fn from(v: Vec<$t>) -> Array {
                Array::$variant(v)
            }
        }
    )*};
}

typed! {
    u8 => U8, i8 => I8, u16 => U16, i16 => I16, u32 => U32, i32 => I32,
    f32 => F32, bool => Bool, String => String, u64 => U64, i64 => I64, f64 => F64,
}

impl ArrayElement for Array {
    const TYPE: ValueType = ValueType::Array;
    fn slice(array: &Array) -> Option<&[Self]> {
        match array {
            Array::Array(v) => Some(v),
            _ => None,
        }
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::String(v.to_string())
    }
}

impl From<Vec<&str>> for Value {
    fn from(v: Vec<&str>) -> Value {
        Value::Array(Array::String(v.into_iter().map(String::from).collect()))
    }
}

impl From<Array> for Value {
    fn from(v: Array) -> Value {
        Value::Array(v)
    }
}

impl From<Vec<Array>> for Value {
    fn from(v: Vec<Array>) -> Value {
        Value::Array(Array::Array(v))
    }
}

impl From<Vec<Array>> for Array {
    fn from(v: Vec<Array>) -> Array {
        Array::Array(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in 0..13 {
            assert_eq!(ValueType::from_id(id).unwrap().id(), id);
        }
        assert_eq!(ValueType::from_id(13), None);
    }

    #[test]
    fn summaries() {
        let s = Value::from("a\nb".repeat(50));
        assert_eq!(s.summary(4, 3), "\"a\\nba\"… (150 bytes)");
        assert_eq!(Value::from("é").summary(80, 3), "\"é\"");
        assert_eq!(Value::from("'\"").summary(80, 3), "\"'\\\"\"");
        let tokens = Value::from(vec!["<s>", "</s>", "a", "b"]);
        assert_eq!(tokens.summary(80, 2), "[string; 4] [\"<s>\", \"</s>\", …]");
        assert_eq!(Value::from(vec![1u32, 2]).summary(80, 5), "[u32; 2] [1, 2]");
        assert_eq!(Value::from(Vec::<f32>::new()).summary(80, 5), "[f32; 0]");
        let nested = Value::from(vec![Array::from(vec![1u8]), Array::from(vec![true])]);
        assert_eq!(nested.summary(80, 5), "[array; 2] [[u8; 1], [bool; 1]]");
        assert_eq!(nested.type_name(), "array of array");
        assert_eq!(nested.to_string(), "[[1], [true]]");
        assert_eq!(Value::F32(1.0).to_string(), "1.0");
    }
}
