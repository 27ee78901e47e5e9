//! Onmic room server.
