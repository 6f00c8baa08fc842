//! VALE control (placeholder while building).
