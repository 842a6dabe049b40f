//! Where the node is in its life (signing in, waiting for a bootstrap, member, stopped), and
//! the commands given before it could carry them out.

use crate::io::Command;
use std::collections::VecDeque;
use std::time::Duration;

/// Commands kept while signing in (they run, in order, once signed in).
const QUEUED_COMMANDS_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for an AuthReply.
    SigningIn,
    /// Admitted, waiting for a Connect (or a HelloAck from a remembered peer).
    AwaitingBootstrap,
    /// Part of the network.
    Member,
    /// Said goodbye, or failed fatally.
    Stopped,
}

impl Phase {
    /// The name `/status` shows.
    pub(super) fn name(self) -> &'static str {
        match self {
            Phase::SigningIn => "signing_in",
            Phase::AwaitingBootstrap => "awaiting_bootstrap",
            Phase::Member => "member",
            Phase::Stopped => "stopped",
        }
    }
}

pub(super) struct Lifecycle {
    pub(super) phase: Phase,
    /// The auth server said we are the first node.
    pub(super) first: bool,
    /// "ready" was said (once).
    pub(super) ready_sent: bool,
    /// Restored from records: it has joined before (Hello says "back", not "joined").
    pub(super) restored: bool,
    /// [`Command::Settle`] was given: say [`crate::io::Event::Settled`] once nothing is in
    /// flight.
    pub(super) settle_asked: bool,
    /// Commands given before the sign-in, with their tags: run in order once signed in.
    queued: VecDeque<(Option<String>, Command)>,
    /// Since when the node waits to be bootstrapped (across admissions: a newcomer nobody
    /// bootstrapped signs in again).
    pub(super) awaiting_since: Option<Duration>,
    /// A message waits for shared merges (see `merges`) until then, and the commands given
    /// after it wait behind it.
    pub(super) folding_until: Option<Duration>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            phase: Phase::SigningIn,
            first: false,
            ready_sent: false,
            restored: false,
            settle_asked: false,
            queued: VecDeque::new(),
            folding_until: None,
            awaiting_since: None,
        }
    }
}

impl Lifecycle {
    /// Whether `cmd` must wait: the node is not ready, or earlier commands wait.
    /// `Status`, `Settle` and `Quit` never wait.
    pub(super) fn must_wait(&self, cmd: &Command) -> bool {
        let at_once = matches!(cmd, Command::Status | Command::Settle | Command::Quit);
        !at_once && (!self.ready_sent || !self.queued.is_empty())
    }

    /// Keeps a command for later; false when too many wait already.
    pub(super) fn queue(&mut self, tag: Option<String>, cmd: Command) -> bool {
        if self.queued.len() >= QUEUED_COMMANDS_MAX {
            return false;
        }
        self.queued.push_back((tag, cmd));
        true
    }

    /// The next waiting command, once the node is ready and not stopped.
    pub(super) fn next_queued(&mut self) -> Option<(Option<String>, Command)> {
        if !self.ready_sent || self.phase == Phase::Stopped || self.folding_until.is_some() {
            return None;
        }
        self.queued.pop_front()
    }

    pub(super) fn queued_len(&self) -> usize {
        self.queued.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_wait_for_ready_and_keep_their_order() {
        let mut life = Lifecycle::default();
        let say = |t: &str| Command::Say(t.to_string());
        assert!(life.must_wait(&say("a")));
        assert!(
            !life.must_wait(&Command::Status),
            "status is answered at once"
        );
        assert!(life.queue(Some("1".into()), say("a")));
        assert!(life.queue(None, say("b")));
        assert!(life.next_queued().is_none(), "not ready yet");
        life.ready_sent = true;
        assert!(life.must_wait(&say("c")), "behind the queued ones");
        assert!(
            matches!(life.next_queued(), Some((Some(t), Command::Say(s))) if t == "1" && s == "a")
        );
        assert!(matches!(life.next_queued(), Some((None, Command::Say(s))) if s == "b"));
        assert!(!life.must_wait(&say("c")));
    }

    #[test]
    fn the_queue_is_bounded_and_a_stopped_node_runs_nothing() {
        let mut life = Lifecycle::default();
        for _ in 0..QUEUED_COMMANDS_MAX {
            assert!(life.queue(None, Command::Peers));
        }
        assert!(!life.queue(None, Command::Peers));
        life.ready_sent = true;
        life.phase = Phase::Stopped;
        assert!(life.next_queued().is_none());
        assert_eq!(life.queued_len(), QUEUED_COMMANDS_MAX);
        assert_eq!(Phase::AwaitingBootstrap.name(), "awaiting_bootstrap");
    }
}
