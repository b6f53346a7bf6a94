//! Both sides of the login, run against each other without a socket, with
//! a relay in between that may rewrite any field as someone on the path
//! could.

use serde_json::{Value, json};

use super::*;
use crate::crypto::srp::{ServerSession, Verifier};

const PASSWORD: &str = "correct horse";

/// What a room offers: its verifier, salts and (native-only) stretch.
struct Room {
    verifier: Verifier,
    kdf: Option<KdfSpec>,
    allow_legacy: bool,
}

impl Room {
    fn native_only() -> Self {
        let params = KdfParams::CLIENT_MIN;
        let salt = [9u8; 16];
        let stretched = kdf::stretch(&Password::new(PASSWORD.into()), &salt, params).unwrap();
        Self {
            verifier: Verifier::new(&stretched),
            kdf: Some(KdfSpec {
                alg: "argon2id".into(),
                salt: STANDARD.encode(salt),
                params,
            }),
            allow_legacy: false,
        }
    }

    fn with_legacy() -> Self {
        Self {
            verifier: Verifier::new(&Password::new(PASSWORD.into())),
            kdf: None,
            allow_legacy: true,
        }
    }
}

/// A rewrite of one frame on its way, as JSON.
type Tamper = fn(&mut Value);

fn untouched(_: &mut Value) {}

fn relay<T: serde::Serialize, U: serde::de::DeserializeOwned>(frame: &T, tamper: Tamper) -> U {
    let mut value = serde_json::to_value(frame).unwrap();
    tamper(&mut value);
    serde_json::from_value(value).unwrap()
}

