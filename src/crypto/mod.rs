//! Cryptography: SRP-6a authentication, the room key, the sealed transport
//! and the secret types that hold them.

pub mod kdf;
pub mod room_key;
pub mod secret;
pub mod srp;
pub mod transport;

pub use room_key::{RoomCipher, UndecryptableMessage, derive_room_key};
pub use secret::{Key32, Password};
