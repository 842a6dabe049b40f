//! The script-mode contract: one JSON object per event, each with an `"event"` field.

use crate::format::status;
use p2pchat_core::{Event, HistoryEntry, PeerPath, Scope, StatusReport};
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

fn entry(h: &HistoryEntry) -> Value {
    let mut v = json!({
        "id": h.id,
        "from": h.from,
        "device": h.from_id.0,
        "text": h.text,
        "clock": clock(&h.clock),
    });
    if let (Some(to), Value::Object(m)) = (&h.to, &mut v) {
        m.insert("to".into(), json!(to));
    }
    v
}

/// `/status` in script mode: who and where, then every counter at the top level.
fn status_json(r: &StatusReport) -> Value {
    let mut v = serde_json::to_value(&r.stats).unwrap_or_else(|_| json!({}));
    if let Value::Object(m) = &mut v {
        m.insert("event".into(), json!("status"));
        m.insert("user".into(), json!(r.user));
        m.insert("node_id".into(), json!(r.node_id.map(|n| n.0)));
        m.insert("phase".into(), json!(r.phase));
        m.insert("online".into(), json!(r.online));
        m.insert("members".into(), json!(r.members));
        m.insert("natted".into(), json!(r.natted));
        m.insert("relayed_peers".into(), json!(r.relayed_peers));
        m.insert("pending_private".into(), json!(r.pending_private));
        m.insert("stored_private".into(), json!(r.stored_private));
        m.insert("mailbox".into(), json!(r.mailbox));
        m.insert("queued_commands".into(), json!(r.queued_commands));
        m.insert(
            "auth_server_reachable".into(),
            json!(r.auth_server_reachable),
        );
        m.insert("auth_server".into(), json!(r.auth_server.to_string()));
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
            json!({"event": "peers", "peers": list.iter().map(|(p, s, via)| {
                let mut v = json!({"user": p.user, "node_id": p.node_id.0, "addr": p.addr.to_string(), "status": status(*s), "path": "direct"});
                if let Value::Object(m) = &mut v {
                    match via {
                        PeerPath::Direct => {}
                        PeerPath::Relayed { via } => {
                            m.insert("path".into(), json!("relayed"));
                            m.insert("via".into(), json!(via.map(|v| v.0)));
                        }
                        PeerPath::Server => {
                            m.insert("path".into(), json!("relayed"));
                            m.insert("via".into(), json!("server"));
                        }
                    }
                }
                v
            }).collect::<Vec<_>>()})
        }
        Event::History {
            scope: s,
            with,
            messages,
            earlier,
        } => {
            let mut v = json!({"event": "history", "scope": scope(*s), "messages": messages.iter().map(entry).collect::<Vec<_>>(), "earlier": earlier});
            if let (Some(w), Value::Object(m)) = (with, &mut v) {
                m.insert("with".into(), json!(w));
            }
            v
        }
        Event::Search { query, messages } => {
            json!({"event": "search", "query": query, "messages": messages.iter().map(entry).collect::<Vec<_>>()})
        }
        Event::Acked { peer, upto } => json!({"event": "acked", "peer": peer, "upto": upto}),
        Event::Stored { peer, seq } => json!({"event": "stored", "peer": peer, "seq": seq}),
        Event::AuthServer { reachable } => json!({"event": "auth_server", "reachable": reachable}),
        Event::Status(report) => status_json(report),
        Event::Overview {
            peers,
            conversations,
        } => {
            json!({"event": "overview", "peers": peers.iter().map(|(p, s)| json!({"user": p.user, "node_id": p.node_id.0, "addr": p.addr.to_string(), "status": status(*s)})).collect::<Vec<_>>(), "conversations": conversations})
        }
        Event::Settled => json!({"event": "settled"}),
        Event::Reply { tag, event: inner } => {
            let mut v = event(inner);
            if let Value::Object(m) = &mut v {
                // Not `id`: a message's `id` is its message id.
                m.insert("cmd_id".into(), json!(tag));
            }
            v
        }
        Event::Error { message, fatal } => {
            json!({"event": "error", "message": message, "fatal": fatal})
        }
        Event::Devices { me, devices } => {
            json!({"event": "devices", "me": me.0, "devices": devices.iter().map(|d| json!({"node_id": d.node_id.0, "online": d.online, "last_seen_ms": d.last_seen_ms, "revoked": d.revoked, "this_device": d.node_id == *me})).collect::<Vec<_>>()})
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
