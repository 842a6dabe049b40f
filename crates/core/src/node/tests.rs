//! Unit tests of the node: hold-back, dedupe, and the join flow step by step, driven by hand.

use super::*;
use crate::auth::{AuthServer, InsecurePlainCredentials};
use crate::config::AuthConfig;
use crate::io::Command;
use crate::secure::Link;
use p2pchat_proto::wire::{encode_envelope, to_payload, Cert, MAX_DEPS};
use p2pchat_proto::{decode, encode, AuthReply, GroupMsg, PrivateMsg, MAX_TEXT_BYTES};

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const AUTH: u16 = 12345;

fn params(user: &str, signup: bool) -> NodeParams {
    NodeParams {
        user: user.into(),
        password: "pw".into(),
        signup,
        auth_addr: addr(AUTH),
        auth_fallbacks: Vec::new(),
        auth_key: None,
    }
}

fn host(port: u16) -> Host {
    Host {
        local_addr: addr(port),
        seed: port as u64,
        crypto_seed: [port as u8; 32],
        wall_ms: 1_700_000_000_000,
    }
}

/// The keys of the fake server and of fake peers, the same in every test.
fn server_ident() -> Identity {
    Identity::generate(&mut secure::crypto_rng([200; 32]))
}

fn peer_ident(id: u32) -> Identity {
    Identity::generate(&mut secure::crypto_rng([id as u8; 32]))
}

fn peer_cert(id: u32) -> Cert {
    let p = peer_ident(id);
    server_ident().issue_cert(NodeId(id), &format!("p{id}"), p.sign_pk, p.dh_pk, u64::MAX)
}

/// Drains a node: datagrams out (destination and bytes), events, records.
type Drained = (Vec<(SocketAddr, Vec<u8>)>, Vec<Event>, Vec<Record>);

fn drain(n: &mut Node) -> Drained {
    let (mut sent, mut events, mut records) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(o) = n.poll_output() {
        match o {
            Output::Send { to, bytes } => sent.push((to, bytes)),
            Output::Event(e) => events.push(e),
            Output::Persist(r) => records.push(r),
        }
    }
    (sent, events, records)
}

/// Plays the auth server by hand: the node's key request and Noise hello get an admission
/// for `id` signed by [`server_ident`].
fn admit(n: &mut Node, id: u32, port: u16) {
    admit_at(n, id, addr(port));
}

/// [`admit`], with the server seeing the node at `observed`.
fn admit_at(n: &mut Node, id: u32, observed: SocketAddr) {
    let server = server_ident();
    n.handle_timeout(Duration::ZERO);
    let (sent, _, _) = drain(n);
    assert!(matches!(
        &sent[..],
        [(_, b)] if matches!(decode_envelope(b), Ok(Envelope::KeyRequest { .. }))
    ));
    let reply = Envelope::KeyReply {
        dh_pk: server.dh_pk,
        sign_pk: server.sign_pk,
        cookie: [1; 16],
    };
    n.handle_datagram(
        Duration::ZERO,
        addr(AUTH),
        &encode_envelope(&reply).expect("fits"),
    );
    let (sent, _, _) = drain(n);
    let [(_, hello)] = &sent[..] else {
        panic!("expected one auth hello")
    };
    let Ok(Envelope::AuthHello { noise }) = decode_envelope(hello) else {
        panic!("not a hello")
    };
    let (mut hs, payload) = secure::nk_respond(&server.secrets().1, [2; 32], noise).expect("nk");
    let req = p2pchat_proto::wire::decode_auth_request(&payload).expect("request");
    assert_eq!(req.password, "pw");
    let cert = server.issue_cert(NodeId(id), &req.user, req.sign_pk, req.dh_pk, u64::MAX);
    let reply = AuthReply {
        req: req.req,
        result: Ok(p2pchat_proto::Admission {
            node_id: NodeId(id),
            first: true,
            observed,
            cert,
            server_sign_pk: server.sign_pk,
        }),
    };
    let m2 = secure::nk_answer(&mut hs, &to_payload(&reply).expect("fits")).expect("answer");
    let mut to = [0u8; 8];
    to.copy_from_slice(&noise[..8]);
    let answer = encode_envelope(&Envelope::AuthAnswer { to, noise: &m2 }).expect("fits");
    n.handle_datagram(Duration::ZERO, addr(AUTH), &answer);
}

mod merges;
mod relay;

fn member_node(user: &str, id: u32, port: u16) -> Node {
    member_node_with_records(user, id, port).0
}

fn member_node_with_records(user: &str, id: u32, port: u16) -> (Node, Vec<Record>) {
    let mut n = Node::new(
        NodeConfig::default(),
        params(user, true),
        host(port),
        Duration::ZERO,
    );
    let mut records = drain(&mut n).2;
    admit(&mut n, id, port);
    records.extend(drain(&mut n).2);
    assert!(n.is_member());
    // Peers 1 and 2 introduce themselves (their certificates ride on their first datagram).
    for p in [1, 2] {
        let ping = Message::Ping {
            nonce: 0,
            gossip: Vec::new(),
        };
        send_as(&mut n, p, &ping);
        records.extend(drain(&mut n).2);
    }
    (n, records)
}

fn group(author: u32, seq: u64, lamport: u64, deps: &[(u32, u64)]) -> GroupMsg {
    let mut m = GroupMsg {
        author: NodeId(author),
        seq,
        lamport,
        deps: deps.iter().map(|&(a, s)| Dot::new(NodeId(a), s)).collect(),
        text: format!("m{author}.{seq}"),
        time_ms: 0,
        sig: [0; 64],
    };
    m.sig = peer_ident(author).sign(&m.signed_bytes());
    m
}

/// A fresh epoch per datagram: each call builds a new link, so counters start over.
static EPOCH: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

/// Seals `msg` from fake peer `p` (listening at 7000 + p) to node `n`.
fn sealed_from(n: &Node, p: u32, msg: &Message) -> Vec<u8> {
    let me = peer_ident(p);
    let (_, node_dh) = n.public_keys();
    let mut link = Link::new(&me, NodeId(p), n.node_id().expect("member"), node_dh);
    let epoch = EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let cert = Some(SenderCert {
        user: format!("p{p}"),
        cert: peer_cert(p),
    });
    link.seal(NodeId(p), epoch, &encode(msg).expect("fits"), cert)
        .expect("seal")
}

