//! Persistent worker threads for data-parallel kernels. (Being built.)
