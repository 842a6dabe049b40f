//! Group chat: writing a message (its causal dependencies and signature), spreading it
//! (flooding, Plumtree or ring), receiving it (signature, hold-back, causal delivery), and
//! anti-entropy (digests and repairs).

use super::send::Peer;
use super::spread::Mode;
use super::{Node, Via};
use crate::io::{Event, HistoryEntry, Record, Scope};
use p2pchat_proto::wire::{BATCH_BUDGET, MAX_DEPS};
use p2pchat_proto::{
    encode, Dot, GroupMsg, Message, NodeId, PeerInfo, VectorClock, MAX_TEXT_BYTES,
};
use std::time::Duration;

/// Digest entries per datagram (each at most ~14 bytes).
const DIGEST_CHUNK: usize = 70;

impl Node {
    pub(super) fn say(&mut self, now: Duration, text: String) {
        let Some(me) = self.own.node_id else {
            self.error("not signed in yet");
            return;
        };
        if !self.text_ok(&text) {
            return;
        }
        // Causal metadata never refuses a message: a frontier too large for one message (many
        // authors talking at once) is first folded into merge messages, own messages without
        // text that reference up to MAX_DEPS of it each; the message then references the last
        // merge (implied: it is our previous message) and the rest.
        loop {
            let deps = self.group.frontier_deps(me);
            let msg = self.own_group(now, me, deps.clone(), text.clone());
            let fits = encode(&Message::Group {
                hop: 0,
                msg: msg.clone(),
            })
            .is_ok();
            if deps.len() <= MAX_DEPS && fits {
                let mut msg = msg;
                msg.sig = self.own.ident.sign(&msg.signed_bytes());
                return self.publish(now, me, msg);
            }
            if deps.is_empty() {
                self.error(format!(
                    "message too long: {} bytes do not fit a datagram",
                    text.len()
                ));
                return;
            }
            let chunk = deps[..deps.len().min(MAX_DEPS)].to_vec();
            self.write_merge(now, me, chunk);
        }
    }

    /// Our next group message (unsigned).
    pub(super) fn own_group(
        &self,
        now: Duration,
        me: NodeId,
        deps: Vec<Dot>,
        text: String,
    ) -> GroupMsg {
        let (seq, lamport) = self.group.next_own(me);
        GroupMsg {
            author: me,
            seq,
            lamport,
            deps,
            text,
            time_ms: self.wall(now),
            sig: [0; 64],
        }
    }

    /// Delivers our own signed message (which persists it) and sends it on its way.
    pub(super) fn publish(&mut self, now: Duration, me: NodeId, msg: GroupMsg) {
        let dot = msg.dot();
        self.hold(now, msg.clone());
        self.group.record_hop(dot, 0);
        if self.view.live.is_empty() {
            // Nobody to hand it to: anti-entropy will, once someone is reachable.
            self.spread.own_unspread = true;
        }
        if self.mode() == Mode::Ring {
            self.ring_push(now, msg, 0, me);
        } else {
            self.gossip(msg, 0, &[me]);
        }
    }

    /// How group messages travel now (see [`Mode::choose`]).
    pub(super) fn mode(&self) -> Mode {
        Mode::choose(&self.cfg, self.view.live.len(), self.partial())
    }

    /// Refuses (with a clear error) empty texts and texts over the limit.
    pub(super) fn text_ok(&mut self, text: &str) -> bool {
        if text.trim().is_empty() {
            self.error("empty message");
            false
        } else if text.len() > MAX_TEXT_BYTES {
            self.error(format!(
                "message too long: {} bytes (limit {MAX_TEXT_BYTES})",
                text.len()
            ));
            false
        } else {
            true
        }
    }

    /// The eager-push peers: started as `fanout` random members, shaped by prunes and grafts;
    /// members that went offline leave it, and it is never left empty.
    pub(super) fn eager_targets(&mut self, exclude: &[NodeId]) -> Vec<NodeId> {
        let fanout = self.cfg.fanout;
        self.spread
            .eager
            .targets(&self.view.live, &mut self.rng, fanout, exclude)
    }

    pub(super) fn eager_add(&mut self, id: NodeId) {
        self.spread.eager.add(id, &self.view.live);
    }

    pub(super) fn gossip(&mut self, msg: GroupMsg, hop: u16, exclude: &[NodeId]) {
        let mode = self.mode();
        let targets = if hop == 0 && mode == Mode::Flood {
            // A small group: straight to everyone.
            self.view
                .live
                .ids()
                .iter()
                .copied()
                .filter(|id| !exclude.contains(id))
                .collect()
        } else if mode.eager(&self.cfg) {
            self.eager_targets(exclude)
        } else {
            self.sample_live(self.cfg.fanout, exclude)
        };
        if targets.is_empty() {
            return;
        }
        // Encoded once; sealed per link. In a network larger than a view, receivers rarely
        // know the author: its record rides along (when it fits).
        let author = self.partial().then(|| self.record_of(msg.author)).flatten();
        let wire = match author {
            Some(author) => Message::GroupFrom { hop, msg, author },
            None => Message::Group { hop, msg },
        };
        let payload = match encode(&wire) {
            Ok(p) => Ok(p),
            Err(_) => match wire {
                Message::GroupFrom { hop, msg, .. } => encode(&Message::Group { hop, msg }),
                other => encode(&other),
            },
        };
        if let Ok(payload) = payload {
            for t in targets {
                self.send_payload_member(t, &payload);
            }
        }
    }

