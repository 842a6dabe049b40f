use super::*;
use crate::secure::Link;
use p2pchat_proto::PeerInfo;

const WALL: u64 = 1_700_000_000_000;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn server_with(cfg: AuthConfig, records: &[Record]) -> AuthServer {
    let mut s = AuthServer::new(
        cfg,
        Box::new(InsecurePlainCredentials),
        records,
        [5; 32],
        WALL,
    );
    while s.poll_output().is_some() {}
    s
}

fn server(max_nodes: usize) -> AuthServer {
    server_with(
        AuthConfig {
            max_nodes,
            ..AuthConfig::default()
        },
        &[],
    )
}

fn client_ident(port: u16) -> Identity {
    Identity::generate(&mut secure::crypto_rng([(port % 251) as u8; 32]))
}

fn sends(s: &mut AuthServer) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Send { bytes, .. } = o {
            out.push(bytes);
        }
    }
    out
}

fn sends_to(s: &mut AuthServer, to: SocketAddr) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Send { bytes, to: dest } = o {
            if dest == to {
                out.push(bytes);
            }
        }
    }
    out
}

fn seed(port: u16, req: u64) -> [u8; 32] {
    let mut s = [0u8; 32];
    s[..2].copy_from_slice(&port.to_le_bytes());
    s[2..10].copy_from_slice(&req.to_le_bytes());
    s
}

/// A whole signup/signin as a node does it: key request, then Noise NK.
fn auth(
    s: &mut AuthServer,
    now: Duration,
    port: u16,
    req: u64,
    user: &str,
    pw: &str,
    up: bool,
) -> Result<Admission, AuthError> {
    let kr = encode_envelope(&Envelope::KeyRequest {
        pad: &[0; MIN_KEY_REQUEST],
    })
    .expect("fits");
    s.handle_datagram(now, addr(port), &kr);
    let replies = sends(s);
    let Some(Ok(Envelope::KeyReply { dh_pk, cookie, .. })) =
        replies.first().map(|b| decode_envelope(b))
    else {
        panic!("no key reply")
    };
    assert!(replies[0].len() <= kr.len(), "no amplification");
    let me = client_ident(port);
    let request = AuthRequest {
        req,
        signup: up,
        user: user.into(),
        password: pw.into(),
        sign_pk: me.sign_pk,
        dh_pk: me.dh_pk,
        cookie,
        pad: vec![0; MIN_AUTH_HELLO],
    };
    let (mut hs, m1) = secure::nk_initiate(
        &dh_pk,
        seed(port, req),
        &to_payload(&request).expect("fits"),
    )
    .expect("nk");
    let hello = encode_envelope(&Envelope::AuthHello { noise: &m1 }).expect("fits");
    s.handle_datagram(now, addr(port), &hello);
    let replies = sends(s);
    let Some(Ok(Envelope::AuthAnswer { noise, .. })) = replies.first().map(|b| decode_envelope(b))
    else {
        panic!("no answer")
    };
    assert!(replies[0].len() <= hello.len(), "no amplification");
    let payload = secure::nk_finish(&mut hs, noise).expect("authentic answer");
    let reply: AuthReply = p2pchat_proto::wire::from_payload(&payload).expect("reply");
    assert_eq!(reply.req, req);
    reply.result
}