fn send_as(n: &mut Node, p: u32, msg: &Message) {
    let bytes = sealed_from(n, p, msg);
    n.handle_datagram(Duration::from_millis(1), addr(7000 + p as u16), &bytes);
}

/// Feeds `msg` from fake peer 1 and returns the events.
fn feed(n: &mut Node, _from: u16, msg: &Message) -> Vec<Event> {
    send_as(n, 1, msg);
    drain(n).1
}

fn delivered_ids(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.id.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn out_of_order_messages_wait_for_their_dependencies() {
    let mut n = member_node("carol", 3, 6003);
    // 2.1 depends on 1.1; 1.2 follows 1.1. They arrive in the worst order.
    let e = feed(
        &mut n,
        7000,
        &Message::Group {
            hop: 0,
            msg: group(1, 2, 3, &[(2, 1)]),
        },
    );
    assert!(delivered_ids(&e).is_empty());
    let e = feed(
        &mut n,
        7000,
        &Message::Group {
            hop: 0,
            msg: group(2, 1, 2, &[(1, 1)]),
        },
    );
    assert!(delivered_ids(&e).is_empty());
    assert_eq!(n.holdback_len(), 2);
    let e = feed(
        &mut n,
        7000,
        &Message::Group {
            hop: 0,
            msg: group(1, 1, 1, &[]),
        },
    );
    assert_eq!(delivered_ids(&e), vec!["1.1", "2.1", "1.2"]);
    assert_eq!(n.holdback_len(), 0);
    let order: Vec<String> = n.group_history().into_iter().map(|h| h.id).collect();
    assert_eq!(order, vec!["1.1", "2.1", "1.2"]);
}

#[test]
fn duplicates_are_never_delivered_twice_even_much_later() {
    let mut n = member_node("carol", 3, 6003);
    let m = Message::Group {
        hop: 0,
        msg: group(1, 1, 1, &[]),
    };
    assert_eq!(delivered_ids(&feed(&mut n, 7000, &m)).len(), 1);
    // Held-back duplicate.
    let later = Message::Group {
        hop: 0,
        msg: group(1, 3, 3, &[]),
    };
    feed(&mut n, 7000, &later);
    feed(&mut n, 7000, &later);
    assert_eq!(n.stats().group_duplicates, 1);
    // A very late duplicate of a delivered message (watermark, not a time cache).
    n.handle_timeout(Duration::from_secs(3600));
    drain(&mut n);
    let e = feed(&mut n, 7000, &m);
    assert!(delivered_ids(&e).is_empty());
    assert_eq!(n.stats().group_duplicates, 2);
    let repair = Message::Repair {
        msgs: vec![group(1, 1, 1, &[])],
        more: false,
    };
    assert!(delivered_ids(&feed(&mut n, 7000, &repair)).is_empty());
}

#[test]
fn full_clocks_are_the_authors_delivered_clock() {
    let mut n = member_node("carol", 3, 6003);
    feed(
        &mut n,
        7000,
        &Message::Group {
            hop: 0,
            msg: group(1, 1, 1, &[]),
        },
    );
    feed(
        &mut n,
        7000,
        &Message::Group {
            hop: 0,
            msg: group(2, 1, 2, &[(1, 1)]),
        },
    );
    n.handle_command(Duration::from_millis(2), Command::Say("hi".into()));
    let (_, events, records) = drain(&mut n);
    let Some(Event::Message(m)) = events.first() else {
        panic!("no local echo")
    };
    let expect: VectorClock = [(NodeId(1), 1), (NodeId(2), 1), (NodeId(3), 1)]
        .into_iter()
        .collect();
    assert_eq!(m.clock.as_ref(), Some(&expect));
    assert_eq!(m.order, 3);
    // Persisted before being sent.
    assert!(matches!(&records[..], [Record::Group(g)] if g.deps == vec![Dot::new(NodeId(2), 1)]));
}

#[test]
fn oversized_and_empty_texts_are_refused_with_a_clear_error() {
    let mut n = member_node("carol", 3, 6003);
    n.handle_command(Duration::ZERO, Command::Say("x".repeat(MAX_TEXT_BYTES + 1)));
    n.handle_command(Duration::ZERO, Command::Say("   ".into()));
    n.handle_command(
        Duration::ZERO,
        Command::Msg {
            to: "nobody".into(),
            text: "hi".into(),
        },
    );
    let (sent, events, _) = drain(&mut n);
    assert!(sent.is_empty());
    let errors: Vec<String> = events
        .iter()
        .filter_map(|e| match e {
            Event::Error {
                message,
                fatal: false,
            } => Some(message.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(errors[0].contains("too long"));
    assert!(errors[2].contains("unknown user"));
}

#[test]
fn malformed_datagrams_are_counted_and_dropped() {
    let mut n = member_node("carol", 3, 6003);
    n.handle_datagram(Duration::ZERO, addr(9), b"broadcast?1|hi|1|{}");
    n.handle_datagram(Duration::ZERO, addr(9), &[0u8; 2000]);
    assert_eq!(n.stats().malformed, 2);
    assert!(drain(&mut n).0.is_empty());
}

/// The seed's join flow, one datagram at a time, through a real auth server: signup (inside
/// Noise), queue, fetch, connect, hello.
#[test]
fn join_flow_step_by_step() {
    let mut server = AuthServer::new(
        AuthConfig::default(),
        Box::new(InsecurePlainCredentials),
        &[],
        [9; 32],
        1_700_000_000_000,
    );
    while server.poll_output().is_some() {}
    let t = Duration::ZERO;
    let mut alice = Node::new(NodeConfig::default(), params("alice", true), host(5000), t);
    let mut bob = Node::new(NodeConfig::default(), params("bob", true), host(5001), t);

    /// Carries every datagram among the three until all are quiet; returns the events.
    fn pump(server: &mut AuthServer, nodes: &mut [&mut Node], t: Duration) -> Vec<Vec<Event>> {
        let mut events = vec![Vec::new(); nodes.len()];
        loop {
            let mut moved = false;
            let mut wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)> = Vec::new();
            for (i, n) in nodes.iter_mut().enumerate() {
                let (sent, ev, _) = drain(n);
                events[i].extend(ev);
                let from = addr(5000 + i as u16);
                wire.extend(sent.into_iter().map(|(to, b)| (from, to, b)));
            }
            while let Some(o) = server.poll_output() {
                if let Output::Send { to, bytes } = o {
                    wire.push((addr(AUTH), to, bytes));
                }
            }
            for (from, to, bytes) in wire {
                moved = true;
                if to == addr(AUTH) {
                    server.handle_datagram(t, from, &bytes);
                } else {
                    let i = (to.port() - 5000) as usize;
                    nodes[i].handle_datagram(t, from, &bytes);
                }
            }
            if !moved {
                return events;
            }
        }
    }

    // 1. alice signs up first: told she is first, ready at once; the password only ever
    //    crossed the wire inside Noise.
    alice.handle_timeout(t);
    let ev = pump(&mut server, &mut [&mut alice, &mut bob], t);
    assert!(ev[0]
        .iter()
        .any(|e| matches!(e, Event::Ready { first: true, .. })));
    assert!(alice.is_member());

    // 2. bob signs up: admitted but queued, not yet a member.
    bob.handle_timeout(t);
    pump(&mut server, &mut [&mut alice, &mut bob], t);
    assert!(!bob.is_member());
    assert_eq!(server.queue_len(), 1);

    // 3. alice's periodic fetch returns bob; alice sends him Connect; bob becomes a member
    //    and says Hello; alice learns "bob just joined".
    //    (The server also tells bob to send to alice, for a NAT in front of him: his Hello
    //    may come first.)
    let t1 = Duration::from_secs(1);
    alice.handle_timeout(t1);
    let first = pump(&mut server, &mut [&mut alice, &mut bob], t1);
    assert!(bob.is_member());
    assert!(first[1]
        .iter()
        .any(|e| matches!(e, Event::Ready { first: false, .. })));
    bob.handle_timeout(t1);
    let then = pump(&mut server, &mut [&mut alice, &mut bob], t1);
    assert!(first[0]
        .iter()
        .chain(&then[0])
        .any(|e| matches!(e, Event::Peer { info, joined: true, .. } if info.user == "bob")));

    // 4. bob's first fetch takes him out of the queue.
    let t2 = Duration::from_secs(2);
    bob.handle_timeout(t2);
    pump(&mut server, &mut [&mut alice, &mut bob], t2);
    assert_eq!(server.queue_len(), 0);
    assert_eq!(
        alice.stats().unauthenticated + bob.stats().unauthenticated,
        0
    );
}

#[test]
fn a_restored_node_keeps_its_identity_history_and_sequence_numbers() {
    let (mut n, mut records) = member_node_with_records("carol", 3, 6003);
    n.handle_command(Duration::ZERO, Command::Say("one".into()));
    records.extend(drain(&mut n).2);
    let g = Message::Group {
        hop: 0,
        msg: group(1, 1, 5, &[]),
    };
    send_as(&mut n, 1, &g);
    n.handle_command(Duration::ZERO, Command::Say("two".into()));
    records.extend(drain(&mut n).2);
    let mut r = Node::restore(
        NodeConfig::default(),
        params("carol", false),
        host(6003),
        &records,
        Duration::ZERO,
    );
    let (_, events, persisted) = drain(&mut r);
    assert!(
        matches!(&persisted[..], [Record::Boot { epoch: 2 }]),
        "replay must not persist again, only the new boot: {persisted:?}"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Ready {
            node_id: NodeId(3),
            ..
        }
    )));
    assert_eq!(r.group_history().len(), 3);
    r.handle_command(Duration::ZERO, Command::Say("three".into()));
    let (_, events, _) = drain(&mut r);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Message(m) if m.id == "3.3" && m.order == 7)));
}

