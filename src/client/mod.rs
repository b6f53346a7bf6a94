//! The client side: one core ([`Client`]) and the front ends built on it.
//!
//! - [`terminal`]: the interactive UI `cmd-chat connect` opens on a terminal.
//! - [`mod@line`]: the same session over plain standard input and output, where
//!   the terminal UI cannot run.
//! - [`script`]: JSON events out, lines in, for programs.
//!
//! [`private`] holds the per-peer state of private conversations,
//! `receipts` our messages between sending and their receipt, and
//! `transfers` the files on their way in and out; the core drives all
//! three, which do no I/O. [`files`] reads what is sent and saves what was
//! received.
//!
//! Every front end parses a line with [`command`] and carries it out with
//! [`dispatch`], then shows the outcome its own way. The two human front
//! ends also share [`render`] (what an event looks like); everything a peer
//! sent passes through [`sanitize`] on its way to the screen.

pub mod command;
mod core;
pub mod dispatch;
pub mod error;
mod event;
pub mod files;
pub mod line;
mod login;
pub mod private;
mod receipts;
pub mod render;
pub mod sanitize;
pub mod script;
mod sending;
mod session;
pub mod terminal;
mod transfers;
pub mod typed_path;

pub use crate::protocol::wire::KnockOutcome;
pub use core::{ChatMessage, Client, ClientConfig, Event, PrivateMessage, Transport, Waiting};
pub use error::{ClientError, exit_code};
pub use login::dial;
