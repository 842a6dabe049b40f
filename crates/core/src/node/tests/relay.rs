//! Relays, routes and keepalives, driven by hand (fake peers 1 and 2 at 7001 and 7002).

use super::*;
use crate::io::PeerPath;

/// The messages `n` sent to fake peer `p` wrapped for the relay at `relay`.
fn relayed_to(n: &Node, p: u32, relay: SocketAddr, sent: &[(SocketAddr, Vec<u8>)]) -> Vec<Message> {
    let wrapped: Vec<(SocketAddr, Vec<u8>)> = sent
        .iter()
        .filter(|(to, _)| *to == relay)
        .filter_map(|(_, b)| match decode_envelope(b) {
            Ok(Envelope::Relay { to, inner }) if to == NodeId(p) => {
                Some((addr(7000 + p as u16), inner.to_vec()))
            }
            _ => None,
        })
        .collect();
    sent_to(n, p, &wrapped)
}

fn path_of(n: &mut Node, p: u32) -> PeerPath {
    n.handle_command(Duration::from_millis(2), Command::Peers);
    let events = drain(n).1;
    events
        .iter()
        .find_map(|e| match e {
            Event::Peers(list) => list
                .iter()
                .find(|(i, _, _)| i.node_id == NodeId(p))
                .map(|(_, _, path)| *path),
            _ => None,
        })
        .expect("a peers event naming the peer")
}

#[test]
fn a_member_passes_a_members_own_datagram_on_to_a_member_it_reaches_and_nothing_else() {
    let mut n = member_node("carol", 3, 6003);
    let now = Duration::from_millis(5);
    // Peer 1 asks carol to pass its datagram for peer 2 on.
    let inner = sealed_from(&n, 1, &PING);
    let wrap = |to: u32, inner: &[u8]| {
        encode_envelope(&Envelope::Relay {
            to: NodeId(to),
            inner,
        })
        .expect("fits")
    };
    n.handle_datagram(now, addr(7001), &wrap(2, &inner));
    let (sent, _, _) = drain(&mut n);
    let [(to, bytes)] = &sent[..] else {
        panic!("one datagram passed on: {sent:?}")
    };
    assert_eq!(*to, addr(7002));
    match decode_envelope(bytes) {
        Ok(Envelope::Relayed { inner: got }) => assert_eq!(got, &inner[..], "unchanged"),
        other => panic!("not relayed: {other:?}"),
    }
    assert!(bytes.len() <= inner.len() + 8, "no amplification");
    assert_eq!(n.stats().relayed, 1);
    // From an address that is not the sender's, for a member it does not know, or with
    // someone else's datagram inside: nothing goes out.
    n.handle_datagram(now, addr(7099), &wrap(2, &inner));
    n.handle_datagram(now, addr(7001), &wrap(9, &inner));
    n.handle_datagram(now, addr(7002), &wrap(1, &inner));
    assert!(drain(&mut n).0.is_empty());
    assert_eq!(n.stats().relayed, 1);
    assert_eq!(n.stats().relay_refused, 1);
    assert_eq!(n.stats().unauthenticated, 2);
    // A node that does not offer relaying passes nothing on.
    let cfg = NodeConfig {
        relay: false,
        ..NodeConfig::default()
    };
    let mut quiet = Node::new(cfg, params("dave", true), host(6004), Duration::ZERO);
    drain(&mut quiet);
    admit(&mut quiet, 4, 6004);
    send_as(&mut quiet, 1, &PING);
    send_as(&mut quiet, 2, &PING);
    drain(&mut quiet);
    let inner = sealed_from(&quiet, 1, &PING);
    quiet.handle_datagram(now, addr(7001), &wrap(2, &inner));
    assert!(drain(&mut quiet).0.is_empty());
}