#[test]
fn forged_replayed_and_impersonating_datagrams_are_counted_and_never_delivered() {
    let mut n = member_node("carol", 3, 6003);
    // Relayed by 2: a message "by 1" signed with 2's key, and 1's message with altered text.
    // Relays can neither invent nor alter messages.
    let mut forged = group(1, 1, 1, &[]);
    forged.sig = peer_ident(2).sign(&forged.signed_bytes());
    send_as(
        &mut n,
        2,
        &Message::Group {
            hop: 1,
            msg: forged,
        },
    );
    assert!(delivered_ids(&drain(&mut n).1).is_empty());
    assert_eq!(n.stats().bad_signature, 1);
    let mut altered = group(1, 1, 1, &[]);
    altered.text = "pay mallory".into();
    send_as(
        &mut n,
        2,
        &Message::Group {
            hop: 1,
            msg: altered,
        },
    );
    assert!(delivered_ids(&drain(&mut n).1).is_empty());
    assert_eq!(n.stats().bad_signature, 2);
    // The genuine one is delivered once; its datagram replayed is refused by the window.
    let bytes = sealed_from(
        &n,
        1,
        &Message::Group {
            hop: 0,
            msg: group(1, 1, 1, &[]),
        },
    );
    n.handle_datagram(Duration::ZERO, addr(7001), &bytes);
    assert_eq!(delivered_ids(&drain(&mut n).1), vec!["1.1"]);
    n.handle_datagram(Duration::ZERO, addr(7001), &bytes);
    assert!(drain(&mut n).1.is_empty());
    assert_eq!(n.stats().replayed, 1);
    // A flipped byte fails authentication.
    let mut bytes = sealed_from(
        &n,
        1,
        &Message::Group {
            hop: 0,
            msg: group(1, 2, 2, &[]),
        },
    );
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    n.handle_datagram(Duration::ZERO, addr(7001), &bytes);
    assert_eq!(n.stats().unauthenticated, 1);
    // Peer 1 claiming to be peer 2 in a private message.
    let private = Message::Private(PrivateMsg {
        from: NodeId(2),
        to: NodeId(3),
        seq: 1,
        seen: 0,
        text: "it is me, 2".into(),
        time_ms: 0,
    });
    assert!(delivered_ids(&feed(&mut n, 7000, &private)).is_empty());
    assert_eq!(n.stats().impersonation, 1);
    // A member we never heard of, without a certificate.
    let stranger = peer_ident(40);
    let mut link = Link::new(&stranger, NodeId(40), NodeId(3), n.public_keys().1);
    let dg = link
        .seal(
            NodeId(40),
            1,
            &encode(&Message::Bye {
                node_id: NodeId(40),
            })
            .expect("fits"),
            None,
        )
        .expect("seal");
    n.handle_datagram(Duration::ZERO, addr(7040), &dg);
    assert_eq!(n.stats().unknown_sender, 1);
    // A certificate not signed by our server.
    let fake_server = peer_ident(99);
    let bogus = fake_server.issue_cert(
        NodeId(41),
        "p41",
        stranger.sign_pk,
        stranger.dh_pk,
        u64::MAX,
    );
    let mut link = Link::new(&stranger, NodeId(41), NodeId(3), n.public_keys().1);
    let dg = link
        .seal(
            NodeId(41),
            1,
            &encode(&Message::Bye {
                node_id: NodeId(41),
            })
            .expect("fits"),
            Some(SenderCert {
                user: "p41".into(),
                cert: bogus,
            }),
        )
        .expect("seal");
    n.handle_datagram(Duration::ZERO, addr(7041), &dg);
    assert_eq!(n.stats().bad_signature, 3);
    // None of it was answered.
    assert!(drain(&mut n).0.is_empty());
}

