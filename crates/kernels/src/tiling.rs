//! Explicit tiling: block sizes per cache level and the thread split. (Being built.)
