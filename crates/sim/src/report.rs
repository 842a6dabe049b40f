//! The report of a run: what the checkers counted, summed with the nodes' own counters.

use super::{Report, Sim};

impl Sim {
    pub(crate) fn report(&self) -> Report {
        let mut faults = [0u64; 6];
        let (mut view_sum, mut view_largest, mut parked) = (0usize, 0usize, 0u64);
        let [mut payloads, mut ring_retries, mut ring_handovers] = self.carried;
        let (mut relayed, mut shared_merges) = (0u64, 0u64);
        let mut reference: Option<Vec<String>> = None;
        let mut mismatches = 0u64;
        for ep in &self.eps[1..] {
            if let Some(n) = &ep.node {
                let st = n.stats();
                view_sum += n.member_count();
                view_largest = view_largest.max(n.member_count());
                parked += st.parked;
                ring_retries += st.ring_retries;
                ring_handovers += st.ring_handovers;
                payloads += st.group_payloads;
                relayed += st.relayed;
                shared_merges += st.shared_merges;
                for (f, v) in faults.iter_mut().zip([
                    st.unauthenticated,
                    st.replayed,
                    st.unknown_sender,
                    st.unverifiable,
                    st.bad_signature,
                    st.malformed,
                ]) {
                    *f += v;
                }
                // What users see: merges are the protocol's own business (a shared merge
                // written after the last text may still be on its way when the run ends).
                let ids: Vec<String> = n
                    .group_history()
                    .into_iter()
                    .filter(|h| !h.is_merge())
                    .map(|h| h.id)
                    .collect();
                match &reference {
                    None => reference = Some(ids),
                    Some(r) if *r != ids => mismatches += 1,
                    Some(_) => {}
                }
            } else {
                mismatches += 1;
            }
        }
        // Own messages are delivered without being received; a restarted node's restored
        // history is neither received nor delivered again (each endpoint counts a message once).
        let unique: u64 = self.checker.per[1..]
            .iter()
            .map(|e| e.group.len() as u64)
            .sum();
        let received_deliveries = unique.saturating_sub(self.checker.snapshots.len() as u64);
        let rmr = if received_deliveries > 0 {
            payloads as f64 / received_deliveries as f64 - 1.0
        } else {
            0.0
        };
        let health = self.checker.tree_health(self.first_crash, self.last_crash);
        let ldh = if self.checker.max_hop.is_empty() {
            0.0
        } else {
            self.checker
                .max_hop
                .values()
                .map(|&h| h as f64)
                .sum::<f64>()
                / self.checker.max_hop.len() as f64
        };
        let converged = self.checker.delivered >= self.checker.expected
            && self.sends_left == 0
            && self.eps[1..].iter().all(|e| e.node.is_some());
        let round2 = |x: f64| (x * 100.0).round() / 100.0;
        Report {
            nodes: self.cfg.nodes,
            messages: self.checker.snapshots.len(),
            private: self.cfg.private,
            expected: self.checker.expected,
            delivered: self.checker.delivered,
            missing: self.checker.expected.saturating_sub(self.checker.delivered),
            duplicates: self.checker.duplicates,
            causal_violations: self.checker.violations,
            history_mismatches: mismatches,
            converged_ms: if converged {
                (self
                    .checker
                    .last_delivery
                    .saturating_sub(self.checker.first_send.unwrap_or(0))
                    / 1000) as i64
            } else {
                -1
            },
            join_ms: self.talk_started.unwrap_or(0) / 1000,
            datagrams: self.datagrams,
            bytes: self.bytes,
            talk_datagrams: self.datagrams - self.talk_mark.0,
            talk_bytes: self.bytes - self.talk_mark.1,
            rmr: round2(rmr),
            last_delivery_hop: round2(ldh),
            crashes: self.crashes,
            push_share_before: health.before,
            push_share_during: health.during,
            push_share_after: health.after,
            recovery_broadcasts: health.recovery_broadcasts,
            ring_retries,
            ring_handovers,
            view_max: self.cfg.view_size(),
            view_mean: view_sum as f64 / self.cfg.nodes as f64,
            view_largest,
            parked,
            unauthenticated: faults[0],
            replayed: faults[1],
            unknown_sender: faults[2],
            unverifiable: faults[3],
            bad_signature: faults[4],
            malformed: faults[5],
            clock_bytes_mean: round2(if self.clock_bytes.is_empty() {
                0.0
            } else {
                self.clock_bytes.iter().sum::<u64>() as f64 / self.clock_bytes.len() as f64
            }),
            clock_bytes_max: self.clock_bytes.iter().copied().max().unwrap_or(0),
            refused: self.checker.refused,
            merges: self.checker.merges,
            shared_merges,
            datagrams_per_delivery: round2(if self.checker.delivered > 0 {
                (self.datagrams - self.talk_mark.0) as f64 / self.checker.delivered as f64
            } else {
                0.0
            }),
            offline_private: self.checker.offline_msgs.len(),
            offline_private_late: (self.checker.offline_msgs.len() as u64)
                .saturating_sub(self.checker.offline_early),
            seed: self.cfg.seed,
            devices: self.cfg.devices,
            reused_dots: self.checker.reused_dots,
            natted: self.nats.count(),
            symmetric: self.nats.symmetric_count(),
            nat_dropped: self.nats.dropped,
            relayed,
            server_relayed: self.auth.as_ref().map_or(0, |a| a.stats().relayed),
        }
    }
}
