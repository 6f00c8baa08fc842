//! Tokio layer (placeholder while building).
