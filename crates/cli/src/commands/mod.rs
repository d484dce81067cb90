//! One module per subcommand, and the output macros they share.

/// `println!` that returns the I/O error instead of panicking when stdout
/// is closed (e.g. `exodus ... | head`); `main` ends quietly on a broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `print!` counterpart of [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

pub mod bench;
pub mod bench_serve;
pub mod comm;
pub mod convert;
pub mod fetch;
pub mod formats;
pub mod graph;
pub mod inspect;
pub mod model;
pub mod serve;
pub mod trace;