#[test]
fn a_changed_server_key_is_refused_before_any_password_is_sent() {
    let mut p = params("dora", true);
    let p_host = host(6100);
    p.auth_key = Some(peer_ident(77).dh_pk);
    let mut n = Node::new(NodeConfig::default(), p, p_host, Duration::ZERO);
    n.handle_timeout(Duration::ZERO);
    drain(&mut n);
    let server = server_ident();
    let reply = Envelope::KeyReply {
        dh_pk: server.dh_pk,
        sign_pk: server.sign_pk,
        cookie: [1; 16],
    };
    n.handle_datagram(
        Duration::ZERO,
        addr(AUTH),
        &encode_envelope(&reply).expect("fits"),
    );
    let (sent, events, _) = drain(&mut n);
    assert!(
        sent.is_empty(),
        "nothing, least of all the password, goes to that server"
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Error { message, fatal: true } if message.contains("key changed")
    )));
    assert!(n.is_stopped());
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_datagrams_never_panic_deliver_or_get_an_answer(
        datagrams in proptest::collection::vec(
            (proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1300), 0u8..6),
            1..20,
        ),
    ) {
        let mut n = member_node("carol", 3, 6003);
        for (mut b, kind) in datagrams {
            if b.len() >= 4 && kind < 5 {
                b[..4].copy_from_slice(&[b'p', b'C', 2, kind]);
            }
            n.handle_datagram(Duration::from_millis(5), addr(7001), &b);
            n.handle_datagram(Duration::from_millis(5), addr(AUTH), &b);
        }
        let (sent, events, records) = drain(&mut n);
        proptest::prop_assert!(sent.is_empty());
        proptest::prop_assert!(events.is_empty(), "{:?}", events);
        proptest::prop_assert!(records.is_empty());
    }
}

#[test]
fn clocks_are_rebuilt_for_messages_that_left_the_cache() {
    let mut n = member_node("carol", 3, 6003);
    let total = clocks::CACHE as u64 + 100;
    for seq in 1..=total {
        let deps: &[(u32, u64)] = &[];
        feed(
            &mut n,
            7000,
            &Message::Group {
                hop: 0,
                msg: group(1, seq, seq, deps),
            },
        );
    }
    // 2.1 depends on 1.1, long evicted from the cache.
    let e = feed(
        &mut n,
        7000,
        &Message::Group {
            hop: 1,
            msg: group(2, 1, 2, &[(1, 1)]),
        },
    );
    let Some(Event::Message(m)) = e.iter().find(|e| matches!(e, Event::Message(_))) else {
        panic!("2.1 not delivered: {e:?}")
    };
    let want: VectorClock = [(NodeId(1), 1), (NodeId(2), 1)].into_iter().collect();
    assert_eq!(m.clock.as_ref(), Some(&want));
    let h = n.group_history();
    let in_history = h.iter().find(|h| h.id == "2.1").expect("in history");
    assert_eq!(in_history.clock.as_ref(), Some(&want));
    // 2.2 depends on 1.45: rebuilt from the checkpoint at 1.33 and twelve deltas.
    let e = feed(
        &mut n,
        7000,
        &Message::Group {
            hop: 1,
            msg: group(2, 2, 3, &[(1, 45)]),
        },
    );
    let Some(Event::Message(m)) = e.iter().find(|e| matches!(e, Event::Message(_))) else {
        panic!("2.2 not delivered: {e:?}")
    };
    let want: VectorClock = [(NodeId(1), 45), (NodeId(2), 2)].into_iter().collect();
    assert_eq!(m.clock.as_ref(), Some(&want));
    let h = n.group_history();
    let last = h
        .iter()
        .find(|h| h.id == format!("1.{total}"))
        .expect("last");
    assert_eq!(last.clock.as_ref().map(|c| c.get(NodeId(1))), Some(total));
}

/// An archive over the records a node persisted (what the runtime does with its store).
struct RecordArchive(std::sync::Arc<std::sync::Mutex<Vec<Record>>>);

impl Archive for RecordArchive {
    fn group(&self, dot: Dot) -> Option<GroupMsg> {
        self.0.lock().ok()?.iter().find_map(|r| match r {
            Record::Group(m) if m.dot() == dot => Some(m.clone()),
            _ => None,
        })
    }
}

#[test]
fn old_bodies_leave_memory_and_are_read_back_from_the_archive() {
    let (mut n, records) = member_node_with_records("carol", 3, 6003);
    n.cfg.history_in_memory = 2;
    let log = std::sync::Arc::new(std::sync::Mutex::new(records));
    n.set_archive(Box::new(RecordArchive(log.clone())));
    for seq in 1..=6 {
        send_as(
            &mut n,
            1,
            &Message::Group {
                hop: 0,
                msg: group(1, seq, seq, &[]),
            },
        );
        let (_, _, recs) = drain(&mut n);
        log.lock().expect("lock").extend(recs);
    }
    // The next call trims: only the newest two keep their bodies.
    n.handle_timeout(Duration::from_millis(2));
    drain(&mut n);
    assert_eq!(n.group.bodies_in_memory(), 2);
    let h = n.group_history();
    let texts: Vec<&str> = h.iter().map(|e| e.text.as_str()).collect();
    assert_eq!(texts, vec!["m1.1", "m1.2", "m1.3", "m1.4", "m1.5", "m1.6"]);
    // A peer that has nothing gets the old messages too (read back for the repair).
    let digest = Message::Digest {
        lo: NodeId(0),
        hi: NodeId(u32::MAX),
        entries: vec![],
        reply: false,
        members: 100,
    };
    send_as(&mut n, 2, &digest);
    let (sent, _, _) = drain(&mut n);
    assert!(!sent.is_empty(), "a repair was sent");
}