/// A member's poll over its link; returns the decrypted answer.
fn fetch(
    s: &mut AuthServer,
    now: Duration,
    port: u16,
    user: &str,
    adm: &Admission,
) -> Vec<Message> {
    let me = client_ident(port);
    let mut link = Link::new(&me, adm.node_id, SERVER_ID, s.key());
    let epoch = (now.as_millis() as u32).wrapping_add(1);
    let dg = link
        .seal(
            adm.node_id,
            epoch,
            &encode(&Message::Fetch {
                node_id: adm.node_id,
            })
            .expect("fits"),
            Some(SenderCert {
                user: user.into(),
                cert: adm.cert.clone(),
            }),
        )
        .expect("seal");
    s.handle_datagram(now, addr(port), &dg);
    // (What goes to others, such as a newcomer's `Punch`, is not for this link.)
    sends_to(s, addr(port))
        .iter()
        .map(|b| match decode_envelope(b) {
            Ok(Envelope::Link {
                from,
                epoch,
                counter,
                sealed,
                ..
            }) => {
                decode(&link.open(from, epoch, counter, sealed).expect("authentic")).expect("valid")
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect()
}

#[test]
fn signup_then_signin_gives_the_same_id_and_wrong_password_is_refused() {
    let mut s = server(10);
    let t = Duration::ZERO;
    let a = auth(&mut s, t, 5000, 1, "alice", "pw", true).expect("signup");
    assert!(a.first);
    let vk = secure::verifying_key(&a.server_sign_pk).expect("key");
    assert!(secure::cert_ok(&vk, a.node_id, "alice", &a.cert));
    assert_eq!(a.cert.dh_pk, client_ident(5000).dh_pk);
    assert_eq!(
        auth(&mut s, t, 5000, 2, "alice", "pw2", true),
        Err(AuthError::UsernameTaken)
    );
    assert_eq!(
        auth(&mut s, t, 5000, 3, "alice", "bad", false),
        Err(AuthError::BadCredentials)
    );
    assert_eq!(
        auth(&mut s, t, 5000, 4, "nobody", "pw", false),
        Err(AuthError::BadCredentials)
    );
    let again = auth(&mut s, t, 5000, 5, "alice", "pw", false).expect("signin");
    assert_eq!(again.node_id, a.node_id, "the same device, the same id");
    assert_eq!(
        auth(&mut s, t, 5000, 6, "bad name", "pw", true),
        Err(AuthError::InvalidUsername)
    );
}

#[test]
fn a_retried_signup_gets_the_cached_answer() {
    let mut s = server(10);
    let a = auth(&mut s, Duration::ZERO, 5000, 7, "alice", "pw", true).expect("signup");
    let b = auth(
        &mut s,
        Duration::from_millis(300),
        5000,
        7,
        "alice",
        "pw",
        true,
    )
    .expect("retry");
    assert_eq!(a, b);
}

#[test]
fn repeated_wrong_passwords_are_throttled_while_others_get_in() {
    let mut s = server(10);
    let t = Duration::ZERO;
    auth(&mut s, t, 5000, 1, "alice", "pw", true).expect("signup");
    auth(&mut s, t, 5001, 1, "bob", "pw", true).expect("signup");
    for req in 10..15 {
        assert_eq!(
            auth(&mut s, t, 5002, req, "alice", "guess", false),
            Err(AuthError::BadCredentials)
        );
    }
    assert_eq!(
        auth(&mut s, t, 5002, 20, "alice", "guess", false),
        Err(AuthError::BadCredentials)
    );
    // Locked now, even with the right password.
    assert!(matches!(
        auth(&mut s, t, 5002, 21, "alice", "pw", false),
        Err(AuthError::Throttled(n)) if n >= 1
    ));
    // Bob, from the same address, is not affected.
    assert!(auth(&mut s, t, 5002, 22, "bob", "pw", false).is_ok());
    // Once the lock has passed, the right password works again.
    let later = Duration::from_secs(10);
    assert!(auth(&mut s, later, 5000, 23, "alice", "pw", false).is_ok());
    assert!(s.stats().throttled >= 1);
}

#[test]
fn stale_cookies_replays_and_short_requests_change_nothing() {
    let mut s = server(10);
    // A key request shorter than the minimum gets no answer at all.
    let short = encode_envelope(&Envelope::KeyRequest { pad: &[0; 8] }).expect("fits");
    s.handle_datagram(Duration::ZERO, addr(5000), &short);
    assert!(sends(&mut s).is_empty());
    // A hello replayed a minute later, from another address, with a stale cookie.
    let kr = encode_envelope(&Envelope::KeyRequest {
        pad: &[0; MIN_KEY_REQUEST],
    })
    .expect("fits");
    s.handle_datagram(Duration::ZERO, addr(5000), &kr);
    let cookie = match decode_envelope(&sends(&mut s)[0]) {
        Ok(Envelope::KeyReply { cookie, .. }) => cookie,
        other => panic!("{other:?}"),
    };
    let me = client_ident(5000);
    let request = AuthRequest {
        req: 1,
        signup: true,
        user: "eve".into(),
        password: "pw".into(),
        sign_pk: me.sign_pk,
        dh_pk: me.dh_pk,
        cookie,
        pad: vec![0; MIN_AUTH_HELLO],
    };
    let (_, m1) =
        secure::nk_initiate(&s.key(), [1; 32], &to_payload(&request).expect("fits")).expect("nk");
    let hello = encode_envelope(&Envelope::AuthHello { noise: &m1 }).expect("fits");
    s.handle_datagram(Duration::from_secs(120), addr(6000), &hello);
    assert_eq!(
        sends(&mut s).len(),
        1,
        "answered with StaleCookie inside Noise"
    );
    assert_eq!(s.user_count(), 0, "no account was created");
    // The same bytes again: the cached answer, still no account.
    s.handle_datagram(Duration::from_secs(121), addr(6000), &hello);
    assert_eq!(sends(&mut s).len(), 1);
    assert_eq!(s.user_count(), 0);
    assert_eq!(s.stats().replayed, 1);
}

#[test]
fn newcomers_are_queued_handed_to_fetchers_and_reoffered() {
    let mut s = server(10);
    let t0 = Duration::ZERO;
    let a = auth(&mut s, t0, 5000, 1, "alice", "pw", true).expect("first");
    let b = auth(&mut s, t0, 5001, 1, "bob", "pw", true).expect("queued");
    assert!(!b.first);
    assert_eq!(s.queue_len(), 1);
    let got = fetch(&mut s, t0, 5000, "alice", &a);
    assert!(
        matches!(&got[..], [Message::Pending { newcomers, .. }] if newcomers.len() == 1 && newcomers[0].user == "bob")
    );
    // Not offered again right away...
    let got = fetch(&mut s, t0 + Duration::from_millis(100), 5000, "alice", &a);
    assert!(matches!(&got[..], [Message::Pending { newcomers, .. }] if newcomers.is_empty()));
    // ...but again once the re-offer delay has passed without bob polling.
    let later = t0 + Duration::from_secs(2);
    let got = fetch(&mut s, later, 5000, "alice", &a);
    assert!(matches!(&got[..], [Message::Pending { newcomers, .. }] if newcomers.len() == 1));
    // Each time bob is offered, he is told to send to alice (a NAT in front of him would
    // drop her Connect otherwise).
    let punch = fetch_punches(&mut s, later + Duration::from_secs(2), &a, &b);
    assert_eq!(punch.map(|p| p.node_id), Some(a.node_id));
    // Bob polls: he is in, and leaves the queue.
    fetch(&mut s, later, 5001, "bob", &b);
    assert_eq!(s.queue_len(), 0);
    assert_eq!(s.live_count(later), 2);
    // A poll claiming bob's certificate under alice's keys is refused.
    let forged = Admission {
        cert: b.cert.clone(),
        ..a.clone()
    };
    let before = s.live_count(later);
    let me = client_ident(5000);
    let mut link = Link::new(&me, b.node_id, SERVER_ID, s.key());
    let dg = link
        .seal(
            b.node_id,
            99,
            &encode(&Message::Fetch { node_id: b.node_id }).expect("fits"),
            Some(SenderCert {
                user: "bob".into(),
                cert: forged.cert,
            }),
        )
        .expect("seal");
    s.handle_datagram(later, addr(5000), &dg);
    assert!(sends(&mut s).is_empty());
    assert_eq!(s.live_count(later), before);
}

/// alice polls once more; returns the peer of the `Punch` the server sent bob, if any.
fn fetch_punches(
    s: &mut AuthServer,
    now: Duration,
    alice: &Admission,
    bob: &Admission,
) -> Option<PeerInfo> {
    let me = client_ident(5000);
    let mut link = Link::new(&me, alice.node_id, SERVER_ID, s.key());
    let dg = link
        .seal(
            alice.node_id,
            (now.as_millis() as u32).wrapping_add(1),
            &encode(&Message::Fetch {
                node_id: alice.node_id,
            })
            .expect("fits"),
            Some(SenderCert {
                user: "alice".into(),
                cert: alice.cert.clone(),
            }),
        )
        .expect("seal");
    s.handle_datagram(now, addr(5000), &dg);
    let mut bob_link = Link::new(&client_ident(5001), bob.node_id, SERVER_ID, s.key());
    sends_to(s, addr(5001)).iter().find_map(|b| {
        let Ok(Envelope::Link {
            from,
            epoch,
            counter,
            sealed,
            ..
        }) = decode_envelope(b)
        else {
            return None;
        };
        match decode(&bob_link.open(from, epoch, counter, sealed)?) {
            Ok(Message::Punch { peer }) => Some(peer),
            _ => None,
        }
    })
}

/// `who` (at `port`) sends one message to the server over its link at `epoch`.
fn over_link(
    s: &mut AuthServer,
    now: Duration,
    port: u16,
    who: (&str, &Admission),
    epoch: u32,
    msg: &Message,
) {
    let mut link = Link::new(&client_ident(port), who.1.node_id, SERVER_ID, s.key());
    let dg = link
        .seal(
            who.1.node_id,
            epoch,
            &encode(msg).expect("fits"),
            Some(SenderCert {
                user: who.0.into(),
                cert: who.1.cert.clone(),
            }),
        )
        .expect("seal");
    s.handle_datagram(now, addr(port), &dg);
}

#[test]
fn a_punch_ask_tells_both_members_to_send_to_each_other_a_few_times_a_second_at_most() {
    let mut s = server(10);
    let t = Duration::ZERO;
    let a = auth(&mut s, t, 5000, 1, "alice", "pw", true).expect("alice");
    let b = auth(&mut s, t, 5001, 1, "bob", "pw", true).expect("bob");
    fetch(&mut s, t, 5000, "alice", &a);
    fetch(&mut s, t, 5001, "bob", &b);
    let t = Duration::from_millis(100);
    let ask = Message::PunchAsk { node_id: b.node_id };
    over_link(&mut s, t, 5000, ("alice", &a), 50, &ask);
    let to_bob = sends_to(&mut s, addr(5001));
    assert_eq!(to_bob.len(), 1, "one Punch for bob");
    over_link(&mut s, t, 5000, ("alice", &a), 51, &ask);
    assert_eq!(sends_to(&mut s, addr(5000)).len(), 1, "one Punch for alice");
    for epoch in 52..70 {
        over_link(&mut s, t, 5000, ("alice", &a), epoch, &ask);
    }
    let punches = sends_to(&mut s, addr(5000)).len();
    assert_eq!(
        punches as u32 + 2,
        PUNCHES_PER_SECOND,
        "the rest is throttled"
    );
    assert!(s.stats().throttled > 0);
    // Nothing for a node that holds no lease.
    let later = Duration::from_secs(60);
    over_link(&mut s, later, 5000, ("alice", &a), 90, &ask);
    assert!(sends_to(&mut s, addr(5001)).is_empty());
}

#[test]
fn certificates_are_renewed_at_half_life() {
    let mut s = server_with(
        AuthConfig {
            cert_lifetime: Duration::from_secs(100),
            ..AuthConfig::default()
        },
        &[],
    );
    let a = auth(&mut s, Duration::ZERO, 5000, 1, "alice", "pw", true).expect("signup");
    let got = fetch(&mut s, Duration::from_secs(10), 5000, "alice", &a);
    assert!(matches!(&got[..], [Message::Pending { renewed: None, .. }]));
    let got = fetch(&mut s, Duration::from_secs(60), 5000, "alice", &a);
    let [Message::Pending {
        renewed: Some(c), ..
    }] = &got[..]
    else {
        panic!("expected a renewal: {got:?}")
    };
    assert!(c.expires_ms > a.cert.expires_ms);
    assert_eq!(c.dh_pk, a.cert.dh_pk);
}

#[test]
fn the_cap_counts_live_and_waiting_nodes() {
    let mut s = server(2);
    let t = Duration::ZERO;
    auth(&mut s, t, 5000, 1, "a", "pw", true).expect("first");
    auth(&mut s, t, 5001, 1, "b", "pw", true).expect("second");
    assert_eq!(
        auth(&mut s, t, 5002, 1, "c", "pw", true),
        Err(AuthError::NetworkFull)
    );
    // Leases run out: room again, and the lone signer is first.
    let later = Duration::from_secs(60);
    let c = auth(&mut s, later, 5002, 2, "c", "pw", true).expect("room");
    assert!(c.first);
}

#[test]
fn a_full_queue_refuses_before_making_the_account_so_the_signup_can_ask_again() {
    let mut s = server_with(
        AuthConfig {
            queue_limit: 1,
            ..AuthConfig::default()
        },
        &[],
    );
    let t = Duration::ZERO;
    assert!(auth(&mut s, t, 5000, 1, "a", "pw", true).expect("a").first);
    auth(&mut s, t, 5001, 1, "b", "pw", true).expect("b waits");
    assert_eq!(
        auth(&mut s, t, 5002, 1, "c", "pw", true),
        Err(AuthError::QueueFull)
    );
    // b asking again is fine (already queued); c's name is still free once there is room.
    let b = auth(&mut s, t, 5001, 2, "b", "pw", false).expect("b again");
    // b polls: it is in the network and leaves the queue.
    fetch(&mut s, t, 5001, "b", &b);
    assert_eq!(s.queue_len(), 0);
    auth(&mut s, t, 5002, 2, "c", "pw", true).expect("c, later");
}

#[test]
fn restored_server_keeps_keys_accounts_and_never_reuses_ids() {
    let mut s = AuthServer::new(
        AuthConfig::default(),
        Box::new(InsecurePlainCredentials),
        &[],
        [5; 32],
        WALL,
    );
    let mut records = Vec::new();
    while let Some(o) = s.poll_output() {
        if let Output::Persist(r) = o {
            records.push(r);
        }
    }
    s.handle_datagram(Duration::ZERO, addr(1), b"garbage");
    assert_eq!(s.stats().malformed, 1);
    auth(&mut s, Duration::ZERO, 5000, 1, "x", "p", true).expect("signup");
    records.push(Record::User {
        user: "x".into(),
        node_id: NodeId(1),
        password_hash: "plain$p".into(),
    });
    let key = s.key();
    let mut restored = AuthServer::new(
        AuthConfig::default(),
        Box::new(InsecurePlainCredentials),
        &records,
        [6; 32],
        WALL,
    );
    assert_eq!(restored.key(), key, "the key survives a restart");
    assert_eq!(restored.user_count(), 1);
    let y = auth(&mut restored, Duration::ZERO, 5003, 9, "y", "pw", true).expect("signup");
    assert_eq!(y.node_id, NodeId(2));
    assert!(auth(&mut restored, Duration::ZERO, 5004, 9, "x", "p", false).is_ok());
}

#[test]
fn each_device_of_an_account_has_its_own_id_up_to_the_cap_and_a_revoked_one_is_refused() {
    let mut s = server_with(
        AuthConfig {
            max_devices: 2,
            ..AuthConfig::default()
        },
        &[],
    );
    let t = Duration::ZERO;
    let d1 = auth(&mut s, t, 5000, 1, "yuri", "pw", true).expect("signup");
    // A second data dir (other keys) signing in: a device of its own.
    let d2 = auth(&mut s, t, 5001, 2, "yuri", "pw", false).expect("second device");
    assert_ne!(d1.node_id, d2.node_id);
    let vk = secure::verifying_key(&d2.server_sign_pk).expect("key");
    assert!(secure::cert_ok(&vk, d2.node_id, "yuri", &d2.cert));
    // Each device keeps its id; a wrong password is still refused.
    let again = auth(&mut s, t, 5001, 3, "yuri", "pw", false).expect("signin");
    assert_eq!(again.node_id, d2.node_id);
    assert_eq!(
        auth(&mut s, t, 5002, 4, "yuri", "nope", false),
        Err(AuthError::BadCredentials)
    );
    // A third device is over the cap.
    assert_eq!(
        auth(&mut s, t, 5002, 5, "yuri", "pw", false),
        Err(AuthError::TooManyDevices(2))
    );
    // Revoked: refused, and a slot is free again.
    assert_eq!(s.dir.revoke("yuri", d1.node_id), Ok(true));
    assert_eq!(s.dir.revoke("ann", d2.node_id), Ok(false), "not ann's");
    assert_eq!(s.dir.knows(d1.node_id), Ok(false));
    assert_eq!(
        auth(&mut s, t, 5000, 6, "yuri", "pw", false),
        Err(AuthError::DeviceRevoked)
    );
    let d3 = auth(&mut s, t, 5002, 7, "yuri", "pw", false).expect("third device");
    assert!(d3.node_id.0 > d2.node_id.0, "ids are never reused");
    let listed = s
        .dir
        .devices(s.at(t), &AuthConfig::default(), "yuri")
        .expect("memory");
    assert_eq!(
        listed
            .iter()
            .map(|d| (d.node_id, d.revoked))
            .collect::<Vec<_>>(),
        [(d1.node_id, true), (d2.node_id, false), (d3.node_id, false)]
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(24))]
    /// Whatever happens to data dirs (new ones, lost ones, reinstalls), a node id belongs
    /// to one key forever and a key keeps its id: no dot `(node id, seq)` can be written by
    /// two devices.
    #[test]
    fn a_node_id_is_never_given_to_two_devices(
        steps in proptest::collection::vec((0u8..3, 0u16..12), 1..40),
    ) {
        let mut s = server_with(
            AuthConfig { max_devices: 4, ..AuthConfig::default() },
            &[],
        );
        let mut id_of_key: std::collections::HashMap<u16, NodeId> = Default::default();
        let mut key_of_id: std::collections::HashMap<NodeId, u16> = Default::default();
        for (k, (user, dir)) in steps.into_iter().enumerate() {
            // A data dir is a port here (its keys come from the port).
            let port = 6000 + u16::from(user) * 100 + dir;
            let name = format!("u{user}");
            let signup = !id_of_key.keys().any(|p| (p - 6000) / 100 == u16::from(user));
            let got = auth(&mut s, Duration::ZERO, port, k as u64 + 1, &name, "pw", signup);
            if let Ok(adm) = got {
                if let Some(id) = id_of_key.get(&port) {
                    proptest::prop_assert_eq!(*id, adm.node_id, "a key keeps its id");
                }
                if let Some(p) = key_of_id.get(&adm.node_id) {
                    proptest::prop_assert_eq!(*p, port, "an id has one key");
                }
                id_of_key.insert(port, adm.node_id);
                key_of_id.insert(adm.node_id, port);
            }
        }
    }
}

proptest::proptest! {
    #[test]
    fn arbitrary_datagrams_never_panic_and_are_never_amplified(
        bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1300),
        kind in 0u8..6,
    ) {
        let mut s = server(10);
        let mut b = bytes;
        if b.len() >= 4 && kind < 5 {
            // A valid header and envelope tag, so the decoders behind them are reached.
            b[..4].copy_from_slice(&[b'p', b'C', 2, kind]);
        }
        s.handle_datagram(Duration::ZERO, addr(1), &b);
        while let Some(o) = s.poll_output() {
            if let Output::Send { bytes: out, .. } = o {
                proptest::prop_assert!(out.len() <= b.len(), "{} answered with {}", b.len(), out.len());
            }
        }
        proptest::prop_assert_eq!(s.user_count(), 0);
    }
}

#[test]
fn signups_over_the_rate_limit_are_told_to_wait_not_that_they_failed() {
    let mut s = server_with(
        AuthConfig {
            source_signups: 2,
            ..AuthConfig::default()
        },
        &[],
    );
    let t = Duration::from_secs(1);
    assert!(auth(&mut s, t, 5000, 1, "ann", "pw", true).is_ok());
    assert!(auth(&mut s, t, 5001, 2, "ben", "pw", true).is_ok());
    // Same address (127.0.0.1), third signup in the window.
    let refused = auth(&mut s, t, 5002, 3, "cid", "pw", true);
    let Err(e @ AuthError::RateLimited(secs)) = refused else {
        panic!("{refused:?}")
    };
    assert!((1..=60).contains(&secs), "{secs}");
    assert!(e.to_string().contains("too many signups"), "{e}");
    // Signing in is not limited; after the window, signing up works again.
    assert!(auth(&mut s, t, 5003, 4, "ann", "pw", false).is_ok());
    let later = t + AuthConfig::default().source_window + Duration::from_secs(1);
    assert!(auth(&mut s, later, 5004, 5, "cid", "pw", true).is_ok());
}

#[test]
fn a_signup_asked_again_by_the_same_node_is_admitted_not_taken() {
    // The answer was lost (say, with the server that made the account): the node asks again
    // as a new request, perhaps of another server. Same node key and password: the account.
    let mut s = server(10);
    let t = Duration::ZERO;
    let first = auth(&mut s, t, 5000, 1, "ann", "pw", true).expect("ann");
    let again = auth(&mut s, t, 5000, 2, "ann", "pw", true).expect("same node, same password");
    assert_eq!(again.node_id, first.node_id);
    // Another node, or the same node with another password: the name is taken.
    assert_eq!(
        auth(&mut s, t, 5001, 1, "ann", "pw", true),
        Err(AuthError::UsernameTaken)
    );
    assert_eq!(
        auth(&mut s, t, 5000, 3, "ann", "other", true),
        Err(AuthError::UsernameTaken)
    );
    assert_eq!(s.user_count(), 1);
}

/// A server with `cfg`, alice (at port 5000) and bob (5001) admitted.
fn alice_and_bob(cfg: AuthConfig) -> (AuthServer, Admission, Admission) {
    let mut s = server_with(cfg, &[]);
    let t = Duration::ZERO;
    let a = auth(&mut s, t, 5000, 1, "alice", "pw", true).expect("alice");
    let b = auth(&mut s, t, 5001, 1, "bob", "pw", true).expect("bob");
    (s, a, b)
}

/// The link datagram number `n` of `from` (at `from_port`) for `to` (at `to_port`), and
/// the same wrapped as `Relay` to `to`.
fn relayed_datagram(from: (&Admission, u16), to: (&Admission, u16), n: u32) -> (Vec<u8>, Vec<u8>) {
    let mut link = Link::new(
        &client_ident(from.1),
        from.0.node_id,
        to.0.node_id,
        client_ident(to.1).dh_pk,
    );
    let inner = link.seal(from.0.node_id, n, b"hello", None).expect("seal");
    let wrapped = encode_envelope(&Envelope::Relay {
        to: to.0.node_id,
        inner: &inner,
    })
    .expect("fits");
    (inner, wrapped)
}

#[test]
fn the_server_relays_a_nodes_own_datagrams_to_a_node_it_sees_within_a_budget() {
    let (mut s, a, b) = alice_and_bob(AuthConfig::default());
    let t = Duration::ZERO;
    fetch(&mut s, t, 5000, "alice", &a);
    fetch(&mut s, t, 5001, "bob", &b);
    // alice's own link datagram for bob, sealed for bob alone.
    let (inner, relay) = relayed_datagram((&a, 5000), (&b, 5001), 1);
    s.handle_datagram(t, addr(5000), &relay);
    let to_bob = sends_to(&mut s, addr(5001));
    assert_eq!(
        to_bob.len(),
        1,
        "passed on to bob where the server sees him"
    );
    assert!(to_bob[0].len() < relay.len(), "never larger than what came");
    match decode_envelope(&to_bob[0]) {
        Ok(Envelope::Relayed { inner: got }) => assert_eq!(got, &inner[..]),
        other => panic!("unexpected {other:?}"),
    }
    // From another address than alice's, or with bob's datagram inside: nothing.
    s.handle_datagram(t, addr(6000), &relay);
    let (_, forged) = relayed_datagram((&b, 5001), (&a, 5000), 1);
    s.handle_datagram(t, addr(5000), &forged);
    assert!(sends(&mut s).is_empty());
    assert_eq!(s.stats().unauthenticated, 2);
    // To a node the server does not know, or to alice herself: refused.
    let wrap =
        |to: NodeId, inner: &[u8]| encode_envelope(&Envelope::Relay { to, inner }).expect("fits");
    s.handle_datagram(t, addr(5000), &wrap(NodeId(99), &inner));
    s.handle_datagram(t, addr(5000), &wrap(a.node_id, &inner));
    assert!(sends(&mut s).is_empty());
    assert_eq!(s.stats().relay_refused, 2);
    // A burst of twice the rate, then refused.
    let rate = AuthConfig::default().relay_rate as usize;
    let passed = (0..4 * rate as u32)
        .filter(|&i| {
            s.handle_datagram(
                t,
                addr(5000),
                &relayed_datagram((&a, 5000), (&b, 5001), i + 2).1,
            );
            !sends_to(&mut s, addr(5001)).is_empty()
        })
        .count();
    assert_eq!(
        passed,
        2 * rate - 1,
        "the first one came out of the same burst"
    );
    // bob silent for a while: no longer relayed to.
    let later = Duration::from_secs(40);
    fetch(&mut s, later, 5000, "alice", &a);
    s.handle_datagram(
        later,
        addr(5000),
        &relayed_datagram((&a, 5000), (&b, 5001), 9_999).1,
    );
    assert!(sends_to(&mut s, addr(5001)).is_empty());
}

#[test]
fn a_server_told_not_to_relay_passes_nothing_on() {
    let (mut s, a, b) = alice_and_bob(AuthConfig {
        relay_rate: 0,
        ..AuthConfig::default()
    });
    let (_, relay) = relayed_datagram((&a, 5000), (&b, 5001), 1);
    s.handle_datagram(Duration::ZERO, addr(5000), &relay);
    assert!(sends(&mut s).is_empty());
}

#[test]
fn the_servers_total_relay_budget_holds_for_all_nodes_together() {
    let (mut s, a, b) = alice_and_bob(AuthConfig {
        relay_total: 3,
        ..AuthConfig::default()
    });
    let mut passed = 0;
    // Both directions, well within each node's own budget: 6 in all (a burst of twice 3).
    for i in 0..10u32 {
        for (from, to) in [((&a, 5000), (&b, 5001)), ((&b, 5001), (&a, 5000))] {
            let (_, relay) = relayed_datagram(from, to, i + 1);
            s.handle_datagram(Duration::ZERO, addr(from.1), &relay);
            passed += sends(&mut s).len();
        }
    }
    assert_eq!(passed, 6);
    assert_eq!(s.stats().relay_refused, 14);
}
