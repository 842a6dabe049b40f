//! The terminal UI's state: updated in one place (`on_event`, `on_key`), read by `draw`.

use super::draw::inert;
use p2pchat_core::{Command, Event, HistoryEntry, PeerStatus, Scope};
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// Stored messages drawn per conversation at start (older ones: `/history`).
pub const LOAD_LAST: usize = 500;

/// Which conversation is on screen.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Conv {
    /// The group chat.
    #[default]
    Group,
    /// A private conversation with this user.
    Private(String),
}

/// One line of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A chat message.
    Msg {
        /// Local time it was shown, `HH:MM`.
        time: String,
        /// Author.
        from: String,
        /// Text.
        text: String,
        /// Written by us.
        own: bool,
        /// Sort key (causal display order).
        key: (u64, u32, u64),
        /// The message id (what `/history --before` takes).
        id: String,
    },
    /// A notice from the client (joins, help, errors).
    Notice(String),
    /// Presence changes in a row, coalesced into one line: each member's latest.
    Presence(Vec<(String, PeerStatus)>),
}

/// A member as the sidebar shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// Presence.
    pub status: PeerStatus,
    /// Node id.
    pub node_id: u32,
}

/// What the UI asks the outside world to do after a key.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Give the node a command.
    Node(Command),
    /// Leave.
    Quit,
}

/// The whole UI state.
#[derive(Debug, Default)]
pub struct App {
    /// Our username.
    pub me: String,
    /// Our node id, once ready.
    pub node_id: Option<u32>,
    /// Conversations, group first.
    pub convs: BTreeMap<Conv, Vec<Item>>,
    /// Unread counts of conversations not on screen.
    pub unread: HashMap<Conv, usize>,
    /// The conversation on screen.
    pub current: Conv,
    /// Everyone we know, by username.
    pub people: BTreeMap<String, Person>,
    /// The input line.
    pub input: String,
    /// Cursor position in `input`, in chars.
    pub cursor: usize,
    /// Lines entered before (Up/Down).
    pub history: Vec<String>,
    /// Position while browsing `history`.
    pub history_pos: Option<usize>,
    /// Lines scrolled up from the bottom.
    pub scroll: usize,
    /// Whether the auth server answers (None before we know).
    pub server_up: Option<bool>,
    /// Private messages we sent, per peer (counter).
    pub sent_private: HashMap<String, u64>,
    /// Private messages acknowledged, per peer.
    pub acked_private: HashMap<String, u64>,
    /// Private messages a mailbox keeps for a peer who is away, per peer (their counters).
    pub stored_private: HashMap<String, std::collections::BTreeSet<u64>>,
    /// A fatal error to show before leaving.
    pub fatal: Option<String>,
    /// Conversations whose stored history we asked for, in the order the replies come.
    pub loading: VecDeque<Conv>,
    /// Conversations whose older page was asked for and has not come yet.
    pub older_asked: std::collections::HashSet<Conv>,
    /// Conversations shown back to their first message.
    pub older_done: std::collections::HashSet<Conv>,
    /// Members seen online in this session: only they get an "is offline" notice.
    pub seen_online: std::collections::HashSet<String>,
    /// Set when the UI should exit.
    pub quit: bool,
}

const HELP: &[&str] = &[
    "commands: type to talk in the current conversation",
    "  /msg USER TEXT    private message      /query USER   open a private conversation",
    "  /history [USER] [--last N] [--before ID]   /search TEXT [--in USER] [--last N]",
    "  /peers  /status  /devices [revoke ID]  /help  /quit (or Ctrl-C)",
    "keys: Tab completes names, Up/Down input history, PageUp/PageDown scroll,",
    "  Alt+1 the group, Alt+2.. private conversations, Esc back to the group",
];

/// When a message was written, `HH:MM` in local time; `fallback` if it does not say.
fn written_at(h: &HistoryEntry, fallback: &str) -> String {
    use chrono::TimeZone;
    match i64::try_from(h.time_ms)
        .ok()
        .filter(|&ms| ms > 0)
        .and_then(|ms| chrono::Local.timestamp_millis_opt(ms).single())
    {
        Some(t) => t.format("%H:%M").to_string(),
        None => fallback.to_string(),
    }
}

impl App {
    /// A fresh UI for `me`.
    pub fn new(me: &str) -> App {
        let mut app = App {
            me: me.to_string(),
            ..App::default()
        };
        app.convs.insert(Conv::Group, Vec::new());
        app.notice(Conv::Group, format!("signing in as {me}…"));
        app
    }

