//! firedrill probes (being built)
