//! The user's commands: run at once, or kept until the sign-in and then run in order, each
//! reply tagged with the command's tag; `/status`, `/peers`, `/history`.

use super::life::Phase;
use super::Node;
use crate::io::{Command, Event, PeerStatus, Scope, StatusReport};
use p2pchat_proto::{Message, NodeId};
use std::time::Duration;

impl Node {
    /// Carries out a user command.
    pub fn handle_command(&mut self, now: Duration, cmd: Command) {
        self.handle_tagged(now, None, cmd);
    }

    /// Carries out a user command; with a tag, every reply to it (an error, a listing, the
    /// echo of the message it sent) comes as [`Event::Reply`] carrying the tag. Commands
    /// given before the sign-in wait for it and then run in order; `Status`, `Settle` and
    /// `Quit` are answered at once.
    pub fn handle_tagged(&mut self, now: Duration, tag: Option<String>, cmd: Command) {
        if self.life.phase == Phase::Stopped {
            return;
        }
        self.group.trim(self.cfg.history_in_memory);
        if self.life.must_wait(&cmd) {
            if !self.life.queue(tag.clone(), cmd) {
                let start = self.net.out.len();
                self.error("too many commands waiting for the sign-in; this one is dropped");
                self.tag_replies(start, tag);
            }
            return;
        }
        let start = self.net.out.len();
        self.run_command(now, cmd);
        self.tag_replies(start, tag);
    }

    /// Wraps the replies among the outputs from `start` on in [`Event::Reply`].
    pub(super) fn tag_replies(&mut self, start: usize, tag: Option<String>) {
        if let Some(tag) = tag {
            crate::io::tag_replies(self.net.out.range_mut(start..), &tag, &self.params.user);
        }
    }

    /// Runs the commands given before the sign-in, in order.
    pub(super) fn run_queued(&mut self, now: Duration) {
        while let Some((tag, cmd)) = self.life.next_queued() {
            let start = self.net.out.len();
            self.run_command(now, cmd);
            self.tag_replies(start, tag);
        }
    }

    pub(super) fn status_report(&self) -> StatusReport {
        StatusReport {
            user: self.params.user.clone(),
            node_id: self.own.node_id,
            phase: self.life.phase.name(),
            online: self
                .view
                .members
                .values()
                .filter(|m| m.status == PeerStatus::Online)
                .count(),
            members: self.view.members.len(),
            pending_private: self.outbox_len(),
            stored_private: self.conversations.stored(),
            mailbox: self.mail.mailbox.len(),
            queued_commands: self.life.queued_len(),
            auth_server_reachable: self.auth.reachable,
            auth_server: self.auth.addr(),
            stats: self.net.stats.clone(),
        }
    }

    pub(super) fn overview(&self) -> Event {
        let peers = self
            .view
            .members
            .values()
            .map(|m| (m.info.clone(), m.status))
            .collect();
        let conversations = self.conversations.summaries(|id| self.user_name(id));
        Event::Overview {
            peers,
            conversations,
        }
    }

    pub(super) fn run_command(&mut self, now: Duration, cmd: Command) {
        match cmd {
            Command::Say(text) => self.say(now, text),
            Command::Msg { to, text } => self.send_private(now, &to, text),
            Command::Peers => {
                let list = self
                    .view
                    .members
                    .values()
                    .map(|m| (m.info.clone(), m.status))
                    .collect();
                self.event(Event::Peers(list));
            }
            Command::History { with, last } => self.show_history(with, last),
            Command::Status => self.event(Event::Status(Box::new(self.status_report()))),
            Command::Overview => self.event(self.overview()),
            Command::Settle => self.life.settle_asked = true,
            Command::Quit => {
                let ids: Vec<NodeId> = self.view.live.ids().to_vec();
                if let Some(me) = self.own.node_id {
                    for id in ids {
                        self.send_member(id, &Message::Bye { node_id: me });
                    }
                }
                self.life.phase = Phase::Stopped;
            }
        }
    }

    pub(super) fn show_history(&mut self, with: Option<String>, last: Option<usize>) {
        let (scope, mut messages) = match &with {
            None => (Scope::Group, self.group_history()),
            Some(user) => match self.member_by_name(user) {
                Some(id) => (Scope::Private, self.private_history(id)),
                None => {
                    self.error(format!("unknown user: {user}"));
                    return;
                }
            },
        };
        // Merge messages (no text) carry only causal metadata: not shown.
        messages.retain(|m| !m.is_merge());
        if let Some(n) = last {
            let skip = messages.len().saturating_sub(n);
            messages.drain(..skip);
        }
        self.event(Event::History {
            scope,
            with,
            messages,
        });
    }
}
