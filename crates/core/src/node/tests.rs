//! Unit tests of the node: hold-back, dedupe, and the join flow step by step, driven by hand.

use super::*;
use crate::auth::{AuthServer, InsecurePlainCredentials};
use crate::config::AuthConfig;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

const AUTH: u16 = 12345;

fn params(user: &str, port: u16, signup: bool) -> NodeParams {
    NodeParams {
        user: user.into(),
        password: "pw".into(),
        signup,
        local_addr: addr(port),
        auth_addr: addr(AUTH),
        seed: port as u64,
    }
}

/// Drains a node: datagrams out (with destination), events.
fn drain(n: &mut Node) -> (Vec<(SocketAddr, Message)>, Vec<Event>, Vec<Record>) {
    let (mut sent, mut events, mut records) = (Vec::new(), Vec::new(), Vec::new());
    while let Some(o) = n.poll_output() {
        match o {
            Output::Send { to, bytes } => sent.push((to, decode(&bytes).expect("valid"))),
            Output::Event(e) => events.push(e),
            Output::Persist(r) => records.push(r),
        }
    }
    (sent, events, records)
}

fn member_node(user: &str, id: u32, port: u16) -> Node {
    let mut n = Node::new(
        NodeConfig::default(),
        params(user, port, true),
        Duration::ZERO,
    );
    n.handle_timeout(Duration::ZERO);
    let (sent, _, _) = drain(&mut n);
    let req = match &sent[..] {
        [(_, Message::Signup { req, .. })] => *req,
        other => panic!("expected one signup, got {other:?}"),
    };
    let reply = Message::AuthReply {
        req,
        result: Ok(p2pchat_proto::Admission {
            node_id: NodeId(id),
            first: true,
            observed: addr(port),
        }),
    };
    n.handle_datagram(Duration::ZERO, addr(AUTH), &encode(&reply).expect("fits"));
    drain(&mut n);
    n
}

fn group(author: u32, seq: u64, lamport: u64, deps: &[(u32, u64)]) -> GroupMsg {
    GroupMsg {
        author: NodeId(author),
        seq,
        lamport,
        deps: deps.iter().map(|&(a, s)| Dot::new(NodeId(a), s)).collect(),
        text: format!("m{author}.{seq}"),
    }
}

