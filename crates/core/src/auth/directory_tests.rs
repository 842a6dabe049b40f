//! Unit tests of the in-memory directory.
use super::*;

fn now(s: u64) -> Now {
    Now {
        mono: Duration::from_secs(s),
        wall_ms: 1_700_000_000_000 + s * 1000,
    }
}

fn cert(id: NodeId) -> Cert {
    Cert {
        sign_pk: [id.0 as u8; 32],
        dh_pk: [0; 32],
        expires_ms: 0,
        sig: [0; 64],
    }
}

fn ask<'a>(user: &'a str, node_id: Option<NodeId>, hash: Option<&'a str>) -> Ask<'a> {
    let seat = match (node_id, hash) {
        (Some(id), _) => Seat::Device(id),
        (None, Some(hash)) => Seat::NewAccount { hash },
        (None, None) => Seat::NewDevice { max: 8 },
    };
    Ask {
        user,
        seat,
        key: [7; 32],
        from: SocketAddr::from(([127, 0, 0, 1], 9000)),
        warming_up: false,
    }
}

fn admit(
    d: &mut MemoryDirectory,
    cfg: &AuthConfig,
    t: u64,
    a: &Ask<'_>,
) -> Result<Admitted, AuthError> {
    d.admit(now(t), cfg, a, &mut cert)
        .expect("memory never fails")
}

#[test]
fn ids_are_never_reused_and_accounts_persist_as_records() {
    let cfg = AuthConfig::default();
    let mut d = MemoryDirectory::from_records(&[]);
    let a = admit(&mut d, &cfg, 0, &ask("ann", None, Some("h1"))).expect("ann");
    assert!(a.first);
    let b = admit(&mut d, &cfg, 0, &ask("bob", None, Some("h2"))).expect("bob");
    assert!(!b.first, "ann is live: bob waits to be bootstrapped");
    assert_eq!(
        admit(&mut d, &cfg, 0, &ask("ann", None, Some("h3"))).unwrap_err(),
        AuthError::UsernameTaken
    );
    let records = d.take_records();
    assert_eq!(records.len(), 4);
    let mut again = MemoryDirectory::from_records(&records);
    let acc = again.account("bob").expect("memory").expect("bob");
    assert_eq!(
        (acc.devices[0].node_id, acc.hash.as_str()),
        (b.node_id, "h2")
    );
    assert_eq!(
        acc.devices[0].key,
        Some([7; 32]),
        "the device's key persists"
    );
    let c = admit(&mut again, &cfg, 0, &ask("cid", None, Some("h"))).expect("cid");
    assert!(
        c.node_id.0 > b.node_id.0,
        "a restored directory never reuses an id"
    );
}

#[test]
fn the_cap_counts_leases_and_the_queue_and_polls_move_newcomers() {
    let cfg = AuthConfig {
        max_nodes: 2,
        ..AuthConfig::default()
    };
    let mut d = MemoryDirectory::from_records(&[]);
    let a = admit(&mut d, &cfg, 0, &ask("ann", None, Some("h"))).expect("ann");
    let b = admit(&mut d, &cfg, 0, &ask("bob", None, Some("h"))).expect("bob");
    assert_eq!(
        admit(&mut d, &cfg, 0, &ask("cid", None, Some("h"))).unwrap_err(),
        AuthError::NetworkFull
    );
    assert_eq!(d.counts(now(0), &cfg).expect("memory").queued, 1);
    let ann = PeerInfo {
        node_id: a.node_id,
        user: "ann".into(),
        addr: SocketAddr::from(([127, 0, 0, 1], 9001)),
        cert: a.cert,
    };
    let offered = d.poll(now(0), &cfg, &ann).expect("memory");
    assert_eq!(
        offered.iter().map(|p| p.node_id).collect::<Vec<_>>(),
        [b.node_id]
    );
    assert!(
        d.poll(now(1), &cfg, &ann).expect("memory").is_empty(),
        "not yet due again"
    );
    assert_eq!(
        d.poll(now(3), &cfg, &ann).expect("memory").len(),
        1,
        "offered again"
    );
    // bob polls: he is live, not waiting; ann can look him up.
    let bob = PeerInfo {
        user: "bob".into(),
        ..offered[0].clone()
    };
    d.poll(now(3), &cfg, &bob).expect("memory");
    assert_eq!(
        d.counts(now(3), &cfg).expect("memory"),
        Counts {
            users: 2,
            live: 2,
            queued: 0
        }
    );
    let found = d.lookup(now(3), &cfg, a.node_id, "bob").expect("memory");
    assert_eq!(found.map(|v| v.len()), Some(1));
    assert_eq!(
        d.lookup(now(3), &cfg, NodeId(99), "bob").expect("memory"),
        None
    );
    // Leases lapse: the cap frees up, and long-expired leases are swept.
    assert!(d.check(now(10), &cfg, None).expect("memory").is_ok());
    d.expire(now(60), &cfg).expect("memory");
    assert_eq!(d.counts(now(60), &cfg).expect("memory").live, 0);
}
