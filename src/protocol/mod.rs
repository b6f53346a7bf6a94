//! The wire protocol: JSON line types, the login's state machines
//! ([`handshake`]), the line reader and writer with their size limits and
//! sealing, username rules and the Fernet token shape check.

pub mod connection;
pub mod encode;
pub mod handshake;
pub mod limits;
pub mod token;
pub mod username;
pub mod wire;

pub use connection::{FrameError, FrameReader, FrameWriter};
