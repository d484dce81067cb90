//! One module per subcommand.

pub mod convert;
pub mod formats;
pub mod trace;
