//! The simulation's event queue: events in virtual time, earliest first, ties in the order
//! they were scheduled (what makes a run reproducible).

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::net::SocketAddr;

/// Something that happens in the simulation.
#[derive(Debug)]
pub(crate) enum Ev {
    Deliver {
        to: usize,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    Wake(usize),
    Start(usize),
    Say,
    /// A group message from this node (the burst workload).
    SayFrom(usize),
    Private,
    /// A private message from the first node to the second (the offline scenario).
    PrivateTo(usize, usize),
    Crash(usize),
    Restart(usize),
    /// A second device of a user signs in (once its user's first one is in).
    StartDevice(usize),
    /// A device comes back without its data dir (a reinstall): a new device of its user.
    Reinstall(usize),
    CrashAuth,
    RestartAuth,
    Check,
}

/// A heap key; the event itself waits in a slab so that heap moves stay small.
struct Scheduled {
    at: u64,
    seq: u64,
    slot: u32,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// Events by time; the events wait in a slab so that heap moves stay small.
#[derive(Default)]
pub(crate) struct EventQueue {
    seq: u64,
    heap: BinaryHeap<Scheduled>,
    slab: Vec<Option<Ev>>,
    free: Vec<u32>,
}

impl EventQueue {
    /// Schedules `ev` at `at` (after everything already scheduled at `at`).
    pub(crate) fn at(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slab[slot as usize] = Some(ev);
                slot
            }
            None => {
                self.slab.push(Some(ev));
                (self.slab.len() - 1) as u32
            }
        };
        self.heap.push(Scheduled {
            at,
            seq: self.seq,
            slot,
        });
    }

    /// The next event and its time.
    pub(crate) fn pop(&mut self) -> Option<(u64, Ev)> {
        loop {
            let s = self.heap.pop()?;
            let Some(ev) = self.slab[s.slot as usize].take() else {
                continue;
            };
            self.free.push(s.slot);
            return Some((s.at, ev));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_and_ties_in_scheduling_order() {
        let mut q = EventQueue::default();
        q.at(5, Ev::Wake(1));
        q.at(3, Ev::Wake(2));
        q.at(5, Ev::Wake(3));
        q.at(1, Ev::Say);
        let order: Vec<String> = std::iter::from_fn(|| q.pop())
            .map(|(t, e)| format!("{t}:{e:?}"))
            .collect();
        assert_eq!(order, ["1:Say", "3:Wake(2)", "5:Wake(1)", "5:Wake(3)"]);
        // Slots are reused.
        q.at(9, Ev::Check);
        assert_eq!(q.slab.len(), 4);
    }
}
