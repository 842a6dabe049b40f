//! What goes out of the node, and the links it goes through: the output queue (datagrams,
//! events, records), the counters, the sealed links to peers and to the auth server.
//!
//! Replaying persisted records at start rebuilds state without saying anything: events and
//! records are not queued then (datagrams never are sent during a replay).

use crate::io::{Event, Output, Record, Stats};
use crate::secure::Links;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// Link datagrams kept while waiting for admission.
const EARLY_LIMIT: usize = 64;

pub(super) struct Net {
    /// Outputs for the driver, in order.
    pub(super) out: VecDeque<Output>,
    pub(super) stats: Stats,
    /// Links to peers and (as `SERVER_ID`) to the auth server.
    pub(super) links: Links,
    /// Link datagrams that arrived before our admission (a Connect can beat the answer).
    early: Vec<(SocketAddr, Vec<u8>)>,
    /// Records are being replayed: no events, no records.
    pub(super) replaying: bool,
}

impl Default for Net {
    fn default() -> Self {
        Net {
            out: VecDeque::new(),
            stats: Stats::default(),
            links: Links::default(),
            early: Vec::new(),
            replaying: true,
        }
    }
}

impl Net {
    /// Queues a datagram, counting it.
    pub(super) fn push_datagram(&mut self, to: SocketAddr, bytes: Vec<u8>) {
        self.stats.datagrams_out += 1;
        self.stats.bytes_out += bytes.len() as u64;
        self.out.push_back(Output::Send { to, bytes });
    }

    /// Queues an event for the user (not while replaying).
    pub(super) fn event(&mut self, e: Event) {
        if !self.replaying {
            self.out.push_back(Output::Event(e));
        }
    }

    /// Queues a record to persist (not while replaying).
    pub(super) fn persist(&mut self, r: Record) {
        if !self.replaying {
            self.out.push_back(Output::Persist(r));
        }
    }

    /// Keeps a link datagram that came before our admission (a bounded few).
    pub(super) fn keep_early(&mut self, from: SocketAddr, bytes: &[u8]) {
        if self.early.len() < EARLY_LIMIT {
            self.early.push((from, bytes.to_vec()));
        }
    }

    /// The datagrams kept before our admission, to handle now.
    pub(super) fn take_early(&mut self) -> Vec<(SocketAddr, Vec<u8>)> {
        std::mem::take(&mut self.early)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr() -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }

    #[test]
    fn nothing_is_said_while_replaying() {
        let mut net = Net::default();
        net.event(Event::Settled);
        net.persist(Record::Boot { epoch: 1 });
        assert!(net.out.is_empty());
        net.replaying = false;
        net.event(Event::Settled);
        net.persist(Record::Boot { epoch: 2 });
        assert_eq!(net.out.len(), 2);
    }

    #[test]
    fn datagrams_are_counted() {
        let mut net = Net::default();
        net.push_datagram(addr(), vec![0; 10]);
        assert_eq!((net.stats.datagrams_out, net.stats.bytes_out), (1, 10));
        assert!(
            matches!(net.out.pop_front(), Some(Output::Send { bytes, .. }) if bytes.len() == 10)
        );
    }

    #[test]
    fn early_datagrams_are_bounded_and_taken_once() {
        let mut net = Net::default();
        for _ in 0..EARLY_LIMIT + 5 {
            net.keep_early(addr(), b"x");
        }
        assert_eq!(net.take_early().len(), EARLY_LIMIT);
        assert!(net.take_early().is_empty());
    }
}
