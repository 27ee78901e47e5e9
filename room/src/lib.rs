//! Onmic's room domain, sans-IO: seats, roles, permissions, IM messages, gifts, tokens and the
//! wire protocol types. No sockets and no clock: time is an argument.
//!
//! The contract: a [`Room`] is driven by [`Room::handle`] (one [`Command`] at a time, at a given
//! [`Timestamp`]) and by [`Room::handle_timeout`] at the instant [`Room::poll_timeout`] names.
//! Every accepted command yields [`Event`]s with a room-wide, strictly increasing version; a
//! [`RoomState`] snapshot plus the events after it reproduce the room exactly
//! ([`RoomState::apply`]). [`Room::may_publish`] answers the media layer's question "may this uid
//! publish now", and the `SeatChanged`/`FloorGranted`/`FloorRevoked`/`MemberLeft` events are the
//! stream of changes it follows.
#![forbid(unsafe_code)]

pub mod command;
pub mod config;
pub mod ids;
pub mod im;
pub mod protocol;
pub mod room;
pub mod song_package;
pub mod state;
pub mod token;

pub use command::{Action, Actor, Command};
pub use config::{
    BombingAction, BossSeatSettings, ChatAllowed, ChatRules, Gift, ImPolicy, RoomMode, RoomSettings,
};
pub use ids::{AppId, GiftId, IdError, RoomId, SeatIndex, Timestamp, Uid};
pub use room::{LostSeat, Room, RoomError};
pub use state::{
    Event, EventKind, LeaveReason, Member, Pending, PendingEnd, Role, RoomState, Seat, SeatKind,
    SeatReason, SeatState,
};
