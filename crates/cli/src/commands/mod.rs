//! One module per subcommand.

pub mod bench;
pub mod convert;
pub mod formats;
pub mod trace;
