//! `exodus-trace`: spans recorded at negligible cost when tracing is off,
//! written as Chrome trace-event JSON (opens in Perfetto) and summarised as
//! an op table. (Being built: issue 3.)
