//! Rendering: a pure function of [`App`]. Nothing here changes state or touches the network.

use super::app::{App, Conv, Item};
use p2pchat_core::PeerStatus;
use ratatui::layout::{Constraint, Direction, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui::Frame;
use unicode_width::UnicodeWidthChar;

/// Sidebar width, and the narrowest terminal that still gets one.
const SIDEBAR: u16 = 24;
const SIDEBAR_MIN_WIDTH: u16 = 60;

const PALETTE: [Color; 6] = [
    Color::Cyan,
    Color::Magenta,
    Color::Yellow,
    Color::Blue,
    Color::LightRed,
    Color::LightGreen,
];

/// A stable colour per name (FNV-1a, so it is the same in every session).
pub fn name_color(name: &str) -> Color {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    PALETTE[(h as usize) % PALETTE.len()]
}

/// Whether a character could steer the terminal or reorder text when drawn: C0 and C1
/// controls (ESC starts every ANSI/OSC sequence; BEL, backspace, carriage return...), DEL, and
/// the bidirectional overrides and isolates (which make text read other than it is).
fn steers(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Other people's text made inert for the screen: every character that [`steers`] becomes
/// U+FFFD (so the attempt stays visible), tabs and newlines become spaces.
pub fn inert(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\t' => ' ',
            c if steers(c) => '\u{FFFD}',
            c => c,
        })
        .collect()
}