    fn notice(&mut self, conv: Conv, text: String) {
        self.convs
            .entry(conv)
            .or_default()
            .push(Item::Notice(inert(&text)));
    }

    /// A presence change worth a line: a member going offline, or coming back from offline.
    /// Consecutive changes share one line; a member that flips back and forth shows once.
    fn presence(&mut self, user: &str, was: Option<PeerStatus>, now: PeerStatus) {
        let worth = match now {
            PeerStatus::Offline => {
                was != Some(PeerStatus::Offline) && self.seen_online.contains(user)
            }
            PeerStatus::Online => was == Some(PeerStatus::Offline),
            PeerStatus::Suspect | PeerStatus::Unknown => false,
        };
        if now == PeerStatus::Online {
            self.seen_online.insert(user.to_string());
        }
        if !worth {
            return;
        }
        let items = self.convs.entry(Conv::Group).or_default();
        if let Some(Item::Presence(list)) = items.last_mut() {
            list.retain(|(u, _)| u != user);
            list.push((user.to_string(), now));
            return;
        }
        items.push(Item::Presence(vec![(user.to_string(), now)]));
    }

    /// Conversations in sidebar order: the group, then private ones by name.
    pub fn conv_order(&self) -> Vec<Conv> {
        self.convs.keys().cloned().collect()
    }

    /// Private messages not yet acknowledged, and acknowledged.
    pub fn private_counts(&self) -> (u64, u64) {
        let sent: u64 = self.sent_private.values().sum();
        let acked: u64 = self.acked_private.values().sum();
        (sent.saturating_sub(acked), acked)
    }

    /// Private messages not yet delivered that a mailbox keeps for their recipient.
    pub fn stored_count(&self) -> usize {
        self.stored_private
            .iter()
            .map(|(peer, seqs)| {
                let acked = self.acked_private.get(peer).copied().unwrap_or(0);
                seqs.iter().filter(|&&s| s > acked).count()
            })
            .sum()
    }

    /// Members online, and all members.
    pub fn online_counts(&self) -> (usize, usize) {
        let online = self
            .people
            .values()
            .filter(|p| p.status == PeerStatus::Online)
            .count();
        (online, self.people.len())
    }

    fn msg_item(&self, h: &HistoryEntry, time: &str) -> Item {
        Item::Msg {
            time: written_at(h, time),
            from: h.from.clone(),
            text: inert(&h.text),
            own: h.from == self.me,
            key: (h.order, h.from_id.0, h.seq),
            id: h.id.clone(),
        }
    }

    fn add_message(&mut self, conv: Conv, h: &HistoryEntry, time: String) {
        let own = h.from == self.me;
        let item = self.msg_item(h, &time);
        let key = (h.order, h.from_id.0, h.seq);
        let items = self.convs.entry(conv.clone()).or_default();
        // Keep the causal display order among the messages after the last notice: a late
        // message moves above the newer messages it precedes, never above a notice (which
        // stays where it happened). Usually this is an append.
        let pos = items
            .iter()
            .rposition(|i| !matches!(i, Item::Msg { key: k, .. } if *k > key))
            .map_or(0, |p| p + 1);
        items.insert(pos, item);
        if conv != self.current && !own {
            *self.unread.entry(conv).or_default() += 1;
        } else if self.scroll > 0 {
            // Keep the lines the user is reading in place.
            self.scroll += 1;
        }
    }

    /// Stored history that arrived for a conversation: drawn above what is already there,
    /// without the messages already shown.
    fn load(&mut self, conv: Conv, messages: Vec<HistoryEntry>, time: &str) {
        let items = self.convs.entry(conv.clone()).or_default();
        let shown: std::collections::HashSet<(u64, u32, u64)> = items
            .iter()
            .filter_map(|i| match i {
                Item::Msg { key, .. } => Some(*key),
                _ => None,
            })
            .collect();
        let older: Vec<Item> = messages
            .iter()
            .filter(|h| !shown.contains(&(h.order, h.from_id.0, h.seq)))
            .map(|h| self.msg_item(h, time))
            .collect();
        if let Conv::Private(with) = &conv {
            let sent = messages.iter().filter(|h| h.from == self.me).count() as u64;
            let entry = self.sent_private.entry(with.clone()).or_default();
            *entry = (*entry).max(sent);
        }
        let items = self.convs.entry(conv).or_default();
        items.splice(0..0, older);
    }

