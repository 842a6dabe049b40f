use super::*;
use proptest::prelude::*;

fn addr() -> impl Strategy<Value = SocketAddr> {
    (any::<[u8; 4]>(), any::<u16>())
        .prop_map(|(ip, port)| SocketAddr::from((std::net::Ipv4Addr::from(ip), port)))
}

fn user() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,32}"
}

fn peer() -> impl Strategy<Value = PeerInfo> {
    (any::<u32>(), user(), addr(), cert()).prop_map(|(id, user, addr, cert)| PeerInfo {
        node_id: NodeId(id),
        user,
        addr,
        cert,
    })
}

fn sig() -> impl Strategy<Value = Sig> {
    proptest::collection::vec(any::<u8>(), 64).prop_map(|v| {
        let mut s = [0u8; 64];
        s.copy_from_slice(&v);
        s
    })
}

fn cert() -> impl Strategy<Value = Cert> {
    (any::<Key>(), any::<Key>(), any::<u64>(), sig()).prop_map(
        |(sign_pk, dh_pk, expires_ms, sig)| Cert {
            sign_pk,
            dh_pk,
            expires_ms,
            sig,
        },
    )
}

fn group() -> impl Strategy<Value = GroupMsg> {
    (
        any::<u32>(),
        1u64..u64::MAX,
        1u64..1_000_000,
        proptest::collection::vec((any::<u32>(), 1u64..1000), 0..8),
        ".{0,100}",
        sig(),
        any::<u64>(),
    )
        .prop_map(|(a, seq, lamport, deps, text, sig, time_ms)| GroupMsg {
            author: NodeId(a),
            seq,
            lamport,
            deps: deps
                .into_iter()
                .map(|(n, s)| Dot::new(NodeId(n), s))
                .collect(),
            text,
            time_ms,
            sig,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        any::<u32>().prop_map(|n| Message::Fetch { node_id: NodeId(n) }),
        (
            proptest::collection::vec(peer(), 0..4),
            proptest::option::of(cert())
        )
            .prop_map(|(newcomers, renewed)| Message::Pending { newcomers, renewed }),
        (peer(), proptest::collection::vec(peer(), 0..4))
            .prop_map(|(from, peers)| Message::Connect { from, peers }),
        (peer(), any::<bool>()).prop_map(|(info, joined)| Message::Hello { info, joined }),
        (peer(), proptest::collection::vec(peer(), 0..3))
            .prop_map(|(info, recent)| Message::HelloAck { info, recent }),
        (any::<u16>(), group()).prop_map(|(hop, msg)| Message::Group { hop, msg }),
        (proptest::collection::vec(group(), 0..4), any::<bool>())
            .prop_map(|(msgs, more)| Message::Repair { msgs, more }),
        (
            proptest::collection::btree_map(10u32..20, 1u64..100, 0..10),
            any::<bool>()
        )
            .prop_map(|(m, reply)| Message::Digest {
                lo: NodeId(10),
                hi: NodeId(20),
                entries: m.into_iter().map(|(k, v)| (NodeId(k), v)).collect(),
                reply,
                members: 3,
            }),
        (
            any::<u32>(),
            any::<u32>(),
            1u64..1000,
            any::<u64>(),
            ".{0,100}"
        )
            .prop_map(|(f, t, seq, seen, text)| Message::Private(PrivateMsg {
                from: NodeId(f),
                to: NodeId(t),
                seq,
                seen,
                text,
                time_ms: 1_700_000_000_000,
            })),
        (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(f, t, upto)| {
            Message::PrivateAck {
                from: NodeId(f),
                to: NodeId(t),
                upto,
            }
        }),
        (any::<u64>(), proptest::collection::vec(peer(), 0..3))
            .prop_map(|(nonce, gossip)| Message::Ping { nonce, gossip }),
        (any::<u64>(), addr()).prop_map(|(nonce, target)| Message::PingReq { nonce, target }),
        any::<u32>().prop_map(|n| Message::Bye { node_id: NodeId(n) }),
        Just(Message::Prune),
        Just(Message::Graft),
        Just(Message::Forget),
        proptest::collection::vec(any::<u32>().prop_map(NodeId), 0..=MAX_WHOIS)
            .prop_map(|ids| Message::WhoIs { ids }),
        proptest::collection::vec(peer(), 0..3).prop_map(|peers| Message::Certs { peers }),
        "[a-z]{1,32}".prop_map(|user| Message::Lookup { user }),
        (
            proptest::collection::vec(group(), 0..3),
            any::<bool>(),
            proptest::collection::vec(peer(), 0..2)
        )
            .prop_map(|(msgs, more, authors)| Message::RepairFrom {
                msgs,
                more,
                authors
            }),
        (any::<u16>(), group(), peer()).prop_map(|(hop, msg, author)| Message::GroupFrom {
            hop,
            msg,
            author
        }),
        (any::<u16>(), any::<u32>(), group()).prop_map(|(hop, limit, msg)| Message::Ring {
            hop,
            limit: NodeId(limit),
            msg
        }),
        proptest::collection::vec(any::<u32>(), 0..=MAX_RING_DOWN).prop_map(|ids| {
            Message::RingDown {
                ids: ids.into_iter().map(NodeId).collect(),
            }
        }),
        proptest::collection::vec((any::<u32>(), 1u64..), 0..=MAX_RING_ACK).prop_map(|dots| {
            Message::RingAck {
                dots: dots
                    .into_iter()
                    .map(|(a, seq)| Dot::new(NodeId(a), seq))
                    .collect(),
            }
        }),
        (
            any::<u32>(),
            any::<u32>(),
            1u64..,
            any::<u64>(),
            any::<[u8; 24]>(),
            proptest::collection::vec(any::<u8>(), 16..MAX_MAIL_SEALED),
            any::<bool>(),
            sig()
        )
            .prop_map(|(f, t, seq, expires_ms, nonce, sealed, deposit, sig)| {
                let b = MailBlob {
                    from: NodeId(f),
                    to: NodeId(t),
                    seq,
                    expires_ms,
                    nonce,
                    sealed,
                    sig,
                };
                if deposit {
                    Message::Deposit(b)
                } else {
                    Message::Mail(b)
                }
            }),
        (any::<u32>(), 1u64..).prop_map(|(t, seq)| Message::Stored { to: NodeId(t), seq }),
        (any::<u32>(), any::<u64>()).prop_map(|(f, upto)| Message::MailAck {
            from: NodeId(f),
            upto
        }),
    ]
}

fn envelope_parts() -> impl Strategy<Value = (u8, u32, u32, u64, Option<SenderCert>, Vec<u8>, Key)>
{
    (
        0u8..5,
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
        proptest::option::of((user(), cert()).prop_map(|(user, cert)| SenderCert { user, cert })),
        proptest::collection::vec(any::<u8>(), 16..700),
        any::<Key>(),
    )
}

fn envelope(p: &(u8, u32, u32, u64, Option<SenderCert>, Vec<u8>, Key)) -> Envelope<'_> {
    let (kind, from, epoch, counter, cert, bytes, key) = p;
    match kind {
        0 => Envelope::Link {
            from: NodeId(*from),
            epoch: *epoch,
            counter: *counter,
            cert: cert.clone(),
            sealed: bytes,
        },
        1 => Envelope::KeyRequest { pad: bytes },
        2 => Envelope::KeyReply {
            dh_pk: *key,
            sign_pk: *key,
            cookie: [7; 16],
        },
        3 => Envelope::AuthHello { noise: bytes },
        _ => Envelope::AuthAnswer {
            to: [3; 8],
            noise: bytes,
        },
    }
}