/// Splits `text` into lines of at most `width` columns (wide characters count two), breaking
/// after spaces where possible.
pub fn wrap(text: &str, width: usize) -> Vec<String> {
    let width = width.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    let mut cols = 0;
    let mut last_space: Option<(usize, usize)> = None; // (byte index after the space, cols there)
    for ch in text.chars() {
        // Whatever reaches the screen is inert, even text that skipped `inert`.
        let ch = match ch {
            '\n' | '\t' => ' ',
            c if steers(c) => '\u{FFFD}',
            c => c,
        };
        let w = ch.width().unwrap_or(0);
        if cols + w > width && !line.is_empty() {
            match last_space {
                Some((at, at_cols)) if at < line.len() => {
                    let rest = line.split_off(at);
                    lines.push(line.trim_end().to_string());
                    line = rest;
                    cols -= at_cols;
                }
                _ => {
                    lines.push(std::mem::take(&mut line));
                    cols = 0;
                }
            }
            last_space = None;
        }
        line.push(ch);
        cols += w;
        if ch == ' ' {
            last_space = Some((line.len(), cols));
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

fn conv_title(c: &Conv) -> String {
    match c {
        Conv::Group => "#group".to_string(),
        Conv::Private(u) => format!("@{u}"),
    }
}

/// The last `need` (or more) lines of the current conversation, wrapped to `width`. Only the
/// tail is wrapped, so a conversation of any length renders in time proportional to the screen.
pub fn conversation_lines(app: &App, width: usize, need: usize) -> Vec<Line<'static>> {
    let mut chunks: Vec<Vec<Line<'static>>> = Vec::new();
    let mut count = 0;
    let Some(items) = app.convs.get(&app.current) else {
        return Vec::new();
    };
    for item in items.iter().rev() {
        let lines = item_lines(item, width);
        count += lines.len();
        chunks.push(lines);
        if count >= need {
            break;
        }
    }
    chunks.into_iter().rev().flatten().collect()
}

fn item_lines(item: &Item, width: usize) -> Vec<Line<'static>> {
    let mut out = Vec::new();
    {
        match item {
            Item::Presence(list) => {
                let text = list
                    .iter()
                    .map(|(u, s)| format!("{u} is {}", crate::format::status(*s)))
                    .collect::<Vec<_>>()
                    .join(", ");
                for l in wrap(&format!("-- {text}"), width) {
                    out.push(Line::from(Span::styled(
                        l,
                        Style::default().fg(Color::DarkGray),
                    )));
                }
            }
            Item::Notice(text) => {
                for l in wrap(&format!("-- {text}"), width) {
                    out.push(Line::from(Span::styled(
                        l,
                        Style::default().fg(Color::DarkGray),
                    )));
                }
            }
            Item::Msg {
                time,
                from,
                text,
                own,
                ..
            } => {
                let marker = if *own { "» " } else { "  " };
                let head = format!("{time} {marker}{from}: ");
                let head_w: usize = head.chars().map(|c| c.width().unwrap_or(0)).sum();
                let text_w = width.saturating_sub(head_w).max(8);
                let mut name_style = Style::default()
                    .fg(name_color(from))
                    .add_modifier(Modifier::BOLD);
                if *own {
                    name_style = name_style.add_modifier(Modifier::UNDERLINED);
                }
                for (i, part) in wrap(text, text_w).into_iter().enumerate() {
                    if i == 0 {
                        out.push(Line::from(vec![
                            Span::styled(format!("{time} "), Style::default().fg(Color::DarkGray)),
                            Span::raw(marker),
                            Span::styled(from.clone(), name_style),
                            Span::raw(": "),
                            Span::raw(part),
                        ]));
                    } else {
                        out.push(Line::from(vec![
                            Span::raw(" ".repeat(head_w.min(width.saturating_sub(1)))),
                            Span::raw(part),
                        ]));
                    }
                }
            }
        }
    }
    out
}

fn status_symbol(s: PeerStatus) -> (&'static str, Color) {
    match s {
        PeerStatus::Online => ("●", Color::Green),
        PeerStatus::Unknown => ("?", Color::DarkGray),
        PeerStatus::Suspect => ("◐", Color::Yellow),
        PeerStatus::Offline => ("○", Color::DarkGray),
    }
}

/// The status line's text.
pub fn status_line(app: &App) -> String {
    let id = app
        .node_id
        .map_or("signing in".to_string(), |id| format!("node {id}"));
    let server = match app.server_up {
        Some(true) | None => "server up",
        Some(false) => "server down",
    };
    let (online, total) = app.online_counts();
    let (pending, delivered) = app.private_counts();
    let stored = match app.stored_count() {
        0 => String::new(),
        n => format!(" ({n} in a mailbox)"),
    };
    format!(
        " {} ({id}) | {} | {server} | {online}/{total} online | private: {pending} pending{stored}, {delivered} delivered | /help",
        app.me,
        conv_title(&app.current)
    )
}

/// Draws the whole screen.
pub fn draw(frame: &mut Frame, app: &App) {
    let area = frame.area();
    let rows = Layout::default()
        .direction(Direction::Vertical)
        .constraints([
            Constraint::Min(3),
            Constraint::Length(1),
            Constraint::Length(1),
        ])
        .split(area);
    let (conv_area, side) = if area.width >= SIDEBAR_MIN_WIDTH {
        let cols = Layout::default()
            .direction(Direction::Horizontal)
            .constraints([Constraint::Min(20), Constraint::Length(SIDEBAR)])
            .split(rows[0]);
        (cols[0], Some(cols[1]))
    } else {
        (rows[0], None)
    };

    // Conversation.
    let block = Block::default().borders(Borders::ALL).title(Span::styled(
        conv_title(&app.current),
        Style::default().add_modifier(Modifier::BOLD),
    ));
    let inner = block.inner(conv_area);
    let height = inner.height as usize;
    let lines = conversation_lines(app, inner.width as usize, height + app.scroll);
    let max_scroll = lines.len().saturating_sub(height);
    let scroll = app.scroll.min(max_scroll);
    let end = lines.len() - scroll;
    let start = end.saturating_sub(height);
    let visible: Vec<Line> = lines[start..end].to_vec();
    frame.render_widget(Paragraph::new(visible).block(block), conv_area);

    // Status line.
    frame.render_widget(
        Paragraph::new(status_line(app)).style(Style::default().fg(Color::Black).bg(Color::Gray)),
        rows[1],
    );

    // Input line, scrolled so the cursor stays visible.
    let prompt = "> ";
    let width = rows[2].width as usize;
    let chars: Vec<char> = app.input.chars().collect();
    let cursor_cols: usize = chars[..app.cursor.min(chars.len())]
        .iter()
        .map(|c| c.width().unwrap_or(0))
        .sum();
    let room = width.saturating_sub(prompt.len() + 1).max(1);
    let mut skip_cols = cursor_cols.saturating_sub(room);
    let mut shown = String::new();
    let mut shown_cols = 0;
    for c in &chars {
        let w = c.width().unwrap_or(0);
        if skip_cols > 0 {
            skip_cols = skip_cols.saturating_sub(w);
            continue;
        }
        if shown_cols + w > room {
            break;
        }
        shown.push(*c);
        shown_cols += w;
    }
    frame.render_widget(Paragraph::new(format!("{prompt}{shown}")), rows[2]);
    let cx = rows[2].x + (prompt.len() + cursor_cols.min(room)) as u16;
    frame.set_cursor_position(Position::new(
        cx.min(rows[2].right().saturating_sub(1)),
        rows[2].y,
    ));

    if let Some(side) = side {
        draw_sidebar(frame, app, side);
    }
    if let Some(msg) = &app.fatal {
        draw_fatal(frame, msg, area);
    }
}

fn draw_sidebar(frame: &mut Frame, app: &App, area: Rect) {
    let mut lines: Vec<Line> = vec![Line::from(Span::styled(
        "conversations",
        Style::default().add_modifier(Modifier::BOLD),
    ))];
    for (i, c) in app.conv_order().iter().enumerate() {
        let unread = app.unread.get(c).copied().unwrap_or(0);
        let mut style = Style::default();
        if *c == app.current {
            style = style.add_modifier(Modifier::REVERSED);
        }
        let badge = if unread > 0 {
            format!(" ({unread})")
        } else {
            String::new()
        };
        lines.push(Line::from(Span::styled(
            format!("{} {}{badge}", i + 1, conv_title(c)),
            style,
        )));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        "people",
        Style::default().add_modifier(Modifier::BOLD),
    )));
    for (name, p) in &app.people {
        let (sym, color) = status_symbol(p.status);
        let unread = app
            .unread
            .get(&Conv::Private(name.clone()))
            .copied()
            .unwrap_or(0);
        let badge = if unread > 0 {
            format!(" ({unread})")
        } else {
            String::new()
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{sym} "), Style::default().fg(color)),
            Span::styled(name.clone(), Style::default().fg(name_color(name))),
            Span::raw(badge),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .block(Block::default().borders(Borders::ALL))
            .wrap(Wrap { trim: true }),
        area,
    );
}

