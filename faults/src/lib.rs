//! firedrill faults (being built)
