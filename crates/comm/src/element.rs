//! The element types collectives carry, and how each is put on the wire
//! (little-endian) and reduced.

/// A type the collectives can move and reduce.
pub trait Element: Copy + PartialEq + Send + Sync + std::fmt::Debug + 'static {
    /// Bytes of one value on the wire.
    const BYTES: usize;
    /// The name in messages.
    const NAME: &'static str;
    /// Appends the value's little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
    /// The value of `BYTES` little-endian bytes.
    fn get(b: &[u8]) -> Self;
    /// `a + b` (wrapping for integers).
    fn add(a: Self, b: Self) -> Self;
    /// The larger.
    fn max(a: Self, b: Self) -> Self;
    /// The smaller.
    fn min(a: Self, b: Self) -> Self;
    /// The mean of a sum over `n` ranks (integer division for integers).
    fn mean(sum: Self, n: usize) -> Self;
}

impl Element for f32 {
    const BYTES: usize = 4;
    const NAME: &'static str = "f32";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        f32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn add(a: Self, b: Self) -> Self {
        a + b
    }
    fn max(a: Self, b: Self) -> Self {
        a.max(b)
    }
    fn min(a: Self, b: Self) -> Self {
        a.min(b)
    }
    fn mean(sum: Self, n: usize) -> Self {
        sum / n as f32
    }
}

impl Element for i32 {
    const BYTES: usize = 4;
    const NAME: &'static str = "i32";
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
    fn get(b: &[u8]) -> Self {
        i32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn add(a: Self, b: Self) -> Self {
        a.wrapping_add(b)
    }
    fn max(a: Self, b: Self) -> Self {
        Ord::max(a, b)
    }
    fn min(a: Self, b: Self) -> Self {
        Ord::min(a, b)
    }
    fn mean(sum: Self, n: usize) -> Self {
        sum / n as i32
    }
}

/// Appends the wire bytes of `values` to `out`.
pub(crate) fn encode<T: Element>(values: &[T], out: &mut Vec<u8>) {
    out.reserve(values.len() * T::BYTES);
    for &v in values {
        v.put(out);
    }
}

/// Decodes `bytes` into `out` (as many values as fit).
pub(crate) fn decode<T: Element>(bytes: &[u8], out: &mut [T]) {
    for (d, b) in out.iter_mut().zip(bytes.chunks_exact(T::BYTES)) {
        *d = T::get(b);
    }
}
