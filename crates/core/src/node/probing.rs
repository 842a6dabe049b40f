//! Failure detection, SWIM-style: a probe every interval, direct then relayed through
//! others, suspicion, and offline members pinged now and then to see them come back.

use super::send::Peer;
use super::swim::Probe;
use super::timers::Timer;
use super::Node;
use crate::io::PeerStatus;
use p2pchat_proto::{Message, NodeId};
use rand::Rng;
use std::time::Duration;

impl Node {
    pub(super) fn probe_timer(&mut self, now: Duration) {
        // Finish the previous probe.
        if let Some(p) = self.prober.probe.take() {
            // Anything heard since the ping left also proves it alive (a member that just
            // came back must not flap to suspect on a probe of its previous run).
            let silent = self.view.members.get(&p.target).is_some_and(|m| {
                matches!(m.status, PeerStatus::Online | PeerStatus::Unknown)
                    && m.last_heard < p.sent
            });
            if !p.acked && silent {
                self.set_status(now, p.target, PeerStatus::Suspect);
            }
        }
        if self
            .prober
            .offline_due(now, self.cfg.offline_probe_interval)
        {
            self.ping_offline();
        }
        // Suspects not heard from in time are declared offline.
        let expired: Vec<NodeId> = self
            .prober
            .suspects()
            .filter(|id| {
                self.view.members.get(id).is_some_and(|m| {
                    m.suspect_since
                        .is_some_and(|s| now.saturating_sub(s) >= self.cfg.suspect_timeout)
                        && now.saturating_sub(m.last_heard) >= self.cfg.suspect_timeout
                })
            })
            .collect();
        for id in expired {
            self.set_status(now, id, PeerStatus::Offline);
        }
        self.prober.expire_relays(now);
        self.keepalive(now);
        self.retry_direct(now);
        // Peers we owe messages but cannot reach: ask for their records every round, not
        // only when a retry falls due (the backoff grows to seconds).
        let lost: Vec<NodeId> = self
            .conversations
            .owed()
            .filter(|&id| self.info_of(id).is_none())
            .collect();
        for id in lost {
            self.ask_record(now, id);
        }
        self.mail_tick(now);
        self.expire_parked(now);
        self.expire_lookups(now);
        // Next target: suspects first (to confirm or clear them quickly), then round-robin.
        let suspect = self.prober.pick_suspect(&mut self.rng);
        let target = suspect.or_else(|| {
            // A member heard from within the last round is alive: no need to ask.
            let live = &self.view.live;
            let next = self
                .prober
                .next_round_robin(&mut self.rng, |id| live.contains(id));
            next.filter(|id| {
                self.view.members.get(id).is_none_or(|m| {
                    m.status != PeerStatus::Online
                        || now.saturating_sub(m.last_heard) >= self.cfg.probe_interval
                })
            })
        });
        if let Some(target) = target {
            if self.view.members.contains_key(&target) {
                let nonce: u64 = self.rng.random();
                let gossip = self.gossip_sample();
                self.send_member(target, &Message::Ping { nonce, gossip });
                self.prober.probe = Some(Probe {
                    target,
                    nonce,
                    acked: false,
                    sent: now,
                });
                self.set_timer(Timer::ProbeTimeout, now + self.cfg.probe_timeout);
            }
        }
        self.set_timer(Timer::Probe, now + self.cfg.probe_interval);
    }

    /// Pings the next offline member in turn: any answer shows it online again.
    pub(super) fn ping_offline(&mut self) {
        let live = &self.view.live;
        if let Some(id) = self.prober.next_offline(|id| live.contains(id)) {
            self.ring_ping(id);
        }
    }

    pub(super) fn probe_timeout(&mut self) {
        let Some((target, nonce)) = self
            .prober
            .probe
            .as_ref()
            .filter(|p| !p.acked)
            .map(|p| (p.target, p.nonce))
        else {
            return;
        };
        let Some(target_addr) = self.view.members.get(&target).map(|m| m.info.addr) else {
            return;
        };
        let helpers = self.sample_live(self.cfg.indirect_probes, &[target]);
        for h in helpers {
            self.send_member(
                h,
                &Message::PingReq {
                    nonce,
                    target: target_addr,
                },
            );
        }
    }

    pub(super) fn handle_ack(&mut self, now: Duration, from: Peer, nonce: u64) {
        if let Some((requester, orig)) = self.prober.relayed(nonce) {
            self.reply(
                requester,
                &Message::Ack {
                    nonce: orig,
                    gossip: Vec::new(),
                },
            );
            return;
        }
        if let Some(p) = self.prober.probe.as_mut() {
            if p.nonce == nonce {
                let first = !std::mem::replace(&mut p.acked, true);
                if first {
                    self.spread.ring.sample(now.saturating_sub(p.sent));
                }
                let target = p.target;
                self.mark_heard_id(now, target);
                if first && from.id != target {
                    // Only a helper reached it: perhaps only a relay can.
                    self.indirect_answer(now, target, from);
                }
            }
        }
    }
}
