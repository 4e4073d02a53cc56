//! nnc-backends: from an optimized graph to code.
//!
//! The lowered program (a schedule of kernel steps with buffers at offsets in
//! one arena) is shared by the C and Cranelift code generators, so both
//! execute the same memory plan. Depends on `nnc-ir` and `nnc-passes`.