#[test]
fn a_member_heard_through_a_relay_is_answered_through_it_until_it_is_heard_directly() {
    let mut n = member_node("carol", 3, 6003);
    // Peer 1's ping comes through peer 2 (at 7002).
    let inner = sealed_from(&n, 1, &PING);
    let relayed = encode_envelope(&Envelope::Relayed { inner: &inner }).expect("fits");
    // (Heard directly at the start: a relayed datagram starts a route only 10 s later.)
    n.handle_datagram(Duration::from_secs(12), addr(7002), &relayed);
    let (sent, _, _) = drain(&mut n);
    let acks = relayed_to(&n, 1, addr(7002), &sent);
    assert!(
        matches!(&acks[..], [Message::Ack { nonce: 7, .. }]),
        "answered through the relay: {acks:?}"
    );
    assert!(sent_to(&n, 1, &sent).is_empty(), "not directly");
    assert_eq!(n.stats().via_relay, 1);
    assert_eq!(
        path_of(&mut n, 1),
        PeerPath::Relayed {
            via: Some(NodeId(2))
        }
    );
    // Whatever goes to peer 1 now goes through the relay.
    n.handle_command(
        Duration::from_secs(12),
        Command::Msg {
            to: "p1".into(),
            text: "hi".into(),
        },
    );
    let (sent, _, _) = drain(&mut n);
    assert!(relayed_to(&n, 1, addr(7002), &sent)
        .iter()
        .any(|m| matches!(m, Message::Private(_))));
    // Peer 1 is heard directly again: the direct path is used at once.
    n.handle_datagram(
        Duration::from_secs(4),
        addr(7001),
        &sealed_from(&n, 1, &PING),
    );
    let (sent, _, _) = drain(&mut n);
    assert!(matches!(&sent_to(&n, 1, &sent)[..], [Message::Ack { .. }]));
    assert_eq!(path_of(&mut n, 1), PeerPath::Direct);
}

#[test]
fn a_member_heard_at_another_address_than_its_record_is_answered_there() {
    let mut n = member_node("carol", 3, 6003);
    // Peer 1 (record at 7001) behind a symmetric NAT: we see it at 7101.
    let bytes = sealed_from(&n, 1, &PING);
    n.handle_datagram(Duration::from_secs(2), addr(7101), &bytes);
    let (sent, _, _) = drain(&mut n);
    assert!(sent.iter().all(|(to, _)| *to == addr(7101)), "{sent:?}");
    assert!(!sent.is_empty());
    n.handle_command(
        Duration::from_secs(2),
        Command::Msg {
            to: "p1".into(),
            text: "hi".into(),
        },
    );
    let (sent, _, _) = drain(&mut n);
    assert!(sent.iter().any(|(to, _)| *to == addr(7101)));
    assert!(!sent.iter().any(|(to, _)| *to == addr(7001)));
}

/// A member (node 3 at 6003) that the auth server sees at `observed`, with peers 1 and 2
/// heard once at the start and never again (they stay suspect, not offline).
fn quiet_member(observed: SocketAddr) -> Node {
    let cfg = NodeConfig {
        suspect_timeout: Duration::from_secs(600),
        ..NodeConfig::default()
    };
    let mut n = Node::new(cfg, params("carol", true), host(6003), Duration::ZERO);
    drain(&mut n);
    admit_at(&mut n, 3, observed);
    for p in [1, 2] {
        send_as(&mut n, p, &PING);
    }
    drain(&mut n);
    n
}

fn run_until(n: &mut Node, until: Duration) {
    let mut t = Duration::ZERO;
    while t <= until {
        n.handle_timeout(t);
        drain(n);
        t += Duration::from_millis(500);
    }
}

#[test]
fn behind_a_nat_quiet_members_are_pinged_every_keepalive_interval_and_a_public_node_sends_none() {
    let mut natted = quiet_member(SocketAddr::from(([203, 0, 113, 1], 40000)));
    run_until(&mut natted, Duration::from_secs(19));
    assert_eq!(natted.stats().keepalives, 0, "heard within the interval");
    run_until(&mut natted, Duration::from_secs(21));
    assert_eq!(natted.stats().keepalives, 2, "both quiet peers");
    run_until(&mut natted, Duration::from_secs(41));
    assert_eq!(natted.stats().keepalives, 4);
    let mut public = quiet_member(addr(6003));
    run_until(&mut public, Duration::from_secs(41));
    assert_eq!(public.stats().keepalives, 0);
}