/// What node `n` sent to fake peer `p`, opened as `p` would.
fn sent_to(n: &Node, p: u32, sent: &[(SocketAddr, Vec<u8>)]) -> Vec<Message> {
    let me = peer_ident(p);
    let (_, node_dh) = n.public_keys();
    let node = n.node_id().expect("member");
    let mut link = Link::new(&me, NodeId(p), node, node_dh);
    sent.iter()
        .filter(|(to, _)| *to == addr(7000 + p as u16))
        .filter_map(|(_, b)| match decode_envelope(b) {
            Ok(Envelope::Link {
                from,
                epoch,
                counter,
                sealed,
                ..
            }) if from == node => link.open(from, epoch, counter, sealed),
            _ => None,
        })
        .filter_map(|p| decode(&p).ok())
        .collect()
}

fn info(p: u32) -> PeerInfo {
    PeerInfo {
        node_id: NodeId(p),
        user: format!("p{p}"),
        addr: addr(7000 + p as u16),
        cert: peer_cert(p),
    }
}

const PING: Message = Message::Ping {
    nonce: 7,
    gossip: Vec::new(),
};

/// A member (node 3 at `port`) whose view of 8 is full: peers 10..18 pinged it.
fn full_view_node(port: u16) -> Node {
    let cfg = NodeConfig {
        view_max: 8,
        ..NodeConfig::default()
    };
    let mut n = Node::new(cfg, params("carol", true), host(port), Duration::ZERO);
    drain(&mut n);
    admit(&mut n, 3, port);
    drain(&mut n);
    for p in 10..18 {
        send_as(&mut n, p, &PING);
    }
    drain(&mut n);
    assert_eq!(n.member_count(), 8);
    n
}

#[test]
fn partial_views_stay_bounded_symmetric_and_still_verify_unknown_authors() {
    // Eight peers fill the view.
    let mut n = full_view_node(6003);
    let ping = PING;

    // A ninth that merely pings is answered, kept as a stranger, and told to forget us.
    send_as(&mut n, 20, &ping);
    let (sent, _, _) = drain(&mut n);
    let to20 = sent_to(&n, 20, &sent);
    assert!(
        to20.iter().any(|m| matches!(m, Message::Forget)),
        "{to20:?}"
    );
    assert!(to20
        .iter()
        .any(|m| matches!(m, Message::Ack { nonce: 7, .. })));
    assert_eq!(n.member_count(), 8);

    // One that says Hello is admitted; a member makes room and is told to forget us.
    send_as(
        &mut n,
        21,
        &Message::Hello {
            info: info(21),
            joined: true,
        },
    );
    let (sent, _, _) = drain(&mut n);
    assert_eq!(n.member_count(), 8);
    assert!(sent_to(&n, 21, &sent)
        .iter()
        .any(|m| matches!(m, Message::HelloAck { .. })));
    let told: Vec<u32> = (10..18)
        .filter(|&p| {
            sent_to(&n, p, &sent)
                .iter()
                .any(|m| matches!(m, Message::Forget))
        })
        .collect();
    assert_eq!(told.len(), 1, "exactly one member evicted");

    // A member that forgets us leaves the view.
    let member = (10..18).find(|p| !told.contains(p)).expect("a member");
    send_as(&mut n, member, &Message::Forget);
    assert_eq!(n.member_count(), 7);

    // A message by an author we do not know waits while we ask the peer that sent it.
    let m = group(30, 1, 1, &[]);
    send_as(
        &mut n,
        21,
        &Message::Group {
            hop: 1,
            msg: m.clone(),
        },
    );
    let (sent, ev, _) = drain(&mut n);
    assert!(delivered_ids(&ev).is_empty());
    assert!(sent_to(&n, 21, &sent)
        .iter()
        .any(|m| matches!(m, Message::WhoIs { ids } if ids == &[NodeId(30)])));
    // A forged record does not help; the real one delivers it.
    let mut forged = info(30);
    forged.cert = peer_cert(31);
    send_as(
        &mut n,
        21,
        &Message::Certs {
            peers: vec![forged],
        },
    );
    assert!(delivered_ids(&drain(&mut n).1).is_empty());
    send_as(
        &mut n,
        21,
        &Message::Certs {
            peers: vec![info(30)],
        },
    );
    assert_eq!(delivered_ids(&drain(&mut n).1), vec!["30.1"]);

    // A push that carries its author's record is delivered at once.
    send_as(
        &mut n,
        21,
        &Message::GroupFrom {
            hop: 1,
            msg: group(32, 1, 2, &[]),
            author: info(32),
        },
    );
    assert_eq!(delivered_ids(&drain(&mut n).1), vec!["32.1"]);
    // And we answer WhoIs with what we know.
    send_as(
        &mut n,
        21,
        &Message::WhoIs {
            ids: vec![NodeId(32), NodeId(99)],
        },
    );
    let (sent, _, _) = drain(&mut n);
    assert!(sent_to(&n, 21, &sent).iter().any(
        |m| matches!(m, Message::Certs { peers } if peers.len() == 1 && peers[0].node_id == NodeId(32))
    ));
    assert_eq!(n.stats().unknown_sender + n.stats().unauthenticated, 0);

    // A private message to a user outside the view waits for the server; with no answer it
    // is reported unsent, not silently dropped.
    n.handle_command(
        Duration::from_secs(2),
        Command::Msg {
            to: "nobody".into(),
            text: "hi".into(),
        },
    );
    let (sent, ev, _) = drain(&mut n);
    assert!(ev.is_empty(), "{ev:?}");
    assert!(
        sent.iter().any(|(to, _)| *to == addr(AUTH)),
        "asked the server"
    );
    n.handle_timeout(Duration::from_secs(10));
    let (_, ev, _) = drain(&mut n);
    assert!(
        ev.iter()
            .any(|e| matches!(e, Event::Error { message, fatal: false }
            if message.starts_with("unknown user: nobody"))),
        "{ev:?}"
    );
}

/// The limits of the `Ring` pushes node `n` sent to fake peer `p`.
fn ring_limits(n: &Node, p: u32, sent: &[(SocketAddr, Vec<u8>)]) -> Vec<NodeId> {
    sent_to(n, p, sent)
        .iter()
        .filter_map(|m| match m {
            Message::Ring { limit, .. } => Some(*limit),
            _ => None,
        })
        .collect()
}

