//! The node's deadline table: one slot per kind of timer, no heap and no timer ids. Setting a
//! timer keeps the earlier deadline (two reasons to act soon never postpone each other);
//! only [`Timers::reschedule`] moves a deadline later, for the one case that means it (a
//! server that asked us to wait).

use std::time::Duration;

/// The timers of a node; each has one deadline slot.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(super) enum Timer {
    /// Retry signup/signin.
    Auth,
    /// Waited too long for a bootstrap.
    Bootstrap,
    /// Poll the server.
    Fetch,
    /// Start an anti-entropy round.
    AntiEntropy,
    /// Probe the next peer; finish the previous probe.
    Probe,
    /// The direct probe timed out: go indirect.
    ProbeTimeout,
    /// Retransmit Hellos.
    Hello,
    /// Retransmit private messages.
    Private,
    /// Ring broadcast: send queued acknowledgements; pushes and pings not answered in time.
    Ring,
    /// Fold our bucket of a large causal frontier into a shared merge.
    Merge,
    /// Messages that wait for shared merges: the frontier shrank, or they waited long enough.
    Folding,
}

const COUNT: usize = 11;

impl Timer {
    /// Every timer, in the order due timers fire.
    const ALL: [Timer; COUNT] = [
        Timer::Auth,
        Timer::Bootstrap,
        Timer::Fetch,
        Timer::AntiEntropy,
        Timer::Probe,
        Timer::ProbeTimeout,
        Timer::Hello,
        Timer::Private,
        Timer::Ring,
        Timer::Merge,
        Timer::Folding,
    ];
}

/// One optional deadline per [`Timer`].
#[derive(Default)]
pub(super) struct Timers([Option<Duration>; COUNT]);

impl Timers {
    /// Fires `timer` at `at`, or earlier if it already was.
    pub(super) fn set(&mut self, timer: Timer, at: Duration) {
        let slot = &mut self.0[timer as usize];
        *slot = Some(slot.map_or(at, |cur| cur.min(at)));
    }

    /// Fires `timer` at `at`, later than it was set if so.
    pub(super) fn reschedule(&mut self, timer: Timer, at: Duration) {
        self.0[timer as usize] = Some(at);
    }

    /// `timer` no longer fires.
    pub(super) fn cancel(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    /// The earliest deadline.
    pub(super) fn next(&self) -> Option<Duration> {
        self.0.iter().flatten().min().copied()
    }

    /// Whether `timer` is due at `now`; if so it is cleared (its handler sets it again).
    pub(super) fn take_due(&mut self, timer: Timer, now: Duration) -> bool {
        let slot = &mut self.0[timer as usize];
        if slot.is_some_and(|at| at <= now) {
            *slot = None;
            return true;
        }
        false
    }

    /// Every timer, in firing order.
    pub(super) fn all() -> [Timer; COUNT] {
        Timer::ALL
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(secs: u64) -> Duration {
        Duration::from_secs(secs)
    }

    #[test]
    fn the_earlier_deadline_wins_unless_rescheduled() {
        let mut t = Timers::default();
        assert_eq!(t.next(), None);
        t.set(Timer::Fetch, s(5));
        t.set(Timer::Fetch, s(9));
        t.set(Timer::Probe, s(7));
        assert_eq!(t.next(), Some(s(5)), "setting later does not postpone");
        t.reschedule(Timer::Fetch, s(9));
        assert_eq!(t.next(), Some(s(7)));
        t.cancel(Timer::Probe);
        assert_eq!(t.next(), Some(s(9)));
    }

    #[test]
    fn due_timers_fire_once_in_order() {
        let mut t = Timers::default();
        t.set(Timer::Ring, s(1));
        t.set(Timer::Auth, s(2));
        t.set(Timer::Hello, s(10));
        let fired: Vec<Timer> = Timers::all()
            .into_iter()
            .filter(|&k| t.take_due(k, s(3)))
            .collect();
        assert_eq!(fired, [Timer::Auth, Timer::Ring]);
        assert!(!t.take_due(Timer::Auth, s(3)), "cleared once fired");
        assert_eq!(t.next(), Some(s(10)));
    }
}