#[test]
fn a_member_reached_through_a_relay_is_tried_directly_again_every_thirty_seconds() {
    let mut n = member_node("carol", 3, 6003);
    let inner = sealed_from(&n, 1, &PING);
    let relayed = encode_envelope(&Envelope::Relayed { inner: &inner }).expect("fits");
    n.handle_datagram(Duration::from_secs(11), addr(7002), &relayed);
    drain(&mut n);
    let mut direct_pings = Vec::new();
    let mut t = Duration::from_secs(11);
    while t <= Duration::from_secs(72) {
        n.handle_timeout(t);
        let (sent, _, _) = drain(&mut n);
        if sent_to(&n, 1, &sent)
            .iter()
            .any(|m| matches!(m, Message::Ping { .. }))
        {
            direct_pings.push(t.as_secs());
        }
        // Peer 1 keeps talking through the relay.
        let inner = sealed_from(&n, 1, &PING);
        let relayed = encode_envelope(&Envelope::Relayed { inner: &inner }).expect("fits");
        n.handle_datagram(t, addr(7002), &relayed);
        drain(&mut n);
        t += Duration::from_millis(500);
    }
    // From the first probe round on, every 30 s.
    assert_eq!(direct_pings.len(), 3, "{direct_pings:?}");
    assert!(
        direct_pings.windows(2).all(|w| w[1] - w[0] == 30),
        "{direct_pings:?}"
    );
    assert!(matches!(path_of(&mut n, 1), PeerPath::Relayed { .. }));
}

#[test]
fn a_member_heard_through_the_auth_server_is_answered_through_it_until_a_member_relays() {
    let mut n = member_node("carol", 3, 6003);
    let relayed = |n: &Node| {
        let inner = sealed_from(n, 1, &PING);
        encode_envelope(&Envelope::Relayed { inner: &inner }).expect("fits")
    };
    let t = Duration::from_secs(12);
    // Peer 2 was heard a moment ago (a relay candidate).
    n.handle_datagram(t, addr(7002), &sealed_from(&n, 2, &PING));
    drain(&mut n);
    n.handle_datagram(t, addr(AUTH), &relayed(&n));
    let (sent, _, _) = drain(&mut n);
    let acks = relayed_to(&n, 1, addr(AUTH), &sent);
    assert!(
        matches!(&acks[..], [Message::Ack { .. }]),
        "answered through the server: {acks:?}"
    );
    // And offered to a member relay at once (peer 2, heard lately).
    let offered = relayed_to(&n, 1, addr(7002), &sent);
    assert!(
        matches!(&offered[..], [Message::Hello { .. }]),
        "{offered:?}"
    );
    assert_eq!(path_of(&mut n, 1), PeerPath::Server);
    // A member relays too: it takes the route over, and the server does not take it back.
    n.handle_datagram(t, addr(7002), &relayed(&n));
    drain(&mut n);
    n.handle_datagram(t, addr(AUTH), &relayed(&n));
    let (sent, _, _) = drain(&mut n);
    assert!(relayed_to(&n, 1, addr(AUTH), &sent).is_empty());
    assert!(matches!(
        &relayed_to(&n, 1, addr(7002), &sent)[..],
        [Message::Ack { .. }]
    ));
    assert_eq!(
        path_of(&mut n, 1),
        PeerPath::Relayed {
            via: Some(NodeId(2))
        }
    );
}

#[test]
fn hellos_nobody_answers_go_through_a_member_relay_then_also_through_the_auth_server() {
    let mut n = member_node("carol", 3, 6003);
    // Peer 1 introduces peer 4, which never answers.
    send_as(
        &mut n,
        1,
        &Message::Connect {
            from: info(1),
            peers: vec![info(4)],
        },
    );
    drain(&mut n);
    let (mut to_member, mut to_server) = (Vec::new(), Vec::new());
    let mut t = Duration::from_millis(1);
    while t < Duration::from_secs(8) {
        n.handle_timeout(t);
        let (sent, _, _) = drain(&mut n);
        for (to, b) in &sent {
            if let Ok(Envelope::Relay { to: NodeId(4), .. }) = decode_envelope(b) {
                let at = t.as_millis() / 500;
                if *to == addr(AUTH) {
                    to_server.push(at);
                } else {
                    to_member.push(at);
                }
            }
        }
        // Peers 1 and 2 stay heard (relay candidates).
        send_as(&mut n, 1, &PING);
        send_as(&mut n, 2, &PING);
        drain(&mut n);
        t += Duration::from_millis(100);
    }
    // Hellos every 500 ms: a member relay from the fourth, the server from the eighth on
    // (and one more member relay when the prober finds peer 4 suspect).
    let cfg = NodeConfig::default();
    let last = u128::from(cfg.hello_attempts + 4);
    assert!(
        to_member.starts_with(&(3..last).collect::<Vec<_>>()),
        "{to_member:?}"
    );
    assert_eq!(to_server, (7..last).collect::<Vec<_>>());
}
