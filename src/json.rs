//! The script-mode contract: one JSON object per event, each with an `"event"` field.

use p2pchat_core::{Event, HistoryEntry, PeerStatus, Scope, Stats};
use p2pchat_proto::VectorClock;
use serde_json::{json, Map, Value};

fn clock(c: &Option<VectorClock>) -> Value {
    let mut m = Map::new();
    if let Some(c) = c {
        for (node, v) in c.iter() {
            m.insert(node.to_string(), json!(v));
        }
    }
    Value::Object(m)
}

fn scope(s: Scope) -> &'static str {
    match s {
        Scope::Group => "group",
        Scope::Private => "private",
    }
}

/// `/status` for people: traffic, deliveries, and every kind of rejected input that occurred.
pub fn status_text(s: &Stats) -> String {
    let mut text = format!(
        "{} datagrams in ({} B), {} out ({} B); delivered {} group, {} private",
        s.datagrams_in,
        s.bytes_in,
        s.datagrams_out,
        s.bytes_out,
        s.group_delivered,
        s.private_delivered
    );
    let dropped: Vec<String> = [
        ("malformed", s.malformed),
        ("unauthenticated", s.unauthenticated),
        ("replayed", s.replayed),
        ("unknown sender", s.unknown_sender),
        ("bad signature", s.bad_signature),
        ("expired certificate", s.expired),
        ("impersonation", s.impersonation),
        ("unknown author", s.unverifiable),
        ("bad server key", s.bad_server_key),
        ("other", s.rejected),
    ]
    .iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| format!("{k} {n}"))
    .collect();
    if dropped.is_empty() {
        text.push_str("; nothing rejected");
    } else {
        text.push_str(&format!("; rejected: {}", dropped.join(", ")));
    }
    text
}

/// Lower-case status name.
pub fn status(s: PeerStatus) -> &'static str {
    match s {
        PeerStatus::Online => "online",
        PeerStatus::Suspect => "suspect",
        PeerStatus::Offline => "offline",
    }
}

fn entry(h: &HistoryEntry) -> Value {
    let mut v = json!({
        "id": h.id,
        "from": h.from,
        "text": h.text,
        "clock": clock(&h.clock),
    });
    if let (Some(to), Value::Object(m)) = (&h.to, &mut v) {
        m.insert("to".into(), json!(to));
    }
    v
}

/// The JSON object for an event.
pub fn event(e: &Event) -> Value {
    match e {
        Event::Ready {
            user,
            node_id,
            addr,
            first,
        } => {
            json!({"event": "ready", "user": user, "node_id": node_id.0, "addr": addr.to_string(), "first": first})
        }
        Event::Message(h) => {
            let mut v = entry(h);
            if let Value::Object(m) = &mut v {
                m.insert("event".into(), json!("message"));
                m.insert("scope".into(), json!(scope(h.scope)));
            }
            v
        }
        Event::Peer {
            info,
            status: s,
            joined,
        } => {
            json!({"event": "peer", "user": info.user, "node_id": info.node_id.0, "addr": info.addr.to_string(), "status": status(*s), "joined": joined})
        }
        Event::Peers(list) => {
            json!({"event": "peers", "peers": list.iter().map(|(p, s)| json!({"user": p.user, "node_id": p.node_id.0, "addr": p.addr.to_string(), "status": status(*s)})).collect::<Vec<_>>()})
        }
        Event::History {
            scope: s,
            with,
            messages,
        } => {
            let mut v = json!({"event": "history", "scope": scope(*s), "messages": messages.iter().map(entry).collect::<Vec<_>>()});
            if let (Some(w), Value::Object(m)) = (with, &mut v) {
                m.insert("with".into(), json!(w));
            }
            v
        }
        Event::Acked { peer, upto } => json!({"event": "acked", "peer": peer, "upto": upto}),
        Event::AuthServer { reachable } => json!({"event": "auth_server", "reachable": reachable}),
        Event::Status(stats) => {
            let mut v = serde_json::to_value(stats).unwrap_or_else(|_| json!({}));
            if let Value::Object(m) = &mut v {
                m.insert("event".into(), json!("status"));
            }
            v
        }
        Event::Error { message, fatal } => {
            json!({"event": "error", "message": message, "fatal": fatal})
        }
        Event::Admitted {
            user,
            node_id,
            addr,
            first,
        } => {
            json!({"event": "admitted", "user": user, "node_id": node_id.0, "addr": addr.to_string(), "first": first})
        }
    }
}

#[cfg(test)]
mod status_tests {
    use super::*;

    #[test]
    fn status_text_names_every_kind_of_rejection_that_occurred() {
        let quiet = status_text(&Stats::default());
        assert!(quiet.ends_with("nothing rejected"), "{quiet}");
        let s = Stats {
            datagrams_in: 10,
            unauthenticated: 2,
            replayed: 1,
            ..Stats::default()
        };
        let text = status_text(&s);
        assert!(text.starts_with("10 datagrams in"), "{text}");
        assert!(
            text.contains("rejected: unauthenticated 2, replayed 1"),
            "{text}"
        );
        assert!(!text.contains("malformed"), "{text}");
    }
}