proptest! {
    #[test]
    fn codec_round_trips(msg in message()) {
        let bytes = encode(&msg).expect("generated messages fit");
        prop_assert!(bytes.len() <= MAX_PAYLOAD);
        prop_assert_eq!(decode(&bytes), Ok(msg));
    }

    #[test]
    fn envelopes_round_trip_and_fit(parts in envelope_parts()) {
        let env = envelope(&parts);
        let bytes = encode_envelope(&env).expect("fits");
        prop_assert!(bytes.len() <= MAX_DATAGRAM);
        prop_assert_eq!(decode_envelope(&bytes), Ok(env));
    }

    #[test]
    fn a_relay_wraps_any_link_datagram_and_gives_it_back_unchanged(
        parts in envelope_parts(),
        to in any::<u32>(),
    ) {
        let inner = encode_envelope(&envelope(&(0, parts.1, parts.2, parts.3, parts.4.clone(), parts.5.clone(), parts.6)))
            .expect("fits");
        for env in [
            Envelope::Relay { to: NodeId(to), inner: &inner },
            Envelope::Relayed { inner: &inner },
        ] {
            let bytes = encode_envelope(&env).expect("a relay envelope fits any datagram");
            prop_assert!(bytes.len() <= MAX_RELAY_DATAGRAM);
            prop_assert_eq!(decode_envelope(&bytes), Ok(env));
        }
    }

    #[test]
    fn largest_link_envelope_overhead_is_bounded(
        cert in cert(),
        from in any::<u32>(),
        epoch in any::<u32>(),
        counter in any::<u64>(),
    ) {
        let sealed = vec![0u8; MAX_PAYLOAD + TAG_LEN];
        let env = Envelope::Link {
            from: NodeId(from),
            epoch,
            counter,
            cert: Some(SenderCert { user: "u".repeat(MAX_USERNAME), cert }),
            sealed: &sealed,
        };
        prop_assert!(encode_envelope(&env).is_ok());
    }

    #[test]
    fn decoding_random_envelopes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let _ = decode_envelope(&bytes);
        let mut framed = vec![MAGIC[0], MAGIC[1], VERSION];
        framed.extend_from_slice(&bytes);
        let _ = decode_envelope(&framed);
        let _ = decode_auth_request(&bytes);
        let _ = from_payload::<AuthReply>(&bytes);
    }

    #[test]
    fn flipped_envelopes_never_panic(parts in envelope_parts(), idx in any::<usize>(), flip in 1u8..=255) {
        let mut bytes = encode_envelope(&envelope(&parts)).expect("fits");
        let i = idx % bytes.len();
        bytes[i] ^= flip;
        let _ = decode_envelope(&bytes);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..1400)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn flipped_bytes_never_panic(msg in message(), idx in any::<usize>(), flip in 1u8..=255) {
        let mut bytes = encode(&msg).expect("fits");
        let i = idx % bytes.len();
        bytes[i] ^= flip;
        let _ = decode(&bytes);
    }

    #[test]
    fn batches_fit_the_budget(msgs in proptest::collection::vec(group(), 0..40)) {
        for batch in pack_batches(&msgs, BATCH_BUDGET) {
            let m = Message::Repair { msgs: batch, more: true };
            prop_assert!(encode(&m).is_ok());
        }
    }
}

