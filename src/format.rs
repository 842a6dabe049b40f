//! Human-readable text, in one place: the demo's transcript lines, presence words, and the
//! status and traffic summaries the TUI and the demo show.

use p2pchat_core::{Event, PeerPath, PeerStatus, Scope, Stats, StatusReport};

/// `/status` for people: who and where, then traffic, deliveries, and every kind of rejected
/// input that occurred.
pub fn status_text(r: &StatusReport) -> String {
    let who = match r.node_id {
        Some(id) => format!("{} (node {id})", r.user),
        None => r.user.clone(),
    };
    format!(
        "{who}, {}; {}/{} online; {} private pending ({} in a mailbox); keeping {} for others; {}{}; {}",
        r.phase.replace('_', " "),
        r.online,
        r.members,
        r.pending_private,
        r.stored_private,
        r.mailbox,
        if r.auth_server_reachable {
            format!("auth server {} reachable", r.auth_server)
        } else {
            format!("auth server {} unreachable", r.auth_server)
        },
        if r.queued_commands > 0 {
            format!("; {} commands wait for the sign-in", r.queued_commands)
        } else {
            String::new()
        },
        traffic_text(&r.stats) + &nat_text(r)
    )
}

/// Behind a NAT, relays: said only when there is something to say.
fn nat_text(r: &StatusReport) -> String {
    let s = &r.stats;
    let mut parts = Vec::new();
    if r.natted {
        parts.push("behind a NAT".to_string());
    }
    if r.relayed_peers > 0 {
        parts.push(format!("{} peers through a relay", r.relayed_peers));
    }
    if s.relayed > 0 {
        parts.push(format!("relayed {} datagrams for others", s.relayed));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("; {}", parts.join(", "))
    }
}
/// Traffic, deliveries, and every kind of rejected input that occurred.
pub fn traffic_text(s: &Stats) -> String {
    let mut text = format!(
        "{} datagrams in ({} B), {} out ({} B); delivered {} group, {} private",
        s.datagrams_in,
        s.bytes_in,
        s.datagrams_out,
        s.bytes_out,
        s.group_delivered,
        s.private_delivered
    );
    let dropped: Vec<String> = s
        .rejections()
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
/// How a peer is reached, as a suffix for people: nothing when direct.
pub(crate) fn path(p: PeerPath) -> String {
    match p {
        PeerPath::Direct => String::new(),
        PeerPath::Relayed { via: Some(v) } => format!(", through a relay (node {v})"),
        PeerPath::Relayed { via: None } => ", through a relay".to_string(),
        PeerPath::Server => ", through the auth server".to_string(),
    }
}

/// Lower-case status name.
pub fn status(s: PeerStatus) -> &'static str {
    match s {
        PeerStatus::Unknown => "unknown",
        PeerStatus::Online => "online",
        PeerStatus::Suspect => "suspect",
        PeerStatus::Offline => "offline",
    }
}

/// How long ago a Unix time in ms was, roughly ("40 s", "3 min", "2 h", "5 days").
fn ago(ms: u64) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let s = now.saturating_sub(ms) / 1000;
    match s {
        0..=119 => format!("{s} s"),
        120..=7199 => format!("{} min", s / 60),
        7200..=172_799 => format!("{} h", s / 3600),
        _ => format!("{} days", s / 86_400),
    }
}

