//! Harness for Onmic end-to-end tests.