fn draw_fatal(frame: &mut Frame, msg: &str, area: Rect) {
    let w = area.width.saturating_sub(4).min(60);
    let h = 5.min(area.height);
    let rect = Rect::new(
        area.x + (area.width - w) / 2,
        area.y + (area.height - h) / 2,
        w,
        h,
    );
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(msg.to_string()),
            Line::from(""),
            Line::from("press any key to exit"),
        ])
        .wrap(Wrap { trim: true })
        .block(
            Block::default()
                .borders(Borders::ALL)
                .title(" fatal error ")
                .style(Style::default().fg(Color::Red)),
        ),
        rect,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use p2pchat_core::{Event, HistoryEntry, Scope};
    use p2pchat_proto::{NodeId, PeerInfo};
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    fn render(app: &App, w: u16, h: u16) -> String {
        let mut t = Terminal::new(TestBackend::new(w, h)).expect("terminal");
        t.draw(|f| draw(f, app)).expect("draw");
        let buf = t.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..h {
            let mut skip = 0;
            for x in 0..w {
                if skip > 0 {
                    skip -= 1;
                    continue;
                }
                let sym = buf[(x, y)].symbol();
                skip = sym
                    .chars()
                    .map(|c| c.width().unwrap_or(0))
                    .sum::<usize>()
                    .saturating_sub(1);
                out.push_str(sym);
            }
            out.push('\n');
        }
        out
    }

    fn msg(from: &str, id: u32, seq: u64, order: u64, text: &str) -> Event {
        Event::Message(Box::new(HistoryEntry {
            scope: Scope::Group,
            id: format!("{id}.{seq}"),
            from_id: NodeId(id),
            from: from.into(),
            to: None,
            text: text.into(),
            clock: None,
            time_ms: 0,
            order,
            seq,
        }))
    }

    fn private(from: &str, to: &str, text: &str) -> Event {
        Event::Message(Box::new(HistoryEntry {
            scope: Scope::Private,
            id: format!("{from}>{to}"),
            from_id: NodeId(9),
            from: from.into(),
            to: Some(to.into()),
            text: text.into(),
            clock: None,
            time_ms: 0,
            order: 1,
            seq: 1,
        }))
    }

    fn peer(user: &str, id: u32, status: PeerStatus, joined: bool) -> Event {
        Event::Peer {
            info: PeerInfo {
                node_id: NodeId(id),
                user: user.into(),
                addr: ([127, 0, 0, 1], 5000).into(),
                cert: p2pchat_proto::Cert {
                    sign_pk: [0; 32],
                    dh_pk: [0; 32],
                    expires_ms: 0,
                    sig: [0; 64],
                },
            },
            status,
            joined,
        }
    }

    fn app() -> App {
        let mut a = App::new("alice");
        a.on_event(
            Event::Ready {
                user: "alice".into(),
                node_id: NodeId(1),
                addr: ([127, 0, 0, 1], 1).into(),
                first: true,
            },
            "12:00".into(),
        );
        a
    }

    #[test]
    fn a_conversation_with_several_senders_in_causal_order() {
        let mut a = app();
        a.on_event(peer("bob", 2, PeerStatus::Online, true), "12:00".into());
        a.on_event(msg("bob", 2, 1, 1, "first from bob"), "12:01".into());
        a.on_event(msg("alice", 1, 1, 3, "alice answers"), "12:02".into());
        // Arrives late but comes first causally (lamport 2).
        a.on_event(msg("carol", 3, 1, 2, "carol in between"), "12:03".into());
        let screen = render(&a, 100, 16);
        assert!(screen.contains("#group"), "{screen}");
        assert!(screen.contains("bob just joined the chat!"), "{screen}");
        let (b, c, al) = (
            screen.find("first from bob").expect("bob"),
            screen.find("carol in between").expect("carol"),
            screen.find("alice answers").expect("alice"),
        );
        assert!(b < c && c < al, "causal order on screen:\n{screen}");
        assert!(
            screen.contains("» alice: alice answers"),
            "own message marked:\n{screen}"
        );
        assert!(screen.contains("12:01   bob: first from bob"), "{screen}");
    }

    #[test]
    fn presence_changes_show_in_the_sidebar_and_as_notices() {
        let mut a = app();
        a.on_event(peer("bob", 2, PeerStatus::Online, false), "t".into());
        a.on_event(peer("carol", 3, PeerStatus::Online, false), "t".into());
        a.on_event(peer("carol", 3, PeerStatus::Suspect, false), "t".into());
        a.on_event(peer("bob", 2, PeerStatus::Offline, false), "t".into());
        let screen = render(&a, 100, 16);
        assert!(screen.contains("○ bob"), "{screen}");
        assert!(screen.contains("◐ carol"), "{screen}");
        assert!(screen.contains("bob is offline"), "{screen}");
        assert!(screen.contains("0/2 online"), "{screen}");
    }

    #[test]
    fn unread_counts_and_private_conversations() {
        let mut a = app();
        a.on_event(peer("bob", 2, PeerStatus::Online, false), "t".into());
        a.on_event(private("bob", "alice", "psst"), "12:05".into());
        a.on_event(private("bob", "alice", "are you there?"), "12:05".into());
        let screen = render(&a, 100, 16);
        assert!(
            screen.contains("2 @bob (2)"),
            "unread in the conversation list:\n{screen}"
        );
        assert!(
            !screen.contains("psst"),
            "private text stays in its conversation:\n{screen}"
        );
        a.switch(Conv::Private("bob".into()));
        let screen = render(&a, 100, 16);
        assert!(screen.contains("@bob"), "{screen}");
        assert!(screen.contains("bob: psst"), "{screen}");
        assert!(!screen.contains("(2)"), "read now:\n{screen}");
        // Typing in a private conversation sends privately.
        for c in "hi bob".chars() {
            a.on_key(ratatui::crossterm::event::KeyEvent::from(
                ratatui::crossterm::event::KeyCode::Char(c),
            ));
        }
        let act = a.on_key(ratatui::crossterm::event::KeyEvent::from(
            ratatui::crossterm::event::KeyCode::Enter,
        ));
        assert_eq!(
            act,
            Some(super::super::app::Action::Node(
                p2pchat_core::Command::Msg {
                    to: "bob".into(),
                    text: "hi bob".into()
                }
            ))
        );
    }

    #[test]
    fn long_lines_wrap_and_unicode_is_measured_by_width() {
        let mut a = app();
        let long = "word ".repeat(40) + "END";
        a.on_event(msg("bob", 2, 1, 1, &long), "12:00".into());
        a.on_event(
            msg("bob", 2, 2, 2, "日本語のテキストと絵文字 🎉🎉 done"),
            "12:00".into(),
        );
        let screen = render(&a, 60, 20);
        assert!(
            screen.contains("END"),
            "the end of a long line is visible:\n{screen}"
        );
        assert!(screen.contains("🎉🎉 done"), "{screen}");
        for l in wrap(&long, 20) {
            assert!(l.chars().count() <= 20);
        }
        assert_eq!(
            wrap("日本語", 4),
            vec!["日本".to_string(), "語".to_string()]
        );
    }

    #[test]
    fn a_narrow_terminal_drops_the_sidebar_but_keeps_the_chat() {
        let mut a = app();
        a.on_event(peer("bob", 2, PeerStatus::Online, false), "t".into());
        a.on_event(msg("bob", 2, 1, 1, "narrow but readable"), "12:00".into());
        let screen = render(&a, 30, 12);
        assert!(!screen.contains("people"), "{screen}");
        assert!(screen.contains("narrow but"), "{screen}");
        // Even absurdly small terminals do not panic.
        render(&a, 5, 3);
        render(&a, 1, 1);
    }

    #[test]
    fn tab_completes_usernames_and_up_recalls_input() {
        use ratatui::crossterm::event::{KeyCode, KeyEvent};
        let mut a = app();
        a.on_event(peer("bobby", 2, PeerStatus::Online, false), "t".into());
        for c in "/msg bo".chars() {
            a.on_key(KeyEvent::from(KeyCode::Char(c)));
        }
        a.on_key(KeyEvent::from(KeyCode::Tab));
        assert_eq!(a.input, "/msg bobby ");
        for c in "yo".chars() {
            a.on_key(KeyEvent::from(KeyCode::Char(c)));
        }
        assert!(matches!(
            a.on_key(KeyEvent::from(KeyCode::Enter)),
            Some(super::super::app::Action::Node(_))
        ));
        a.on_key(KeyEvent::from(KeyCode::Up));
        assert_eq!(a.input, "/msg bobby yo");
    }

    #[test]
    fn the_status_line_counts_pending_and_delivered_private_messages() {
        let mut a = app();
        a.on_event(peer("bob", 2, PeerStatus::Online, false), "t".into());
        a.on_event(private("alice", "bob", "one"), "t".into());
        a.on_event(private("alice", "bob", "two"), "t".into());
        a.on_event(
            Event::Acked {
                peer: "bob".into(),
                upto: 1,
            },
            "t".into(),
        );
        a.on_event(Event::AuthServer { reachable: false }, "t".into());
        let s = status_line(&a);
        assert!(s.contains("private: 1 pending, 1 delivered"), "{s}");
        a.on_event(
            Event::Stored {
                peer: "bob".into(),
                seq: 2,
            },
            "t".into(),
        );
        let s = status_line(&a);
        assert!(
            s.contains("private: 1 pending (1 in a mailbox), 1 delivered"),
            "{s}"
        );
        assert!(s.contains("server down"), "{s}");
        assert!(s.contains("alice (node 1)"), "{s}");
    }

    #[test]
    fn other_peoples_text_is_drawn_inert() {
        let mut a = app();
        a.on_event(
            msg(
                "bob",
                2,
                1,
                1,
                "x\u{1b}[2J\u{7}\u{9b}1m\u{202e}y\u{2066}z\tw",
            ),
            "t".into(),
        );
        let screen = render(&a, 100, 16);
        assert!(screen.contains("bob: x�[2J��1m�y�z w"), "{screen}");
        assert_eq!(inert("a\u{1b}]0;t\u{7}b"), "a�]0;t�b");
        assert_eq!(inert("日本語 ☕"), "日本語 ☕");
    }

    #[test]
    fn presence_changes_in_a_row_share_one_line_and_unknown_or_suspect_say_nothing() {
        let mut a = app();
        for (name, id) in [("bob", 2), ("carol", 3), ("dave", 4), ("erin", 5)] {
            a.on_event(peer(name, id, PeerStatus::Unknown, false), "t".into());
        }
        a.on_event(peer("bob", 2, PeerStatus::Online, false), "t".into());
        a.on_event(peer("carol", 3, PeerStatus::Suspect, false), "t".into());
        a.on_event(peer("carol", 3, PeerStatus::Offline, false), "t".into());
        a.on_event(peer("dave", 4, PeerStatus::Offline, false), "t".into());
        let screen = render(&a, 100, 16);
        // Never heard of online: a newcomer sees no notices about them at all.
        assert!(!screen.contains("is offline"), "{screen}");
        assert!(!screen.contains("is suspect"), "{screen}");
        a.on_event(peer("bob", 2, PeerStatus::Suspect, false), "t".into());
        a.on_event(peer("bob", 2, PeerStatus::Offline, false), "t".into());
        a.on_event(peer("carol", 3, PeerStatus::Online, false), "t".into());
        let screen = render(&a, 100, 16);
        assert!(
            screen.contains("-- bob is offline, carol is online"),
            "{screen}"
        );
        assert!(screen.contains("○ dave"), "{screen}");
        assert!(screen.contains("? erin"), "{screen}");
        assert!(screen.contains("1/4 online"), "{screen}");
    }

    #[test]
    fn a_late_message_never_moves_above_a_notice() {
        let mut a = app();
        a.on_event(msg("bob", 2, 1, 5, "five"), "t".into());
        a.on_event(peer("carol", 3, PeerStatus::Online, true), "t".into());
        a.on_event(msg("carol", 3, 1, 7, "seven"), "t".into());
        // Causally before "seven" but after the notice: it goes above "seven" only.
        a.on_event(msg("dave", 4, 1, 6, "six"), "t".into());
        let screen = render(&a, 100, 16);
        let at = |t: &str| screen.find(t).expect(t);
        assert!(at("five") < at("carol just joined"), "{screen}");
        assert!(at("carol just joined") < at("six"), "{screen}");
        assert!(at("six") < at("seven"), "{screen}");
    }

    #[test]
    fn a_start_draws_stored_conversations_people_and_counts() {
        use p2pchat_core::ConversationSummary;
        let mut a = app();
        let bob = match peer("bob", 2, PeerStatus::Online, false) {
            Event::Peer { info, .. } => info,
            _ => unreachable!(),
        };
        let cmds = a.on_event(
            Event::Overview {
                peers: vec![(bob, PeerStatus::Unknown)],
                conversations: vec![ConversationSummary {
                    with: "bob".into(),
                    sent: 3,
                    acked: 2,
                    received: 1,
                }],
            },
            "t".into(),
        );
        assert_eq!(cmds.len(), 2, "the group's and bob's history: {cmds:?}");
        let mut old = match msg("bob", 2, 1, 1, "stored words") {
            Event::Message(m) => *m,
            _ => unreachable!(),
        };
        old.time_ms = 1_700_000_000_000;
        a.on_event(
            Event::History {
                scope: Scope::Group,
                with: None,
                messages: vec![old],
                earlier: 0,
            },
            "t".into(),
        );
        a.on_event(
            Event::History {
                scope: Scope::Private,
                with: Some("bob".into()),
                messages: vec![],
                earlier: 0,
            },
            "t".into(),
        );
        let screen = render(&a, 100, 16);
        assert!(screen.contains("bob: stored words"), "{screen}");
        assert!(screen.contains("@bob"), "{screen}");
        assert!(
            screen.contains("private: 1 pending, 2 delivered"),
            "{screen}"
        );
        assert!(screen.contains("0/1 online"), "{screen}");
        // Stamped with its writing time, not the time it was drawn ("t").
        assert!(!screen.contains("t   bob: stored words"), "{screen}");
        // The user's own /history later is a listing, not a reload.
        a.on_event(
            Event::History {
                scope: Scope::Group,
                with: None,
                messages: vec![],
                earlier: 0,
            },
            "t".into(),
        );
        let screen = render(&a, 100, 16);
        assert!(screen.contains("group history (0 messages)"), "{screen}");
    }
}
