//! Element types and shapes with symbolic dimensions.

use std::fmt;

use exodus_kernels::attention::KvLayout;
use exodus_numerics::Format;

/// A symbolic dimension (`tokens`, `batch`): an index into the graph's
/// symbol table, bound to a size only when the graph is compiled for a
/// shape bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sym(pub u32);

/// One dimension of a shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    /// A size known when the graph is built.
    Fixed(usize),
    /// A size known only when the graph runs.
    Sym(Sym),
}

impl From<usize> for Dim {
    fn from(n: usize) -> Self {
        Dim::Fixed(n)
    }
}

impl From<Sym> for Dim {
    fn from(s: Sym) -> Self {
        Dim::Sym(s)
    }
}

/// The dimensions of a value, outermost first (row-major).
///
/// Tuples of sizes and symbols convert, so model code reads like the shapes
/// it means: `(tokens, 576)`, `(tokens, heads, 64)`, `(576,)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Shape(pub Vec<Dim>);

impl From<Vec<Dim>> for Shape {
    fn from(dims: Vec<Dim>) -> Self {
        Shape(dims)
    }
}

impl<const N: usize> From<[usize; N]> for Shape {
    fn from(dims: [usize; N]) -> Self {
        Shape::of(dims)
    }
}

impl<const N: usize> From<[Dim; N]> for Shape {
    fn from(dims: [Dim; N]) -> Self {
        Shape(dims.to_vec())
    }
}

/// `From<(A, B, ..)>` for tuples whose parts are sizes or symbols.
macro_rules! shape_from_tuple {
    ($($t:ident),+) => {
        impl<$($t: Into<Dim>),+> From<($($t,)+)> for Shape {
            #[allow(non_snake_case)]
            fn from(($($t,)+): ($($t,)+)) -> Self {
                Shape(vec![$($t.into()),+])
            }
        }
    };
}
shape_from_tuple!(A);
shape_from_tuple!(A, B);
shape_from_tuple!(A, B, C);
shape_from_tuple!(A, B, C, D);

impl Shape {
    /// A shape from anything that converts to dims.
    pub fn of<D: Into<Dim>>(dims: impl IntoIterator<Item = D>) -> Shape {
        Shape(dims.into_iter().map(Into::into).collect())
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// The last dimension (`None` for a scalar).
    pub fn last(&self) -> Option<Dim> {
        self.0.last().copied()
    }

    /// Product of the fixed dims and the symbols (sorted, with
    /// repetition): two shapes hold the same number of elements for every
    /// binding of the symbols exactly when these agree.
    pub fn volume(&self) -> (usize, Vec<Sym>) {
        let mut fixed = 1usize;
        let mut syms = Vec::new();
        for d in &self.0 {
            match *d {
                Dim::Fixed(n) => fixed = fixed.saturating_mul(n),
                Dim::Sym(s) => syms.push(s),
            }
        }
        syms.sort_unstable();
        (fixed, syms)
    }

    /// The symbols this shape uses.
    pub fn symbols(&self) -> impl Iterator<Item = Sym> + '_ {
        self.0.iter().filter_map(|d| match d {
            Dim::Sym(s) => Some(*s),
            Dim::Fixed(_) => None,
        })
    }

    /// This shape printed with the graph's symbol names.
    pub fn display<'a>(&'a self, symbols: &'a [String]) -> impl fmt::Display + 'a {
        ShapeDisplay(self, symbols)
    }
}

struct ShapeDisplay<'a>(&'a Shape, &'a [String]);

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.0 .0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match d {
                Dim::Fixed(n) => write!(f, "{n}")?,
                Dim::Sym(s) => match self.1.get(s.0 as usize) {
                    Some(name) => f.write_str(name)?,
                    None => write!(f, "?sym{}", s.0)?,
                },
            }
        }
        f.write_str("]")
    }
}

/// The element type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: activations.
    F32,
    /// 32-bit unsigned integer: token ids, positions, indices.
    U32,
    /// Weights stored in an exodus-numerics format (GGUF blocks, MX, FP8,
    /// bf16, ...), read by matmul and embedding.
    Weights(Format),
    /// A paged KV cache of this layout (shape `[blocks]`): state that
    /// attention nodes write and read, kept by the session across runs.
    KvCache(KvLayout),
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DType::F32 => f.write_str("f32"),
            DType::U32 => f.write_str("u32"),
            DType::Weights(format) => write!(f, "{format}"),
            DType::KvCache(l) => write!(
                f,
                "kv_cache<{}, block {}, {}x{}>",
                l.format().name(),
                l.block_size(),
                l.n_kv_heads(),
                l.head_dim()
            ),
        }
    }
}