#[test]
fn ring_pushes_are_acknowledged_passed_on_by_share_and_handed_on_when_unanswered() {
    let mut n = member_node("carol", 3, 6003);
    let ping = Message::Ping {
        nonce: 1,
        gossip: Vec::new(),
    };
    // 72 members, more than `flood_below`, all known: ring broadcast.
    for p in 10..80 {
        send_as(&mut n, p, &ping);
    }
    drain(&mut n);
    let mut ring: Vec<NodeId> = [1, 2, 3].into_iter().chain(10..80).map(NodeId).collect();
    ring.sort_unstable_by_key(|&x| ring::pos(x));
    let me = NodeId(3);
    let at = ring.iter().position(|&x| x == me).expect("in ring");
    // Peer 1 hands us the next 20 members of the ring.
    let limit = ring[(at + 21) % ring.len()];
    let expect = ring::shares(&ring, me, limit);
    assert!(expect.len() >= 3, "{expect:?}");
    let msg = group(1, 1, 1, &[]);
    let dot = msg.dot();
    send_as(&mut n, 1, &Message::Ring { hop: 0, limit, msg });
    // The acknowledgement waits for the datagrams at hand to be handled (a timer due now).
    n.handle_timeout(Duration::from_millis(1));
    let (sent, events, _) = drain(&mut n);
    assert_eq!(delivered_ids(&events), vec!["1.1"]);
    assert!(sent_to(&n, 1, &sent)
        .iter()
        .any(|m| matches!(m, Message::RingAck { dots } if dots == &vec![dot])));
    // Each finger inside our share gets the part up to the next one; nobody else anything.
    for &p in &ring {
        let want: Vec<NodeId> = expect.iter().filter(|s| s.0 == p).map(|s| s.1).collect();
        assert_eq!(ring_limits(&n, p.0, &sent), want, "to {p:?}");
    }
    // A finger whose part holds more members stays silent, the others acknowledge: one
    // retry; then it is left out, pinged and reported, and once it has been silent for three
    // timeouts, its part goes to the member after it.
    let next_of =
        |x: NodeId| ring[(ring.iter().position(|&y| y == x).expect("in") + 1) % ring.len()];
    let &(silent, part) = expect
        .iter()
        .find(|&&(f, l)| next_of(f) != l)
        .expect("a finger with a part to hand on");
    for &(f, _) in &expect {
        if f != silent {
            send_as(&mut n, f.0, &Message::RingAck { dots: vec![dot] });
        }
    }
    drain(&mut n);
    n.handle_timeout(Duration::from_millis(101));
    let (sent, _, _) = drain(&mut n);
    assert_eq!(ring_limits(&n, silent.0, &sent), vec![part]);
    assert_eq!(n.stats().ring_retries, 1);
    // (The retry's timeout is doubled: Karn's back-off.) Silent since the first attempt,
    // three timeouts and more: left out, pinged, reported, and its part handed on.
    n.handle_timeout(Duration::from_millis(200));
    assert_eq!(drain(&mut n).0.len(), 0, "the retry waits twice as long");
    n.handle_timeout(Duration::from_millis(400));
    let (sent, _, _) = drain(&mut n);
    assert!(sent_to(&n, silent.0, &sent)
        .iter()
        .any(|m| matches!(m, Message::Ping { .. })));
    assert_eq!(ring_limits(&n, next_of(silent).0, &sent), vec![part]);
    assert_eq!(n.stats().ring_handovers, 1);
    // The members that push to the silent one are told (they check for themselves).
    let told: Vec<NodeId> = ring
        .iter()
        .copied()
        .filter(|&p| {
            sent_to(&n, p.0, &sent)
                .iter()
                .any(|m| matches!(m, Message::RingDown { ids } if ids == &vec![silent]))
        })
        .collect();
    let mut owners = ring::pushing_to(&ring, silent);
    owners.retain(|&x| x != me);
    assert!(!owners.is_empty());
    assert_eq!(told.len(), owners.len(), "{told:?} vs {owners:?}");
}

fn events_of(n: &mut Node) -> Vec<Event> {
    drain(n).1
}

#[test]
fn commands_before_the_sign_in_wait_and_run_in_order_with_their_tags() {
    let mut n = Node::new(
        NodeConfig::default(),
        params("carol", true),
        host(6003),
        Duration::ZERO,
    );
    drain(&mut n);
    n.handle_tagged(
        Duration::ZERO,
        Some("t1".into()),
        Command::Say("early".into()),
    );
    n.handle_command(
        Duration::ZERO,
        Command::History {
            with: None,
            last: None,
            before: None,
        },
    );
    // Nothing refused, nothing run yet; /status answers at once and counts the queue.
    n.handle_tagged(Duration::ZERO, Some("s".into()), Command::Status);
    let ev = events_of(&mut n);
    let [Event::Reply { tag, event }] = &ev[..] else {
        panic!("only the status reply: {ev:?}")
    };
    assert_eq!(tag, "s");
    let Event::Status(report) = &**event else {
        panic!("{event:?}")
    };
    assert_eq!(report.phase, "signing_in");
    assert_eq!(report.queued_commands, 2);
    assert_eq!(report.node_id, None);

    admit(&mut n, 3, 6003);
    let ev = events_of(&mut n);
    let ready = ev.iter().position(|e| matches!(e, Event::Ready { .. }));
    let echo = ev.iter().position(|e| {
        matches!(e, Event::Reply { tag, event } if tag == "t1"
            && matches!(&**event, Event::Message(m) if m.text == "early"))
    });
    let history = ev.iter().position(|e| {
        matches!(e, Event::History { messages, .. }
            if messages.iter().map(|m| m.text.as_str()).collect::<Vec<_>>() == ["early"])
    });
    match (ready, echo, history) {
        (Some(r), Some(e), Some(h)) => assert!(r < e && e < h, "{ev:?}"),
        _ => panic!("ready, the tagged echo, then the history: {ev:?}"),
    }
    // The message carries its writing time.
    let [h] = &n.group_history()[..] else {
        panic!("one message")
    };
    assert_eq!(h.time_ms, 1_700_000_000_000);
}

#[test]
fn settled_waits_for_acknowledgements() {
    let mut n = member_node("carol", 3, 6003);
    let t = Duration::from_millis(5);
    n.handle_command(
        t,
        Command::Msg {
            to: "p1".into(),
            text: "are you there".into(),
        },
    );
    n.handle_command(t, Command::Settle);
    let ev = events_of(&mut n);
    assert!(!ev.contains(&Event::Settled), "{ev:?}");
    assert!(!n.settled());
    send_as(
        &mut n,
        1,
        &Message::PrivateAck {
            from: NodeId(1),
            to: NodeId(3),
            upto: 1,
        },
    );
    let ev = events_of(&mut n);
    assert_eq!(
        ev.iter().filter(|e| **e == Event::Settled).count(),
        1,
        "{ev:?}"
    );
    // Said once per Settle.
    n.handle_timeout(Duration::from_secs(1));
    assert!(!events_of(&mut n).contains(&Event::Settled));
}

