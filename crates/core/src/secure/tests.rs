use super::*;
use proptest::prelude::*;

fn ids() -> (Identity, Identity) {
    let mut rng = crypto_rng([1; 32]);
    (Identity::generate(&mut rng), Identity::generate(&mut rng))
}

fn sealed_parts(bytes: &[u8]) -> (NodeId, u32, u64, Vec<u8>) {
    match p2pchat_proto::decode_envelope(bytes).expect("valid") {
        Envelope::Link {
            from,
            epoch,
            counter,
            sealed,
            ..
        } => (from, epoch, counter, sealed.to_vec()),
        _ => panic!("not a link"),
    }
}

#[test]
fn links_open_once_and_refuse_tampering() {
    let (a, b) = ids();
    let mut ab = Link::new(&a, NodeId(1), NodeId(2), b.dh_pk);
    let mut ba = Link::new(&b, NodeId(2), NodeId(1), a.dh_pk);
    let dg = ab.seal(NodeId(1), 7, b"hello", None).expect("seal");
    let (from, epoch, counter, sealed) = sealed_parts(&dg);
    assert_eq!(
        ba.open(from, epoch, counter, &sealed).as_deref(),
        Some(&b"hello"[..])
    );
    assert!(
        ba.open(from, epoch, counter, &sealed).is_none(),
        "replay refused"
    );
    let dg2 = ab.seal(NodeId(1), 7, b"again", None).expect("seal");
    let (from, epoch, counter, mut sealed) = sealed_parts(&dg2);
    sealed[0] ^= 1;
    assert!(
        ba.open(from, epoch, counter, &sealed).is_none(),
        "flip refused"
    );
    sealed[0] ^= 1;
    assert!(
        ba.open(NodeId(3), epoch, counter, &sealed).is_none(),
        "wrong sender refused"
    );
    assert!(
        ba.open(from, epoch, counter + 1, &sealed).is_none(),
        "wrong counter refused"
    );
    assert!(ba.open(from, epoch, counter, &sealed).is_some());
    // A third party deriving "the link" with its own keys cannot forge.
    let (c, _) = {
        let mut rng = crypto_rng([9; 32]);
        (Identity::generate(&mut rng), ())
    };
    let mut cb = Link::new(&c, NodeId(1), NodeId(2), b.dh_pk);
    let forged = cb.seal(NodeId(1), 8, b"forged", None).expect("seal");
    let (from, epoch, counter, sealed) = sealed_parts(&forged);
    assert!(ba.open(from, epoch, counter, &sealed).is_none());
}

#[test]
fn a_link_table_keeps_state_only_for_datagrams_that_authenticate() {
    let (a, b) = ids();
    let c = Identity::generate(&mut crypto_rng([7; 32]));
    let mut links = Links::default();
    let mut ab = Link::new(&a, NodeId(1), NodeId(2), b.dh_pk);
    let dg = ab.seal(NodeId(1), 1, b"x", None).expect("seal");
    let (from, epoch, counter, sealed) = sealed_parts(&dg);
    let open = |l: &mut Links, key: Key| l.open(&b, NodeId(2), from, key, epoch, counter, &sealed);
    // Claimed under another key: refused, and no link is made for it.
    assert_eq!(open(&mut links, c.dh_pk), Err(Refused::Unauthentic));
    assert!(links.get(NodeId(1)).is_none());
    assert_eq!(open(&mut links, a.dh_pk).as_deref(), Ok(&b"x"[..]));
    assert!(links.get(NodeId(1)).is_some_and(|l| l.peer_has_cert));
    assert_eq!(open(&mut links, a.dh_pk), Err(Refused::Replayed));
    // A forgery under another key leaves the real link as it was.
    assert_eq!(open(&mut links, c.dh_pk), Err(Refused::Unauthentic));
    assert_eq!(links.get(NodeId(1)).map(|l| l.peer_dh), Some(a.dh_pk));
}