    /// A group message, from the authenticated peer `from` (none for our own, replayed or
    /// restored messages).
    pub(super) fn receive_group(
        &mut self,
        now: Duration,
        msg: GroupMsg,
        hop: u16,
        from: Option<Peer>,
        via: Via,
    ) {
        let sender = from.map(|p| p.id);
        self.net.stats.group_payloads += 1;
        let dot = msg.dot();
        if self.group.seen(dot) {
            self.net.stats.group_duplicates += 1;
            // Plumtree: an eager link that brings a copy we already had is redundant.
            if via == Via::Push && self.mode().eager(&self.cfg) {
                if let Some(peer) = from {
                    if self.spread.eager.cut(peer.id) {
                        self.reply(peer, &Message::Prune);
                    }
                }
            }
            return;
        }
        if self.group.held_len() >= self.cfg.holdback_limit {
            // Anti-entropy brings it back once the backlog drains.
            self.net.stats.holdback_dropped += 1;
            return;
        }
        // Verified once per new dot, after the duplicate check: copies cost nothing. A copy
        // straight from its author needs no check: the link already authenticated the author.
        let from_author = sender == Some(msg.author);
        if !from_author {
            match self.group_sig_ok(&msg) {
                Some(true) => {}
                Some(false) => return,
                // Unknown author: wait for its record (see `views`).
                None => return self.park(now, msg, hop, from, via),
            }
        }
        if self.mode() == Mode::Plumtree {
            if let Some(s) = sender {
                if via == Via::Push {
                    // The link that delivered first is a tree link, both ways.
                    self.eager_add(s);
                } else if !self.spread.eager.contains(s) {
                    // Only repair brought it: the tree misses us here. Graft the link.
                    self.eager_add(s);
                    if let Some(peer) = from {
                        self.reply(peer, &Message::Graft);
                    }
                }
            }
        }
        // The author of a small group sent everyone a copy: no need to forward.
        let flooded = hop == 0 && sender == Some(msg.author) && self.mode() == Mode::Flood;
        if let (Via::Ring(limit), false) = (via, self.partial()) {
            self.ring_push(now, msg.clone(), hop.saturating_add(1), limit);
        } else if via != Via::Repair && !flooded {
            let mut exclude = vec![msg.author];
            if let Some(sender) = sender {
                exclude.push(sender);
            }
            if let Some(me) = self.own.node_id {
                exclude.push(me);
            }
            self.gossip(msg.clone(), hop.saturating_add(1), &exclude);
        }
        let hop = if hop == u16::MAX {
            hop
        } else {
            hop.saturating_add(1)
        };
        // Only the simulator asks; a long-running node must not grow a map per message.
        self.group.record_hop(dot, hop);
        self.hold(now, msg);
    }

    /// Holds `msg` back until its dependencies are delivered, and delivers what it can.
    pub(super) fn hold(&mut self, now: Duration, msg: GroupMsg) {
        let first = self.group.len();
        let delivered = self.group.hold(msg);
        if !self.net.replaying {
            self.group.stamp(first, now);
        }
        let any = !delivered.is_empty();
        for (msg, clock) in delivered {
            self.net.stats.group_delivered += 1;
            self.persist(Record::Group(msg.clone()));
            if !self.net.replaying {
                let entry = self.group_entry(msg, clock);
                self.event(Event::Message(Box::new(entry)));
            }
        }
        if any {
            self.check_shared_merge(now);
        }
    }

    pub(super) fn group_entry(&self, msg: GroupMsg, clock: Option<VectorClock>) -> HistoryEntry {
        HistoryEntry {
            scope: Scope::Group,
            id: msg.dot().to_string(),
            from_id: msg.author,
            from: self.user_name(msg.author),
            to: None,
            text: msg.text,
            clock,
            order: msg.lamport,
            seq: msg.seq,
            time_ms: msg.time_ms,
        }
    }

    /// Digest chunks of our delivered counters over `lo..=hi`.
    pub(super) fn send_digest(&mut self, to: Peer, lo: NodeId, hi: NodeId, reply: bool) {
        let entries: Vec<(NodeId, u64)> = self.group.delivered().range(lo, hi).collect();
        let members = u32::try_from(self.view.members.len() + 1).unwrap_or(u32::MAX);
        if entries.is_empty() {
            self.reply(
                to,
                &Message::Digest {
                    lo,
                    hi,
                    entries,
                    reply,
                    members,
                },
            );
            return;
        }
        let chunks: Vec<&[(NodeId, u64)]> = entries.chunks(DIGEST_CHUNK).collect();
        let mut start = lo;
        for (i, chunk) in chunks.iter().enumerate() {
            let end = if i + 1 == chunks.len() {
                hi
            } else {
                chunk.last().map_or(hi, |(id, _)| *id)
            };
            self.reply(
                to,
                &Message::Digest {
                    lo: start,
                    hi: end,
                    entries: chunk.to_vec(),
                    reply,
                    members,
                },
            );
            start = NodeId(end.0.saturating_add(1));
        }
    }