/// How a login through a relay ended.
#[derive(Debug)]
enum End {
    /// Both sides finished; the keys they would seal with agree.
    Sealed { keys_agree: bool },
    /// A 1.x login both sides finished.
    Legacy,
    /// The server refused the client's proof: the client is told so and
    /// the server has sent nothing but the challenge.
    ProofRefused,
    /// The server refused before the challenge.
    ServerRefused(#[allow(dead_code)] ErrorReply),
    /// The client stopped.
    Client(HandshakeError),
}

struct Relay {
    init: Tamper,
    challenge: Tamper,
    verify: Tamper,
}

const HONEST: Relay = Relay {
    init: untouched,
    challenge: untouched,
    verify: untouched,
};

fn login(room: &Room, resume: Option<ResumeAsk>, relay_: Relay) -> End {
    let (client, init) = ClientHello::start("ann", false, resume);
    run(room, client, init, relay_)
}

/// Runs a login the client has begun with `init` to its end.
fn run(room: &Room, client: ClientHello, init: HandshakeRequest, relay_: Relay) -> End {
    let hello = match ServerHello::read(relay(&init, relay_.init), room.allow_legacy) {
        Ok(hello) => hello,
        Err(reply) => return End::ServerRefused(reply),
    };
    let session = ServerSession::start(&room.verifier, &hello.a).unwrap();
    let (awaiting, challenge) = hello.challenge(
        "u1".into(),
        &session.public(),
        room.verifier.salt(),
        "cm9vbQ==",
        room.kdf.as_ref(),
    );
    let respond = match client.read_challenge(Reply::Ok(relay(&challenge, relay_.challenge))) {
        Ok(respond) => respond,
        Err(e) => return End::Client(e),
    };
    let (client, verify) = respond.respond(&Password::new(PASSWORD.into())).unwrap();
    let proof = match awaiting.read_proof(relay(&verify, relay_.verify)) {
        Ok(proof) => proof,
        Err(reply) => return End::ServerRefused(reply),
    };
    let legacy = proof.transcript.is_none();
    let session = match &proof.transcript {
        Some(t) => session.bind(t),
        None => session,
    };
    let Ok((h_amk, server_key)) = session.verify(&proof.m) else {
        return End::ProofRefused;
    };
    match client.read_welcome(Reply::Ok(welcome(&h_amk, legacy))) {
        Err(e) => End::Client(e),
        Ok(done) if legacy => {
            assert!(done.keys.is_none());
            End::Legacy
        }
        Ok(done) => {
            let (mut sealer, _) = done.keys.unwrap();
            let (_, mut opener) = derive_keys(&server_key, Side::Server);
            let sealed = sealer.seal(b"hello").unwrap();
            End::Sealed {
                keys_agree: opener.open(&sealed).is_ok_and(|p| p == b"hello"),
            }
        }
    }
}

#[test]
fn an_honest_login_seals_with_keys_both_ends_agree_on() {
    for room in [Room::native_only(), Room::with_legacy()] {
        assert!(matches!(
            login(&room, None, HONEST),
            End::Sealed { keys_agree: true }
        ));
    }
}

/// Every field that crosses before sealing, changed on the path: the login
/// fails, at the latest when the server checks the client's proof, so the
/// server never answers it.
#[test]
fn a_field_changed_on_the_path_fails_the_login() {
    let rewrites: [(&str, Relay); 8] = [
        (
            "username",
            Relay {
                init: |v| v["username"] = json!("bob"),
                ..HONEST
            },
        ),
        (
            "resume added",
            Relay {
                init: |v| v["resume"] = json!("u0"),
                ..HONEST
            },
        ),
        (
            "room id added",
            Relay {
                init: |v| v["room_id"] = json!("r0"),
                ..HONEST
            },
        ),
        (
            "room salt added",
            Relay {
                challenge: |v| v["room_salt"] = json!("eHh4"),
                ..HONEST
            },
        ),
        (
            "after_seq added",
            Relay {
                verify: |v| v["after_seq"] = json!(7),
                ..HONEST
            },
        ),
        (
            "kdf salt",
            Relay {
                challenge: |v| v["kdf"]["salt"] = json!("AAAAAAAAAAAAAAAAAAAAAA=="),
                ..HONEST
            },
        ),
        (
            "kdf memory",
            Relay {
                challenge: |v| v["kdf"]["m_kib"] = json!(16 * 1024),
                ..HONEST
            },
        ),
        (
            "kdf removed",
            Relay {
                challenge: |v| {
                    v.as_object_mut().unwrap().remove("kdf");
                },
                ..HONEST
            },
        ),
    ];
    for (what, relay) in rewrites {
        let end = login(&Room::native_only(), None, relay);
        assert!(matches!(end, End::ProofRefused), "{what}: {end:?}");
    }
}

/// The downgrade: `native` taken out of `srp_init` and put back into the
/// challenge. The server takes the login for 1.x, but a native client's
/// proof is never a 1.x proof, so the server sends nothing beyond the
/// challenge (no `H_AMK`, no `init`).
#[test]
fn a_native_proof_is_never_taken_for_a_1x_login() {
    let relay = Relay {
        init: |v| {
            v.as_object_mut().unwrap().remove("native");
        },
        challenge: |v| {
            v["native"] = json!(NATIVE_PROTOCOL);
            v.as_object_mut().unwrap().remove("room_salt");
        },
        ..HONEST
    };
    let end = login(&Room::with_legacy(), None, relay);
    assert!(matches!(end, End::ProofRefused), "{end:?}");
}

fn resume() -> ResumeAsk {
    ResumeAsk {
        user_id: "u0".into(),
        room_id: Some("r0".into()),
        token: Key32::new([5; 32]),
        after_seq: 3,
    }
}

/// A sealed session's reconnect answered as 1.x: the client stops before
/// computing, let alone sending, its proof.
#[test]
fn a_sealed_session_never_comes_back_in_clear() {
    let relay = Relay {
        challenge: |v| {
            v.as_object_mut().unwrap().remove("native");
        },
        ..HONEST
    };
    let end = login(&Room::with_legacy(), Some(resume()), relay);
    assert!(
        matches!(end, End::Client(HandshakeError::Downgrade)),
        "{end:?}"
    );
}

#[test]
fn the_point_a_reconnect_resumes_from_is_bound() {
    assert!(matches!(
        login(&Room::native_only(), Some(resume()), HONEST),
        End::Sealed { keys_agree: true }
    ));
    let relay = Relay {
        verify: |v| v["after_seq"] = json!(0),
        ..HONEST
    };
    let end = login(&Room::native_only(), Some(resume()), relay);
    assert!(matches!(end, End::ProofRefused), "{end:?}");
}

/// An impostor announcing a stretch outside the floor or ceiling gets no
/// proof at all.
#[test]
fn a_stretch_outside_the_floor_and_ceiling_is_refused_before_the_proof() {
    let cheap = Relay {
        challenge: |v| {
            v["kdf"]["m_kib"] = json!(8);
            v["kdf"]["t"] = json!(1);
        },
        ..HONEST
    };
    let costly = Relay {
        challenge: |v| v["kdf"]["t"] = json!(16),
        ..HONEST
    };
    for relay in [cheap, costly] {
        let end = login(&Room::native_only(), None, relay);
        assert!(
            matches!(end, End::Client(HandshakeError::Stretch(_))),
            "{end:?}"
        );
    }
}

/// A native login between two honest ends is sealed; the same server
/// refusing our proof is reported as after the proof, whatever it says.
#[test]
fn a_refusal_after_the_proof_says_so() {
    let (client, _) = ClientHello::start("ann", false, None);
    let room = Room::with_legacy();
    let challenge = Challenge {
        user_id: "u1".into(),
        b: STANDARD.encode(ServerSession::start(&room.verifier, &[2]).unwrap().public()),
        salt: STANDARD.encode(room.verifier.salt()),
        room_salt: None,
        native: Some(NATIVE_PROTOCOL),
        kdf: None,
    };
    let respond = client.read_challenge(Reply::Ok(challenge)).unwrap();
    let (awaiting, _) = respond.respond(&Password::new(PASSWORD.into())).unwrap();
    let busy = ErrorReply::new(ErrorCode::Busy, "busy");
    assert!(matches!(
        awaiting.read_welcome(Reply::Error(busy)),
        Err(HandshakeError::Refused {
            after_proof: true,
            ..
        })
    ));
}

/// The resume proof names the session and is bound to this login's `A`:
/// the right token passes, another token fails, and the proof replayed
/// with another `A` fails.
#[test]
fn a_resume_proof_is_bound_to_its_token_and_its_login() {
    let (_, init) = ClientHello::start("ann", false, Some(resume()));
    let hello = ServerHello::read(init.clone(), false).unwrap();
    assert!(hello.resume_proved(&Key32::new([5; 32])));
    assert!(!hello.resume_proved(&Key32::new([6; 32])));
    let (_, other) = ClientHello::start("ann", false, None);
    let replayed = match (init, other) {
        (
            HandshakeRequest::SrpInit {
                username,
                native,
                resume,
                room_id,
                resume_proof,
                ..
            },
            HandshakeRequest::SrpInit { a, .. },
        ) => HandshakeRequest::SrpInit {
            username,
            a,
            native,
            resume,
            room_id,
            resume_proof,
        },
        _ => unreachable!(),
    };
    let hello = ServerHello::read(replayed, false).unwrap();
    assert!(!hello.resume_proved(&Key32::new([5; 32])));
}

/// The 1.x client builds a Fernet from `session_key`
/// (`Fernet(base64.b64decode(session_key))`); a native client gets none.
#[test]
fn a_1x_welcome_carries_a_fernet_key_and_a_native_one_nothing() {
    let legacy = welcome(&[1; 32], true);
    let fernet_key =
        String::from_utf8(STANDARD.decode(legacy.session_key.unwrap()).unwrap()).unwrap();
    assert_eq!(URL_SAFE.decode(&fernet_key).unwrap().len(), 32);
    assert!(fernet::Fernet::new(&fernet_key).is_some());
    assert!(welcome(&[1; 32], false).session_key.is_none());
}

/// Tools that stand in for cmd-chat 1.x clients log in as 1.x does.
#[test]
fn a_login_as_1x_is_one_only_where_the_room_admits_1x() {
    let as_1x = || {
        let options = HelloOptions {
            allow_legacy: true,
            as_1x: true,
            ..HelloOptions::default()
        };
        ClientHello::start_with("ann", options)
    };
    let (client, init) = as_1x();
    assert!(matches!(
        run(&Room::with_legacy(), client, init, HONEST),
        End::Legacy
    ));
    let (client, init) = as_1x();
    assert!(matches!(
        run(&Room::native_only(), client, init, HONEST),
        End::ServerRefused(_)
    ));
    let answered_native = Relay {
        challenge: |v| v["native"] = json!(NATIVE_PROTOCOL),
        ..HONEST
    };
    let (client, init) = as_1x();
    assert!(matches!(
        run(&Room::with_legacy(), client, init, answered_native),
        End::Client(HandshakeError::Protocol(_))
    ));
}