#[test]
fn oversized_text_is_refused_by_encode_and_decode() {
    let msg = Message::Group {
        hop: 0,
        msg: GroupMsg {
            author: NodeId(1),
            seq: 1,
            lamport: 1,
            deps: vec![],
            text: "x".repeat(MAX_DATAGRAM),
            time_ms: 0,
            sig: [0; 64],
        },
    };
    assert!(matches!(encode(&msg), Err(EncodeError::TooLarge(_))));
    let msg = Message::Group {
        hop: 0,
        msg: GroupMsg {
            author: NodeId(1),
            seq: 1,
            lamport: 1,
            deps: vec![],
            text: "x".repeat(MAX_TEXT_BYTES + 1),
            time_ms: 0,
            sig: [0; 64],
        },
    };
    let bytes = encode(&msg).expect("fits in a payload");
    assert_eq!(decode(&bytes), Err(DecodeError::Bounds("text")));
}

#[test]
fn wrong_magic_version_and_trailing_bytes_are_refused() {
    let mut bytes = encode(&Message::Bye { node_id: NodeId(3) }).expect("fits");
    bytes.push(0);
    assert_eq!(decode(&bytes), Err(DecodeError::Body));
    assert_eq!(
        decode_envelope(b"signup?user1|password123"),
        Err(DecodeError::Magic)
    );
    assert_eq!(
        decode_envelope(&[b'p', b'C', 9, 0]),
        Err(DecodeError::Version(9))
    );
    assert_eq!(decode_envelope(&[]), Err(DecodeError::Length(0)));
    let env = encode_envelope(&Envelope::KeyRequest { pad: &[0; 4] }).expect("fits");
    let mut long = env.clone();
    long.push(0);
    assert_eq!(decode_envelope(&long), Err(DecodeError::Body));
}