    pub(super) fn handle_repair(
        &mut self,
        now: Duration,
        from: Peer,
        msgs: Vec<GroupMsg>,
        more: bool,
    ) {
        for msg in msgs {
            self.receive_group(now, msg, u16::MAX, Some(from), Via::Repair);
        }
        if more {
            self.send_digest(from, NodeId(0), NodeId(u32::MAX), false);
        }
    }

    /// Sends one repair datagram; in a network larger than a view it carries the records of
    /// the messages' authors (the receiver rarely knows them).
    pub(super) fn send_repair(&mut self, to: Peer, msgs: Vec<GroupMsg>, more: bool) {
        if !self.partial() {
            return self.reply(to, &Message::Repair { msgs, more });
        }
        let mut authors: Vec<PeerInfo> = Vec::new();
        for m in &msgs {
            if authors.iter().all(|a| a.node_id != m.author) {
                authors.extend(self.record_of(m.author));
            }
        }
        let with = Message::RepairFrom {
            msgs,
            more,
            authors,
        };
        match encode(&with) {
            Ok(p) => self.send_payload_to(to.id, to.addr, &p),
            // One long message and its author's record may not fit: the receiver asks.
            Err(_) => {
                if let Message::RepairFrom { msgs, more, .. } = with {
                    self.reply(to, &Message::Repair { msgs, more });
                }
            }
        }
    }

    /// The bytes a message adds to a repair datagram: with its author's record, in a network
    /// larger than a view, when it is the first of that author in the batch.
    pub(super) fn repair_cost(&self, msg: &GroupMsg, batch: &[GroupMsg]) -> usize {
        let mut len = p2pchat_proto::wire::encoded_len(msg);
        if self.partial() && batch.iter().all(|b| b.author != msg.author) {
            len += self
                .record_of(msg.author)
                .map_or(0, |i| p2pchat_proto::wire::encoded_len(&i));
        }
        len
    }

    pub(super) fn handle_digest(
        &mut self,
        now: Duration,
        from: Peer,
        lo: NodeId,
        hi: NodeId,
        entries: Vec<(NodeId, u64)>,
        reply: bool,
    ) {
        if let Some(me) = self.own.node_id.filter(|_| self.spread.own_unspread) {
            let mine = self.group.delivered().get(me);
            if entries.iter().any(|&(a, s)| a == me && s >= mine) {
                self.spread.own_unspread = false;
            }
        }
        // No message encodes under 64 bytes (its signature alone): what one answer can carry.
        let most = self.cfg.repair_max_datagrams * (BATCH_BUDGET / 64 + 1);
        // What arrived within a few round trips is likely on its way to them by push: a
        // copy now would be a duplicate (at internet latency, most of the redundancy). If
        // they still lack it at the next digest, it goes then. Two acknowledgement timeouts
        // at least: on a loaded machine the round trip grows far past the last estimate, and
        // the timeout's back-off is what shows it.
        let timeout = self.spread.ring.rto(self.cfg.ring_ack_timeout);
        let grace = self
            .spread
            .ring
            .srtt()
            .map_or(Duration::ZERO, |s| (4 * s).max(2 * timeout));
        let fresh = self.group.fresh_from(now, grace);
        let (missing, they_are_ahead) = self.group.compare(lo, hi, &entries, most, fresh);
        if !missing.is_empty() {
            // Oldest first, and only as many as the datagram budget holds: a peer far behind
            // gets the rest when it asks again, and we never copy the whole backlog.
            let mut batch: Vec<GroupMsg> = Vec::new();
            let mut size = 0usize;
            let mut sent = 0usize;
            let mut iter = missing.iter().peekable();
            while let Some(&(_, a, s)) = iter.next() {
                let Some(msg) = self.group.delivered_msg(Dot::new(a, s)) else {
                    continue;
                };
                let mut len = self.repair_cost(&msg, &batch);
                // (Two length prefixes more in a RepairFrom.)
                if !batch.is_empty() && size + len + 4 > BATCH_BUDGET {
                    sent += 1;
                    let last = sent == self.cfg.repair_max_datagrams;
                    self.send_repair(from, std::mem::take(&mut batch), last);
                    size = 0;
                    len = self.repair_cost(&msg, &batch);
                    if last {
                        break;
                    }
                }
                size += len;
                batch.push(msg);
                if iter.peek().is_none() {
                    self.send_repair(from, std::mem::take(&mut batch), false);
                }
            }
        }
        if reply && they_are_ahead {
            self.send_digest(from, lo, hi, false);
        }
    }
}
