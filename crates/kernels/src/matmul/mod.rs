//! `out = x · Wᵀ` against weights in any exodus-numerics format. (Being built.)