#[test]
fn usernames_are_validated() {
    assert!(valid_username("alice_01.x-y"));
    assert!(!valid_username(""));
    assert!(!valid_username("a b"));
    assert!(!valid_username(&"a".repeat(33)));
}

#[test]
fn a_message_time_is_signed_and_old_messages_keep_their_v1_bytes() {
    let mut m = GroupMsg {
        author: NodeId(1),
        seq: 1,
        lamport: 1,
        deps: vec![],
        text: "hi".into(),
        time_ms: 0,
        sig: [0; 64],
    };
    let v1 = m.signed_bytes();
    assert!(v1.windows(16).any(|w| w == b"p2pchat-group-v1"));
    m.time_ms = 1_700_000_000_000;
    let v2 = m.signed_bytes();
    assert!(v2.windows(16).any(|w| w == b"p2pchat-group-v2"));
    m.time_ms += 1;
    assert_ne!(m.signed_bytes(), v2, "the time is covered by the signature");
    assert_ne!(v1, v2);
}

#[test]
fn a_relay_envelope_carries_one_link_datagram_and_nothing_else() {
    let link = encode_envelope(&Envelope::Link {
        from: NodeId(7),
        epoch: 1,
        counter: 1,
        cert: None,
        sealed: &[0; MAX_PAYLOAD + TAG_LEN],
    })
    .expect("fits");
    // The largest link datagram still fits a relay envelope.
    let relayed = encode_envelope(&Envelope::Relay {
        to: NodeId(u32::MAX),
        inner: &link,
    })
    .expect("fits");
    assert!(relayed.len() <= MAX_RELAY_DATAGRAM);
    // A relay inside a relay, or an auth step, is refused.
    let nested = encode_envelope(&Envelope::Relayed { inner: &link }).expect("fits");
    let twice = encode_envelope(&Envelope::Relayed { inner: &nested }).expect("fits");
    assert!(decode_envelope(&twice).is_err());
    let key = encode_envelope(&Envelope::KeyRequest { pad: &[0; 4] }).expect("fits");
    let odd = encode_envelope(&Envelope::Relay {
        to: NodeId(1),
        inner: &key,
    })
    .expect("fits");
    assert_eq!(
        decode_envelope(&odd),
        Err(DecodeError::Bounds("relayed datagram"))
    );
    // Only relay envelopes may be longer than MAX_DATAGRAM.
    // A well-formed key request of 1211 bytes: variant 1, a 1205-byte pad.
    let mut long = vec![MAGIC[0], MAGIC[1], VERSION, 1, 0xB5, 0x09];
    long.resize(6 + 1205, 0);
    assert_eq!(decode_envelope(&long), Err(DecodeError::Length(1211)));
}
