//! Element types a device buffer can hold: plain old data that is `Copy`,
//! has a zero-like `Default` and can cross threads.

/// Plain-old-data element of a [`DeviceBuffer`](crate::DeviceBuffer).
///
/// The CPU device never reinterprets bytes, so this trait is safe to
/// implement for any `Copy` struct of numbers; new buffers are filled with
/// `T::default()`.
pub trait Pod: Copy + Default + Send + Sync + 'static {}

macro_rules! pod {
    ($($t:ty),*) => { $(impl Pod for $t {})* };
}
pod!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize, f32, f64, bool);