#[test]
fn members_heard_of_second_hand_are_unknown_until_they_answer() {
    let mut n = member_node("carol", 3, 6003);
    drain(&mut n);
    send_as(
        &mut n,
        1,
        &Message::Connect {
            from: info(1),
            peers: vec![info(4)],
        },
    );
    let ev = events_of(&mut n);
    let p4: Vec<PeerStatus> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Peer { info, status, .. } if info.node_id == NodeId(4) => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(p4, [PeerStatus::Unknown], "{ev:?}");
    let ping = Message::Ping {
        nonce: 1,
        gossip: Vec::new(),
    };
    send_as(&mut n, 4, &ping);
    let ev = events_of(&mut n);
    assert!(
        ev.iter().any(
            |e| matches!(e, Event::Peer { info, status: PeerStatus::Online, .. }
            if info.node_id == NodeId(4))
        ),
        "{ev:?}"
    );
    // A goodbye shows it offline, never online first.
    send_as(&mut n, 4, &Message::Bye { node_id: NodeId(4) });
    let ev = events_of(&mut n);
    let statuses: Vec<PeerStatus> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Peer { status, .. } => Some(*status),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, [PeerStatus::Offline]);
}

#[test]
fn a_crash_is_noticed_in_the_same_time_whatever_the_number_of_offline_members() {
    fn detection(offline: u32) -> Duration {
        let mut n = member_node("carol", 3, 6003);
        for p in 10..10 + offline {
            send_as(
                &mut n,
                p,
                &Message::Ping {
                    nonce: 0,
                    gossip: Vec::new(),
                },
            );
            send_as(&mut n, p, &Message::Bye { node_id: NodeId(p) });
        }
        // Peer 2 answers every probe; peer 1 has crashed.
        drain(&mut n);
        let mut t = Duration::from_millis(10);
        loop {
            n.handle_timeout(t);
            let (sent, ev, _) = drain(&mut n);
            for m in sent_to(&n, 2, &sent) {
                if let Message::Ping { nonce, .. } = m {
                    let ack = Message::Ack {
                        nonce,
                        gossip: Vec::new(),
                    };
                    let bytes = sealed_from(&n, 2, &ack);
                    n.handle_datagram(t, addr(7002), &bytes);
                }
            }
            if ev.iter().any(|e| {
                matches!(e, Event::Peer { info, status: PeerStatus::Offline, .. }
                if info.node_id == NodeId(1))
            }) {
                return t;
            }
            assert!(t < Duration::from_secs(120), "never noticed");
            t += Duration::from_millis(50);
        }
    }
    let alone = detection(0);
    let among_many = detection(30);
    // The documented bound (docs/PROTOCOL.md, failure detection) for L = 2 members not
    // offline, at the defaults: (2L + 2) rounds of 1 s plus the 4 s suspicion timeout.
    let bound = Duration::from_secs(2 * 2 + 2 + 4);
    assert!(alone <= bound, "{alone:?}");
    assert!(
        among_many <= bound,
        "{among_many:?} with 30 offline members"
    );
}

#[test]
fn a_message_is_never_refused_however_many_authors_talk_at_once() {
    let mut n = member_node("carol", 3, 6003);
    // 130 members each wrote a message nobody else had seen: a frontier of 130 dots.
    let authors: Vec<u32> = (10..140).collect();
    for &p in &authors {
        let ping = Message::Ping {
            nonce: 0,
            gossip: Vec::new(),
        };
        send_as(&mut n, p, &ping);
    }
    for &p in &authors {
        send_as(
            &mut n,
            p,
            &Message::Group {
                hop: 0,
                msg: group(p, 1, 1, &[]),
            },
        );
    }
    let (_, ev, _) = drain(&mut n);
    assert_eq!(delivered_ids(&ev).len(), authors.len());
    n.handle_command(
        Duration::from_secs(1),
        Command::Say("after the burst".into()),
    );
    // It waits for shared merges (nobody here writes one), then folds the frontier itself.
    n.handle_timeout(Duration::from_secs(1) + crate::node::merges::FOLD_WAIT);
    let (_, ev, records) = drain(&mut n);
    assert!(
        !ev.iter().any(|e| matches!(e, Event::Error { .. })),
        "refused: {ev:?}"
    );
    // Merges first (no text), then the message; each within the wire's bound; together they
    // reference every message the author had delivered.
    let own: Vec<GroupMsg> = records
        .into_iter()
        .filter_map(|r| match r {
            Record::Group(m) if m.author == NodeId(3) => Some(m),
            _ => None,
        })
        .collect();
    let (last, merges) = own.split_last().expect("own messages");
    assert_eq!(last.text, "after the burst");
    assert_eq!(merges.len(), 2, "130 dots fold into 2 merges of 48");
    assert!(merges.iter().all(|m| m.text.is_empty()));
    assert!(own.iter().all(|m| m.deps.len() <= MAX_DEPS));
    let covered: HashSet<Dot> = own.iter().flat_map(|m| m.deps.iter().copied()).collect();
    for &p in &authors {
        assert!(
            covered.contains(&Dot::new(NodeId(p), 1)),
            "p{p} not referenced"
        );
    }
    // Each message comes after the previous one (same author, next seq).
    assert!(own.windows(2).all(|w| w[1].seq == w[0].seq + 1));
    // Merges are not shown: not in the history a user asks for, not as a reply.
    n.handle_command(
        Duration::from_secs(1),
        Command::History {
            with: None,
            last: Some(1),
            before: None,
        },
    );
    let ev = drain(&mut n).1;
    let Some(Event::History { messages, .. }) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].text, "after the burst");
}

