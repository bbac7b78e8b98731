//! firedrill talk (being built)