    /// Applies an event from the node. `time` is the local time to show when a message does
    /// not say when it was written. Returns the commands the UI wants to give in turn.
    pub fn on_event(&mut self, e: Event, time: String) -> Vec<Command> {
        match e {
            Event::Ready {
                user,
                node_id,
                first,
                ..
            } => {
                self.node_id = Some(node_id.0);
                let how = if first {
                    " (first node of the network)"
                } else {
                    ""
                };
                self.notice(
                    Conv::Group,
                    format!("signed in as {user}, node {node_id}{how}. /help for help"),
                );
            }
            Event::Message(h) if h.is_merge() => {}
            Event::Message(h) => {
                let conv = match h.scope {
                    Scope::Group => Conv::Group,
                    Scope::Private => {
                        let other = if h.from == self.me {
                            h.to.clone().unwrap_or_default()
                        } else {
                            h.from.clone()
                        };
                        if h.from == self.me {
                            *self.sent_private.entry(other.clone()).or_default() += 1;
                        }
                        Conv::Private(other)
                    }
                };
                self.add_message(conv, &h, time);
            }
            Event::Peer {
                info,
                status,
                joined,
            } => {
                let known = self.people.get(&info.user).map(|p| p.status);
                self.people.insert(
                    info.user.clone(),
                    Person {
                        status,
                        node_id: info.node_id.0,
                    },
                );
                if joined {
                    self.notice(Conv::Group, format!("{} just joined the chat!", info.user));
                } else {
                    self.presence(&info.user, known, status);
                }
            }
            Event::Overview {
                peers,
                conversations,
            } => {
                for (p, status) in peers {
                    self.people.insert(
                        p.user.clone(),
                        Person {
                            status,
                            node_id: p.node_id.0,
                        },
                    );
                }
                let mut load = vec![Command::History {
                    with: None,
                    last: Some(LOAD_LAST),
                    before: None,
                }];
                self.loading.push_back(Conv::Group);
                for c in conversations {
                    let conv = Conv::Private(c.with.clone());
                    self.convs.entry(conv.clone()).or_default();
                    self.sent_private.insert(c.with.clone(), c.sent);
                    self.acked_private.insert(c.with.clone(), c.acked);
                    load.push(Command::History {
                        with: Some(c.with),
                        last: Some(LOAD_LAST),
                        before: None,
                    });
                    self.loading.push_back(conv);
                }
                return load;
            }
            Event::History {
                messages, earlier, ..
            } if !self.loading.is_empty() => {
                if let Some(conv) = self.loading.pop_front() {
                    self.older_asked.remove(&conv);
                    if earlier == 0 {
                        self.older_done.insert(conv.clone());
                    }
                    self.load(conv, messages, &time);
                }
            }
            Event::Peers(list) => {
                let mut lines = vec![format!("{} peers:", list.len())];
                for (p, s, via) in list {
                    lines.push(format!(
                        "  {} (node {}, {}) {}{}",
                        p.user,
                        p.node_id,
                        p.addr,
                        crate::format::status(s),
                        crate::format::path(via)
                    ));
                }
                for l in lines {
                    self.notice(self.current.clone(), l);
                }
            }
            Event::Search { query, messages } => {
                let title = format!("{} found for \"{query}\":", messages.len());
                self.notice(self.current.clone(), title);
                for m in messages {
                    let place = m.to.map(|to| format!(" (to {to})")).unwrap_or_default();
                    // (`notice` makes the text inert.)
                    self.notice(
                        self.current.clone(),
                        format!("  {} <{}>{place} {}", m.id, m.from, m.text),
                    );
                }
            }
            Event::History { messages, with, .. } => {
                let title = match &with {
                    Some(w) => format!("history with {w} ({} messages):", messages.len()),
                    None => format!("group history ({} messages):", messages.len()),
                };
                self.notice(self.current.clone(), title);
                for m in messages {
                    let clock = m.clock.map(|c| format!("  {c}")).unwrap_or_default();
                    // (`notice` makes the text inert.)
                    self.notice(
                        self.current.clone(),
                        format!("  <{}> {}{clock}", m.from, m.text),
                    );
                }
            }
            Event::Acked { peer, upto } => {
                self.acked_private.insert(peer, upto);
            }
            Event::Stored { peer, seq } => {
                self.stored_private.entry(peer).or_default().insert(seq);
            }
            Event::AuthServer { reachable } => self.server_up = Some(reachable),
            Event::Status(s) => {
                let text = crate::format::status_text(&s);
                self.notice(self.current.clone(), format!("status: {text}"));
            }
            Event::Reply { event, .. } => return self.on_event(*event, time),
            Event::Settled => {}
            Event::Error { message, fatal } => {
                if fatal {
                    self.fatal = Some(message);
                } else {
                    self.notice(self.current.clone(), format!("error: {message}"));
                }
            }
            Event::Admitted { .. } => {}
            e @ Event::Devices { .. } => {
                let me = self.me.clone();
                if let Some(text) = crate::format::human(&e, &me) {
                    for line in text.lines() {
                        self.notice(self.current.clone(), line.to_string());
                    }
                }
            }
        }
        Vec::new()
    }

