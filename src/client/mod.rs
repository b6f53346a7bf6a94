//! The client side: one core ([`Client`]) and the front ends built on it.

pub mod command;
mod core;
pub mod error;
pub mod line;
pub mod render;
pub mod sanitize;
pub mod script;
mod session;

pub use core::{ChatMessage, Client, ClientConfig, Event, Transport};
pub use error::{ClientError, exit_code};