/// Two auth servers over one directory (as two processes over one database): a node given
/// both signs up through the second while the first is dead, and later polls the first when
/// the second dies.
#[test]
fn a_node_fails_over_between_auth_servers_that_share_a_directory() {
    use crate::auth::directory::SharedMemory;
    let (sign_sk, dh_sk) = Identity::generate(&mut secure::crypto_rng([77; 32])).secrets();
    let keys = [Record::Keys { sign_sk, dh_sk }];
    let shared = SharedMemory::default();
    let server = |seed: u8| {
        let mut s = AuthServer::with_directory(
            AuthConfig::default(),
            Box::new(InsecurePlainCredentials),
            Box::new(shared.clone()),
            &keys,
            [seed; 32],
            1_700_000_000_000,
        );
        while s.poll_output().is_some() {}
        s
    };
    let (a, b) = (addr(AUTH), addr(AUTH + 1));
    let mut servers = [(a, server(1)), (b, server(2))];
    let mut p = params("alice", true);
    let p_host = host(5000);
    p.auth_fallbacks = vec![b];
    let mut alice = Node::new(NodeConfig::default(), p, p_host, Duration::ZERO);
    let me = addr(5000);
    // Runs for `secs` in 50 ms steps; datagrams to a server that is not `up` are lost.
    let run = |alice: &mut Node,
               servers: &mut [(SocketAddr, AuthServer)],
               from_ms: u64,
               to_ms: u64,
               up: SocketAddr| {
        let mut events = Vec::new();
        for ms in (from_ms..to_ms).step_by(50) {
            let t = Duration::from_millis(ms);
            alice.handle_timeout(t);
            loop {
                let (sent, ev, _) = drain(alice);
                events.extend(ev);
                let mut replies = Vec::new();
                for (to, bytes) in sent {
                    if let Some((_, s)) = servers.iter_mut().find(|(at, _)| *at == to && to == up) {
                        s.handle_datagram(t, me, &bytes);
                        while let Some(o) = s.poll_output() {
                            if let Output::Send { bytes, .. } = o {
                                replies.push((to, bytes));
                            }
                        }
                    }
                }
                if replies.is_empty() {
                    break;
                }
                for (from, bytes) in replies {
                    alice.handle_datagram(t, from, &bytes);
                }
            }
        }
        events
    };
    // A is dead: the first attempt goes unanswered, the next goes to B.
    run(&mut alice, &mut servers, 0, 3_000, b);
    assert!(alice.is_member(), "signed up through the second server");
    assert!(alice.stats().auth_failovers >= 1);
    assert_eq!(servers[1].1.counts(Duration::from_secs(3)).users, 1);
    // B dies and A is back: polls go unanswered, then go to A, which knows alice's account
    // and lease from the shared directory and answers.
    let before = servers[0].1.stats().datagrams_out;
    let events = run(&mut alice, &mut servers, 3_000, 15_000, a);
    assert!(
        servers[0].1.stats().datagrams_out > before,
        "A answers alice's polls"
    );
    let reachability: Vec<bool> = events
        .iter()
        .filter_map(|e| match e {
            Event::AuthServer { reachable } => Some(*reachable),
            _ => None,
        })
        .collect();
    assert_eq!(
        reachability,
        [false, true],
        "B went silent, then A answered"
    );
    alice.handle_command(Duration::from_secs(15), Command::Status);
    let (_, ev, _) = drain(&mut alice);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::Status(r) if r.auth_server == a && r.auth_server_reachable)));
}

#[test]
fn a_relayed_ping_is_answered_to_a_requester_outside_the_view() {
    let mut n = full_view_node(6004);
    // Peer 20 is outside the full view: a stranger we can still authenticate.
    send_as(&mut n, 20, &PING);
    drain(&mut n);
    assert_eq!(n.member_count(), 8);

    // It asks us to ping member 10 for it; member 10 answers us.
    let target = addr(7010);
    send_as(&mut n, 20, &Message::PingReq { nonce: 9, target });
    let (sent, _, _) = drain(&mut n);
    let local = sent_to(&n, 10, &sent)
        .into_iter()
        .find_map(|m| match m {
            Message::Ping { nonce, .. } => Some(nonce),
            _ => None,
        })
        .expect("the relayed ping goes to member 10");
    send_as(
        &mut n,
        10,
        &Message::Ack {
            nonce: local,
            gossip: Vec::new(),
        },
    );
    let (sent, _, _) = drain(&mut n);
    // The answer reaches the requester, although it is not a member.
    assert!(
        sent_to(&n, 20, &sent)
            .iter()
            .any(|m| matches!(m, Message::Ack { nonce: 9, .. })),
        "{sent:?}"
    );
    assert_eq!(n.stats().unsendable, 0);
}

#[test]
fn search_and_history_pages_answer_from_memory_without_an_archive() {
    let mut n = member_node("carol", 3, 6005);
    for (seq, text) in [(1, "Lunch at noon"), (2, "the weather"), (3, "lunchtime!")] {
        let mut m = group(1, seq, seq, &[]);
        m.text = text.into();
        m.sig = peer_ident(1).sign(&m.signed_bytes());
        feed(&mut n, 7000, &Message::Group { hop: 0, msg: m });
    }
    let ask = |n: &mut Node, cmd: Command| {
        n.handle_command(Duration::from_secs(1), cmd);
        events_of(n)
    };
    let texts = |msgs: &[HistoryEntry]| msgs.iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    let search = |query: &str, with: Option<&str>, last| Command::Search {
        query: query.into(),
        with: with.map(str::to_string),
        last,
    };
    match ask(&mut n, search("LUNCH", None, None)).as_slice() {
        [Event::Search { query, messages }] => {
            assert_eq!(query, "LUNCH");
            assert_eq!(texts(messages), ["Lunch at noon", "lunchtime!"]);
        }
        other => panic!("{other:?}"),
    }
    match ask(&mut n, search("lunch", None, Some(1))).as_slice() {
        [Event::Search { messages, .. }] => assert_eq!(texts(messages), ["lunchtime!"]),
        other => panic!("{other:?}"),
    }
    for (cmd, error) in [
        (search("?!", None, None), "nothing to search for"),
        (
            search("lunch", Some("nobody"), None),
            "unknown user: nobody",
        ),
        (
            Command::History {
                with: None,
                last: None,
                before: Some("9.9".into()),
            },
            "no message 9.9",
        ),
    ] {
        match ask(&mut n, cmd).as_slice() {
            [Event::Error {
                message,
                fatal: false,
            }] => assert!(message.contains(error), "{message}"),
            other => panic!("{other:?}"),
        }
    }
    let page = Command::History {
        with: None,
        last: Some(1),
        before: Some("1.3".into()),
    };
    match ask(&mut n, page).as_slice() {
        [Event::History {
            messages, earlier, ..
        }] => {
            assert_eq!(
                (texts(messages), *earlier),
                (vec!["the weather".to_string()], 1)
            );
        }
        other => panic!("{other:?}"),
    }
}
