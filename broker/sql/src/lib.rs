//! SQL over columnar topics (being built).
