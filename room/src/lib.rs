//! Onmic's room domain, sans-IO: seats, roles, permissions, IM messages, gifts, tokens and the
//! wire protocol types. No sockets and no clock: time is an argument.
#![forbid(unsafe_code)]
