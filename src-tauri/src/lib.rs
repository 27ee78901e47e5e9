//! Onmic Studio.
