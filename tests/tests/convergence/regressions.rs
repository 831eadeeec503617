//! Deterministic regression cases found by the property test, each minimised to the steps
//! that matter.