    /// Switches to a conversation (clearing its unread count).
    pub fn switch(&mut self, conv: Conv) {
        self.convs.entry(conv.clone()).or_default();
        self.unread.remove(&conv);
        self.current = conv;
        self.scroll = 0;
    }

    fn take_input(&mut self) -> String {
        self.cursor = 0;
        self.history_pos = None;
        std::mem::take(&mut self.input)
    }

    fn byte_at(&self, char_idx: usize) -> usize {
        self.input
            .char_indices()
            .nth(char_idx)
            .map_or(self.input.len(), |(b, _)| b)
    }

    /// Handles one key; returns what the node should do, if anything.
    pub fn on_key(&mut self, key: KeyEvent) -> Option<Action> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        if self.fatal.is_some() {
            self.quit = true;
            return Some(Action::Quit);
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('c') | KeyCode::Char('d') if ctrl => {
                self.quit = true;
                return Some(Action::Quit);
            }
            KeyCode::Char(d) if alt && d.is_ascii_digit() => {
                let n = d.to_digit(10).unwrap_or(0) as usize;
                if let Some(conv) = n
                    .checked_sub(1)
                    .and_then(|i| self.conv_order().get(i).cloned())
                {
                    self.switch(conv);
                }
            }
            KeyCode::Char(c) => {
                let at = self.byte_at(self.cursor);
                self.input.insert(at, c);
                self.cursor += 1;
            }
            KeyCode::Backspace if self.cursor > 0 => {
                self.cursor -= 1;
                let at = self.byte_at(self.cursor);
                self.input.remove(at);
            }
            KeyCode::Delete if self.cursor < self.input.chars().count() => {
                let at = self.byte_at(self.cursor);
                self.input.remove(at);
            }
            KeyCode::Left => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Right => self.cursor = (self.cursor + 1).min(self.input.chars().count()),
            KeyCode::Home => self.cursor = 0,
            KeyCode::End => self.cursor = self.input.chars().count(),
            KeyCode::Up if !self.history.is_empty() => {
                let pos = self
                    .history_pos
                    .map_or(self.history.len() - 1, |p| p.saturating_sub(1));
                self.history_pos = Some(pos);
                self.input = self.history[pos].clone();
                self.cursor = self.input.chars().count();
            }
            KeyCode::Down => {
                if let Some(p) = self.history_pos {
                    if p + 1 < self.history.len() {
                        self.history_pos = Some(p + 1);
                        self.input = self.history[p + 1].clone();
                    } else {
                        self.history_pos = None;
                        self.input.clear();
                    }
                    self.cursor = self.input.chars().count();
                }
            }
            KeyCode::PageUp => {
                self.scroll += 10;
                return self.older_page();
            }
            KeyCode::PageDown => self.scroll = self.scroll.saturating_sub(10),
            KeyCode::Esc => self.switch(Conv::Group),
            KeyCode::Tab => self.complete(),
            KeyCode::Enter => return self.submit(),
            _ => {}
        }
        None
    }

    /// Near the top of what is loaded of the conversation on screen: asks for the page
    /// before its first message (once at a time, until the first message ever is shown).
    fn older_page(&mut self) -> Option<Action> {
        let conv = self.current.clone();
        if self.older_done.contains(&conv) || self.older_asked.contains(&conv) {
            return None;
        }
        let items = self.convs.get(&conv)?;
        // (Every item is at least one line: this errs towards asking early.)
        if self.scroll + 20 < items.len() {
            return None;
        }
        let first = items.iter().find_map(|i| match i {
            Item::Msg { id, .. } => Some(id.clone()),
            _ => None,
        })?;
        self.older_asked.insert(conv.clone());
        self.loading.push_back(conv.clone());
        Some(Action::Node(Command::History {
            with: match conv {
                Conv::Group => None,
                Conv::Private(w) => Some(w),
            },
            last: Some(LOAD_LAST),
            before: Some(first),
        }))
    }

    /// Completes the username being typed before the cursor.
    pub fn complete(&mut self) {
        let at = self.byte_at(self.cursor);
        let before = &self.input[..at];
        let start = before.rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let word = &before[start..];
        if word.is_empty() {
            return;
        }
        let matches: Vec<&String> = self.people.keys().filter(|u| u.starts_with(word)).collect();
        if let [only] = matches[..] {
            let rest = only[word.len()..].to_string() + " ";
            self.input.insert_str(at, &rest);
            self.cursor += rest.chars().count();
        } else if matches.len() > 1 {
            let names: Vec<&str> = matches.iter().map(|s| s.as_str()).collect();
            self.notice(
                self.current.clone(),
                format!("matches: {}", names.join(" ")),
            );
        }
    }

    fn submit(&mut self) -> Option<Action> {
        let line = self.take_input();
        if line.trim().is_empty() {
            return None;
        }
        if self.history.last() != Some(&line) {
            self.history.push(line.clone());
        }
        self.scroll = 0;
        let trimmed = line.trim();
        if trimmed == "/help" {
            for l in HELP {
                self.notice(self.current.clone(), (*l).to_string());
            }
            return None;
        }
        if let Some(user) = trimmed.strip_prefix("/query") {
            let user = user.trim();
            if user.is_empty() || user == "group" {
                self.switch(Conv::Group);
            } else if self.people.contains_key(user) {
                self.switch(Conv::Private(user.to_string()));
            } else {
                self.notice(self.current.clone(), format!("error: unknown user: {user}"));
            }
            return None;
        }
        if trimmed == "/quit" || trimmed == "/exit" {
            self.quit = true;
            return Some(Action::Quit);
        }
        // Plain text in a private conversation goes to that person.
        if !trimmed.starts_with('/') {
            if let Conv::Private(to) = &self.current {
                return Some(Action::Node(Command::Msg {
                    to: to.clone(),
                    text: line,
                }));
            }
        }
        match crate::commands::parse(&line) {
            Ok(Some(Command::Msg { to, text })) => {
                if self.people.contains_key(&to) {
                    self.convs.entry(Conv::Private(to.clone())).or_default();
                }
                Some(Action::Node(Command::Msg { to, text }))
            }
            Ok(Some(cmd)) => Some(Action::Node(cmd)),
            Ok(None) => None,
            Err(e) => {
                self.notice(self.current.clone(), format!("error: {e}"));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_core::Scope;
    use p2pchat_proto::NodeId;
    use ratatui::crossterm::event::{KeyCode, KeyEvent};

    fn entry(seq: u64) -> HistoryEntry {
        HistoryEntry {
            scope: Scope::Group,
            id: format!("1.{seq}"),
            from_id: NodeId(1),
            from: "bob".into(),
            to: None,
            text: format!("m{seq}"),
            clock: None,
            time_ms: 0,
            order: seq,
            seq,
        }
    }

    fn page(seqs: std::ops::RangeInclusive<u64>, earlier: usize) -> Event {
        Event::History {
            scope: Scope::Group,
            with: None,
            messages: seqs.map(entry).collect(),
            earlier,
        }
    }

    #[test]
    fn paging_up_to_the_top_loads_the_page_before_until_the_first_message() {
        let mut a = App {
            me: "alice".into(),
            ..App::default()
        };
        // What the start loaded: the newest 10 of 20.
        a.loading.push_back(Conv::Group);
        a.on_event(page(11..=20, 10), "t".into());
        let up = KeyEvent::from(KeyCode::PageUp);
        assert_eq!(
            a.on_key(up),
            Some(Action::Node(Command::History {
                with: None,
                last: Some(LOAD_LAST),
                before: Some("1.11".into()),
            }))
        );
        assert_eq!(a.on_key(up), None, "one page asked at a time");
        a.on_event(page(1..=10, 0), "t".into());
        let texts: Vec<&str> = a.convs[&Conv::Group]
            .iter()
            .filter_map(|i| match i {
                Item::Msg { text, .. } => Some(text.as_str()),
                _ => None,
            })
            .collect();
        let want: Vec<String> = (1..=20).map(|s| format!("m{s}")).collect();
        assert_eq!(texts, want);
        assert_eq!(a.on_key(up), None, "nothing before the first message");
    }
}
