//! `exodus-runtime`: where and when work runs — devices, streams, events, a
//! caching allocator and captured launch graphs. (Being built: issue 3.)
