//! The user's commands: run at once, or kept until the sign-in and then run in order, each
//! reply tagged with the command's tag; `/status`, `/peers`, `/history` (paged), `/search`.

use super::life::Phase;
use super::Node;
use crate::io::{
    Command, ConversationSummary, Event, HistoryEntry, PeerStatus, Record, Scope, StatusReport,
    HISTORY_PAGE_MAX, SEARCH_DEFAULT, SEARCH_MAX,
};
use p2pchat_proto::{Dot, Message, NodeId, PeerInfo};
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
        if matches!(cmd, Command::Quit) {
            // Messages waiting for shared merges go out first, folded by us if need be.
            self.release_folding(now, true);
        }
        if self.life.must_wait(&cmd) || (matches!(cmd, Command::Say(_)) && self.fold_first(now)) {
            if !self.life.queue(tag.clone(), cmd) {
                let start = self.net.out.len();
                self.error(
                    "too many commands waiting (for the sign-in, or for a burst to be folded); \
                     this one is dropped",
                );
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
            natted: self.own.natted(),
            relayed_peers: self.paths.relayed_count(),
            pending_private: self.outbox_len(),
            stored_private: self.conversations.stored(),
            mailbox: self.mail.mailbox.len(),
            queued_commands: self.life.queued_len(),
            auth_server_reachable: self.auth.reachable,
            auth_server: self.auth.addr(),
            stats: self.net.stats.clone(),
        }
    }

    /// Every member we know, with its presence.
    fn member_list(&self) -> Vec<(PeerInfo, PeerStatus)> {
        self.view
            .members
            .values()
            .map(|m| (m.info.clone(), m.status))
            .collect()
    }

    /// The node id of `user`, or an "unknown user" error.
    fn id_of_user(&mut self, user: &str) -> Option<NodeId> {
        let id = self.member_by_name(user);
        if id.is_none() {
            self.error(format!("unknown user: {user}"));
        }
        id
    }

    pub(super) fn overview(&self) -> Event {
        let peers = self.member_list();
        // Per user: the conversations with each of its devices, and what our other devices
        // had with it.
        let mut conversations: Vec<ConversationSummary> = Vec::new();
        let mirrored = self.account.mirror.users(&self.params.user);
        for s in self.conversations.summaries(|id| self.user_name(id)) {
            match conversations.iter_mut().find(|c| c.with == s.with) {
                Some(c) => c.received += s.received,
                None => conversations.push(s),
            }
        }
        for user in mirrored {
            if !conversations.iter().any(|c| c.with == user) {
                conversations.push(ConversationSummary {
                    with: user,
                    sent: 0,
                    acked: 0,
                    received: 0,
                });
            }
        }
        for c in &mut conversations {
            let (sent, acked) = self.account.counts(&c.with);
            if sent > 0 {
                (c.sent, c.acked) = (sent, acked);
            }
        }
        Event::Overview {
            peers,
            conversations,
        }
    }

    /// The conversation with `user` as this device shows it: with each of its devices, and
    /// what our other devices had with it; a message sent to several devices once.
    pub(super) fn user_history(&self, user: &str) -> Option<Vec<HistoryEntry>> {
        let mut ids = self.devices_of(user);
        for p in self.conversations.peers() {
            if !ids.contains(&p) && self.user_name(p) == user {
                ids.push(p);
            }
        }
        let mut sources = 0;
        let mut all: Vec<HistoryEntry> = Vec::new();
        for id in &ids {
            let h = self.private_history(*id);
            sources += usize::from(!h.is_empty());
            all.extend(h);
        }
        let mut mirrored = false;
        for (m, from, to) in self.account.mirror.messages() {
            if from == user || to == user {
                let mut e = self.private_entry(m);
                (e.from, e.to) = (from.to_string(), Some(to.to_string()));
                all.push(e);
                mirrored = true;
            }
        }
        if ids.is_empty() && all.is_empty() {
            return None;
        }
        if sources + usize::from(mirrored) > 1 {
            // Several conversations: one order by writing time, each message once.
            all.sort_by_key(|e| (e.time_ms, e.from_id, e.seq));
            let mut seen = crate::HashSet::default();
            all.retain(|e| seen.insert((e.from_id, e.time_ms, e.text.clone())));
        }
        Some(all)
    }

    pub(super) fn run_command(&mut self, now: Duration, cmd: Command) {
        match cmd {
            Command::Say(text) => self.say(now, text),
            Command::Msg { to, text } => self.send_private(now, &to, text),
            Command::Peers => {
                let list = self
                    .member_list()
                    .into_iter()
                    .map(|(info, status)| {
                        let path = self.peer_path(info.node_id);
                        (info, status, path)
                    })
                    .collect();
                self.event(Event::Peers(list));
            }
            Command::History { with, last, before } => self.show_history(with, last, before),
            Command::Search { query, with, last } => self.search(query, with, last),
            Command::Status => self.event(Event::Status(Box::new(self.status_report()))),
            Command::Overview => self.event(self.overview()),
            Command::Devices { revoke } => self.devices_command(revoke),
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

    /// A page of a history: the newest `last` (at most [`HISTORY_PAGE_MAX`]) before message
    /// `before`. The group's reads only the page's bodies.
    pub(super) fn show_history(
        &mut self,
        with: Option<String>,
        last: Option<usize>,
        before: Option<String>,
    ) {
        let n = last.unwrap_or(HISTORY_PAGE_MAX);
        let missing = |id: &str| format!("no message {id} in this history");
        let (scope, messages, earlier) = match &with {
            None => {
                let dot = match before.as_deref().map(parse_dot) {
                    None => None,
                    Some(Some(dot)) => Some(dot),
                    Some(None) => return self.error(missing(before.as_deref().unwrap_or(""))),
                };
                let Some((page, earlier)) = self.group.page(dot, n) else {
                    return self.error(missing(before.as_deref().unwrap_or("")));
                };
                let messages = page
                    .into_iter()
                    .map(|(msg, clock)| self.group_entry(msg, clock))
                    .collect();
                (Scope::Group, messages, earlier)
            }
            Some(user) => {
                let Some(mut messages) = self.user_history(user) else {
                    return self.error(format!("unknown user: {user}"));
                };
                if let Some(id) = &before {
                    let Some(at) = messages.iter().position(|m| &m.id == id) else {
                        return self.error(missing(id));
                    };
                    messages.truncate(at);
                }
                let earlier = messages.len().saturating_sub(n);
                messages.drain(..earlier);
                (Scope::Private, messages, earlier)
            }
        };
        self.event(Event::History {
            scope,
            with,
            messages,
            earlier,
        });
    }

    /// Finds the messages with every word of `query`: through the archive's index when the
    /// driver gave one, else in what the node holds.
    pub(super) fn search(&mut self, query: String, with: Option<String>, last: Option<usize>) {
        let peer = match &with {
            None => None,
            Some(user) => match self.id_of_user(user) {
                Some(id) => Some(id),
                None => return,
            },
        };
        let words = words(&query);
        if words.is_empty() {
            self.error("nothing to search for: give a word");
            return;
        }
        let limit = last.unwrap_or(SEARCH_DEFAULT).min(SEARCH_MAX);
        let found = self
            .group
            .archive()
            .and_then(|a| a.search(&query, peer, limit));
        let messages = match found {
            Some(records) => records
                .into_iter()
                .filter_map(|r| match r {
                    Record::Group(m) => Some(self.group_entry(m, None)),
                    Record::PrivateIn(m) | Record::PrivateOut(m) => Some(self.private_entry(&m)),
                    _ => None,
                })
                .collect(),
            None => self.search_in_memory(&words, peer, limit),
        };
        self.event(Event::Search { query, messages });
    }

    /// The newest `limit` matches among the messages in memory, oldest first (group history
    /// first, then each conversation: without an archive there is no common order).
    fn search_in_memory(
        &self,
        words: &[String],
        peer: Option<NodeId>,
        limit: usize,
    ) -> Vec<HistoryEntry> {
        let mut all: Vec<HistoryEntry> = match peer {
            Some(p) => self.private_history(p),
            None => {
                let mut all = self.group_history();
                for p in self.conversations.peers() {
                    all.extend(self.private_history(p));
                }
                all
            }
        };
        all.retain(|m| !m.is_merge() && matches(words, &m.text));
        let skip = all.len().saturating_sub(limit);
        all.drain(..skip);
        all
    }
}

/// A group message id as shown (`AUTHOR.SEQ`).
fn parse_dot(id: &str) -> Option<Dot> {
    let (author, seq) = id.split_once('.')?;
    Some(Dot::new(NodeId(author.parse().ok()?), seq.parse().ok()?))
}

/// The words of a search, lower-cased: runs of letters and digits.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Whether every word of the search starts a word of `text` (as the archive's index matches).
fn matches(search: &[String], text: &str) -> bool {
    let have = words(text);
    search
        .iter()
        .all(|w| have.iter().any(|h| h.starts_with(w.as_str())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_search_matches_every_word_as_a_word_start_ignoring_case() {
        let q = words("LUNCH, noon!");
        assert_eq!(q, ["lunch", "noon"]);
        assert!(matches(&q, "Lunchtime at noon?"));
        assert!(!matches(&q, "lunch at one"), "every word");
        assert!(!matches(&words("unch"), "lunch"), "word starts only");
        assert!(words("\"*( )").is_empty(), "no words in punctuation");
        assert_eq!(parse_dot("3.17"), Some(Dot::new(NodeId(3), 17)));
        assert_eq!(parse_dot("3>1.2"), None);
        assert_eq!(parse_dot("x"), None);
    }
}
