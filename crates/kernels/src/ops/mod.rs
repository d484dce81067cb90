//! Norms, rope, softmax, activations, elementwise, embedding gather, argmax/top-k. (Being built.)
