//! cmd-chat: throwaway, password-protected chat rooms in the terminal.
//!
//! - [`crypto`]: SRP-6a (compatible with cmd-chat 1.x), the room key, the
//!   sealed transport and the secret types.
//! - [`protocol`]: the JSON lines on the wire, their limits and framing.
//! - [`server`]: the room server — accept loop, room state, connection handler.
//! - [`client`]: the one client core every front end uses, plus the front
//!   ends: the interactive terminal UI, its plain line fallback, and the
//!   scripting mode.
//! - [`cli`]: the `cmd-chat` command line.

pub mod cli;
pub mod client;
pub mod crypto;
pub mod protocol;
pub mod server;