fn feed(n: &mut Node, from: u16, msg: &Message) -> Vec<Event> {
    n.handle_datagram(
        Duration::from_millis(1),
        addr(from),
        &encode(msg).expect("fits"),
    );
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

/// The seed's join flow, one datagram at a time: signup, queue, fetch, connect, hello.
#[test]
fn join_flow_step_by_step() {
    let mut server = AuthServer::new(
        AuthConfig::default(),
        Box::new(InsecurePlainCredentials),
        &[],
    );
    let t = Duration::ZERO;
    let mut alice = Node::new(NodeConfig::default(), params("alice", 5000, true), t);
    let mut bob = Node::new(NodeConfig::default(), params("bob", 5001, true), t);

    fn to_server(
        server: &mut AuthServer,
        t: Duration,
        from: SocketAddr,
        sent: Vec<(SocketAddr, Message)>,
    ) -> Vec<(SocketAddr, Message)> {
        for (_, m) in sent {
            server.handle_datagram(t, from, &encode(&m).expect("fits"));
        }
        let mut out = Vec::new();
        while let Some(o) = server.poll_output() {
            if let Output::Send { to, bytes } = o {
                out.push((to, decode(&bytes).expect("valid")));
            }
        }
        out
    }
    fn deliver(n: &mut Node, t: Duration, from: SocketAddr, msgs: Vec<(SocketAddr, Message)>) {
        for (_, m) in msgs {
            n.handle_datagram(t, from, &encode(&m).expect("fits"));
        }
    }

    // 1. alice signs up first: told she is first, ready at once.
    alice.handle_timeout(t);
    let (sent, _, _) = drain(&mut alice);
    let replies = to_server(&mut server, t, addr(5000), sent);
    deliver(&mut alice, t, addr(AUTH), replies);
    let (_, events, records) = drain(&mut alice);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Ready { first: true, .. })));
    assert!(records.iter().any(|r| matches!(r, Record::Identity { .. })));
    assert!(alice.is_member());

    // 2. bob signs up: admitted but queued, not yet a member.
    bob.handle_timeout(t);
    let (sent, _, _) = drain(&mut bob);
    let replies = to_server(&mut server, t, addr(5001), sent);
    deliver(&mut bob, t, addr(AUTH), replies);
    drain(&mut bob);
    assert!(!bob.is_member());
    assert_eq!(server.queue_len(), 1);

    // 3. alice's periodic fetch returns bob; alice sends him Connect.
    let t1 = Duration::from_secs(1);
    alice.handle_timeout(t1);
    let (sent, _, _) = drain(&mut alice);
    let fetches: Vec<_> = sent
        .into_iter()
        .filter(|(to, _)| *to == addr(AUTH))
        .collect();
    assert!(matches!(&fetches[..], [(_, Message::Fetch { .. })]));
    let replies = to_server(&mut server, t1, addr(5000), fetches);
    assert!(
        matches!(&replies[..], [(_, Message::Pending { newcomers })] if newcomers[0].user == "bob")
    );
    deliver(&mut alice, t1, addr(AUTH), replies);
    let (sent, _, _) = drain(&mut alice);
    let connects: Vec<_> = sent
        .into_iter()
        .filter(|(to, _)| *to == addr(5001))
        .collect();
    assert!(matches!(&connects[..], [(_, Message::Connect { from, .. })] if from.user == "alice"));

    // 4. bob receives Connect: member, ready, and says Hello to alice.
    deliver(&mut bob, t1, addr(5000), connects);
    assert_eq!(bob.poll_timeout(), Some(t1), "Hellos are due at once");
    bob.handle_timeout(t1);
    let (sent, events, _) = drain(&mut bob);
    assert!(bob.is_member());
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Ready { first: false, .. })));
    let hellos: Vec<_> = sent
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::Hello { joined: true, .. }))
        .collect();
    assert_eq!(hellos.len(), 1);

    // 5. alice learns "bob just joined" and answers.
    deliver(&mut alice, t1, addr(5001), hellos);
    let (sent, events, _) = drain(&mut alice);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Peer { info, joined: true, .. } if info.user == "bob")));
    assert!(matches!(&sent[..], [(_, Message::HelloAck { .. })]));

    // 6. bob's first fetch takes him out of the queue.
    bob.handle_timeout(Duration::from_secs(2));
    let (sent, _, _) = drain(&mut bob);
    let fetches: Vec<_> = sent
        .into_iter()
        .filter(|(to, _)| *to == addr(AUTH))
        .collect();
    to_server(&mut server, Duration::from_secs(2), addr(5001), fetches);
    assert_eq!(server.queue_len(), 0);
}

#[test]
fn a_restored_node_keeps_its_identity_history_and_sequence_numbers() {
    let mut n = member_node("carol", 3, 6003);
    let mut records = vec![Record::Identity {
        node_id: NodeId(3),
        user: "carol".into(),
    }];
    n.handle_command(Duration::ZERO, Command::Say("one".into()));
    records.extend(drain(&mut n).2);
    let g = Message::Group {
        hop: 0,
        msg: group(1, 1, 5, &[]),
    };
    n.handle_datagram(Duration::ZERO, addr(7000), &encode(&g).expect("fits"));
    n.handle_command(Duration::ZERO, Command::Say("two".into()));
    records.extend(drain(&mut n).2);
    let mut r = Node::restore(
        NodeConfig::default(),
        params("carol", 6003, false),
        &records,
        Duration::ZERO,
    );
    let (_, events, persisted) = drain(&mut r);
    assert!(persisted.is_empty(), "replay must not persist again");
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