#[test]
fn the_known_certificate_wins_over_an_older_or_forged_one() {
    let (server, node) = ids();
    let old = server.issue_cert(NodeId(4), "dora", node.sign_pk, node.dh_pk, 100);
    let new = server.issue_cert(NodeId(4), "dora", node.sign_pk, node.dh_pk, 200);
    let attach = |c: &Cert| {
        Some(SenderCert {
            user: "dora".into(),
            cert: c.clone(),
        })
    };
    let known = Some(("dora".to_string(), new.clone()));
    let all_valid = |_: &str, _: &Cert| true;
    // An older attached certificate does not replace the known one.
    let (_, c, fresh) = pick_cert(attach(&old), known.clone(), 50, all_valid).expect("known");
    assert_eq!((c, fresh), (new.clone(), false));
    // A newer valid one does; an invalid one is refused.
    let newer = server.issue_cert(NodeId(4), "dora", node.sign_pk, node.dh_pk, 300);
    let (_, c, fresh) = pick_cert(attach(&newer), known.clone(), 50, all_valid).expect("newer");
    assert_eq!((c, fresh), (newer.clone(), true));
    assert_eq!(
        pick_cert(attach(&newer), known.clone(), 50, |_, _| false),
        Err(NoCert::BadSignature)
    );
    assert_eq!(
        pick_cert(None, None, 50, all_valid),
        Err(NoCert::UnknownSender)
    );
    assert_eq!(pick_cert(None, known, 250, all_valid), Err(NoCert::Expired));
}

#[test]
fn a_new_epoch_restarts_counters_and_old_epochs_are_refused() {
    let mut w = ReplayWindow::default();
    assert!(w.fresh(1, 5));
    w.commit(1, 5);
    assert!(!w.fresh(1, 5));
    assert!(w.fresh(1, 4));
    assert!(w.fresh(2, 1));
    w.commit(2, 1);
    assert!(!w.fresh(1, 6), "older epoch");
    w.commit(2, 1 + WINDOW + 5);
    assert!(!w.fresh(2, 3), "fell out of the window");
    assert!(w.fresh(2, 10 + WINDOW));
}

#[test]
fn certificates_bind_id_name_and_keys() {
    let (server, node) = ids();
    let vk = verifying_key(&server.sign_pk).expect("key");
    let cert = server.issue_cert(NodeId(4), "dora", node.sign_pk, node.dh_pk, 99);
    assert!(cert_ok(&vk, NodeId(4), "dora", &cert));
    assert!(!cert_ok(&vk, NodeId(5), "dora", &cert));
    assert!(!cert_ok(&vk, NodeId(4), "eve", &cert));
    let mut later = cert.clone();
    later.expires_ms += 1;
    assert!(!cert_ok(&vk, NodeId(4), "dora", &later));
}

#[test]
fn noise_nk_round_trip_and_wrong_server_key_fails() {
    let (server, other) = ids();
    let (mut hs, m1) = nk_initiate(&server.dh_pk, [3; 32], b"secret request").expect("init");
    assert!(!m1.windows(6).any(|w| w == b"secret"));
    let (sk_sign, sk_dh) = server.secrets();
    let _ = sk_sign;
    let (mut rs, got) = nk_respond(&sk_dh, [4; 32], &m1).expect("respond");
    assert_eq!(got, b"secret request");
    let m2 = nk_answer(&mut rs, b"reply").expect("answer");
    assert_eq!(nk_finish(&mut hs, &m2).expect("finish"), b"reply");
    let (_, other_dh) = other.secrets();
    assert!(nk_respond(&other_dh, [4; 32], &m1).is_err());
    assert_eq!(
        parse_fingerprint(&fingerprint(&server.dh_pk)),
        Some(server.dh_pk)
    );
}

proptest! {
    #[test]
    fn handshake_inputs_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1300)) {
        let (server, _) = ids();
        let (_, dh) = server.secrets();
        let _ = nk_respond(&dh, [5; 32], &bytes);
        let (mut hs, _) = nk_initiate(&server.dh_pk, [6; 32], b"x").expect("init");
        let _ = nk_finish(&mut hs, &bytes);
        let mut link = Link::new(&server, NodeId(0), NodeId(1), server.dh_pk);
        let _ = link.open(NodeId(1), 1, 1, &bytes);
    }

    #[test]
    fn window_accepts_each_counter_once(counters in proptest::collection::vec(1u64..3000, 1..200)) {
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::HashSet::new();
        for c in counters {
            let fresh = w.fresh(1, c);
            if fresh {
                prop_assert!(seen.insert(c), "counter {} accepted twice", c);
                w.commit(1, c);
            }
        }
    }
}