/// A readable line for a terminal user.
pub fn human(e: &Event, me: &str) -> Option<String> {
    Some(match e {
        Event::Ready { user, node_id, addr, first } => format!(
            "* signed in as {user} (node {node_id}) on {addr}{}. Type to chat; /msg USER TEXT, /peers, /history [USER], /quit",
            if *first { ", first node of the network" } else { "" }
        ),
        Event::Message(m) if m.is_merge() => return None,
        Event::Message(m) => {
            let clock = m.clock.as_ref().map(|c| format!("  {c}")).unwrap_or_default();
            match m.scope {
                Scope::Group => format!("<{}> {}{clock}", m.from, m.text),
                Scope::Private => {
                    let to = m.to.clone().unwrap_or_default();
                    if m.from == me {
                        format!("[private to {to}] {}{clock}", m.text)
                    } else {
                        format!("[private from {}] {}{clock}", m.from, m.text)
                    }
                }
            }
        }
        Event::Peer { info, status, joined } => {
            if *joined {
                format!("* {} just joined the chat!", info.user)
            } else {
                format!("* {} is {}", info.user, self::status(*status))
            }
        }
        Event::Peers(list) => {
            if list.is_empty() {
                "* no peers yet".to_string()
            } else {
                list.iter()
                    .map(|(p, s, via)| {
                        format!(
                            "* {} (node {}, {}) {}{}",
                            p.user,
                            p.node_id,
                            p.addr,
                            status(*s),
                            path(*via)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        }
        Event::History {
            messages,
            with,
            earlier,
            ..
        } => {
            let mut lines = vec![match with {
                Some(w) => format!("* private history with {w}:"),
                None => "* group history:".to_string(),
            }];
            if let (true, Some(first)) = (*earlier > 0, messages.first()) {
                lines.push(format!(
                    "  ({earlier} earlier messages: /history{} --before {})",
                    with.as_ref().map(|w| format!(" {w}")).unwrap_or_default(),
                    first.id
                ));
            }
            for m in messages {
                let clock = m.clock.as_ref().map(|c| format!("  {c}")).unwrap_or_default();
                lines.push(format!("  <{}> {}{clock}", m.from, m.text));
            }
            lines.join("\n")
        }
        Event::Search { query, messages } => {
            let mut lines = vec![format!(
                "* {} found for \"{query}\"{}",
                messages.len(),
                if messages.is_empty() { "" } else { ":" }
            )];
            for m in messages {
                let place = match &m.to {
                    Some(to) => format!(" (private to {to})"),
                    None => String::new(),
                };
                lines.push(format!("  {} <{}>{place} {}", m.id, m.from, m.text));
            }
            lines.join("\n")
        }
        Event::Acked { .. } => return None,
        Event::Devices {
            me: this_id,
            devices,
        } => {
            let mut lines = vec![format!("* devices of {}:", me)];
            for d in devices {
                let this = if d.node_id == *this_id { " (this device)" } else { "" };
                let state = if d.revoked {
                    "revoked".to_string()
                } else if d.online {
                    "online".to_string()
                } else if d.last_seen_ms > 0 {
                    format!("last seen {} ago", ago(d.last_seen_ms))
                } else {
                    "offline".to_string()
                };
                lines.push(format!("  node {}{this}: {state}", d.node_id));
            }
            lines.push("  (/devices revoke ID removes one)".into());
            lines.join("\n")
        }
        Event::Stored { peer, seq } => {
            format!("* private message {seq} to {peer} is kept by a mailbox until {peer} is back")
        }
        Event::AuthServer { reachable } => format!(
            "* auth server {}",
            if *reachable { "reachable again" } else { "unreachable (the chat goes on)" }
        ),
        Event::Status(s) => format!("* status: {}", crate::format::status_text(s)),
        Event::Error { message, fatal } => {
            if *fatal {
                format!("! fatal: {message}")
            } else {
                format!("! {message}")
            }
        }
        Event::Overview { peers, .. } => format!(
            "* {} members known, {} online",
            peers.len(),
            peers.iter().filter(|(_, s)| *s == PeerStatus::Online).count()
        ),
        Event::Reply { event, .. } => return human(event, me),
        Event::Admitted { .. } | Event::Settled => return None,
    })
}

#[cfg(test)]
mod status_tests {
    use super::*;
    use p2pchat_core::Stats;

    #[test]
    fn status_text_names_every_kind_of_rejection_that_occurred() {
        let quiet = traffic_text(&Stats::default());
        assert!(quiet.ends_with("nothing rejected"), "{quiet}");
        let s = Stats {
            datagrams_in: 10,
            unauthenticated: 2,
            replayed: 1,
            ..Stats::default()
        };
        let text = traffic_text(&s);
        assert!(text.starts_with("10 datagrams in"), "{text}");
        assert!(
            text.contains("rejected: unauthenticated 2, replayed 1"),
            "{text}"
        );
        assert!(!text.contains("malformed"), "{text}");
    }
}
