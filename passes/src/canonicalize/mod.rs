//! Canonicalisation: rewrites exporter-specific float graphs into one form, with linear layers
//! as `Gemm`/`Conv` carrying all their affine per-channel work, no no-op layout ops, no
//! constant sub-expressions and no client-side post-processing. Each rewrite is its own small
//! pass (see the crate docs for their order).

pub mod drop_identity;
pub mod fold_batchnorm;
pub mod fold_constants;
pub mod matmul_to_gemm;
pub mod simplify_layout;
pub mod split_postprocessing;
