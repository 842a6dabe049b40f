//! The interactive terminal client for `p2pchat node` (ratatui + crossterm).
//!
//! One event loop merges key events (from a reader thread) and node events; all state lives in
//! [`app::App`] and changes only there; [`draw::draw`] renders it as a pure function, at most
//! every frame interval, so a flood of messages never makes the UI fall behind or block the
//! node (which runs in its own task and never waits for the screen).

pub mod app;
pub mod draw;

use app::{Action, App};
use p2pchat_core::{Command, Event};
use p2pchat_runtime::NodeControl;
use ratatui::crossterm::event::{self as ct, Event as TermEvent};
use std::process::ExitCode;
use std::time::Duration;
use tokio::sync::mpsc;

const FRAME: Duration = Duration::from_millis(33);

fn now_hhmm() -> String {
    chrono::Local::now().format("%H:%M").to_string()
}

/// Runs the UI until the user quits or the node stops.
pub async fn run(
    control: NodeControl,
    mut events: mpsc::UnboundedReceiver<Event>,
    me: &str,
) -> anyhow::Result<ExitCode> {
    // Raw mode, alternate screen, and a panic hook that restores the terminal.
    let mut terminal = ratatui::init();
    let (key_tx, mut keys) = mpsc::unbounded_channel::<TermEvent>();
    std::thread::spawn(move || {
        while let Ok(ev) = ct::read() {
            if key_tx.send(ev).is_err() {
                break;
            }
        }
    });
    let mut app = App::new(me);
    let mut dirty = true;
    let mut quitting = false;
    let mut signals = crate::process::Signals::new();
    // What is stored is drawn at once: people, conversations, pending counts, then history.
    control.command(Command::Overview);
    let mut tick = tokio::time::interval(FRAME);
    let mut node_running = true;
    let result: anyhow::Result<()> = loop {
        tokio::select! {
            ev = events.recv(), if node_running => match ev {
                Some(e) => {
                    let mut burst = vec![e];
                    // Take a whole burst at once: one render per frame, whatever the flood.
                    while let Ok(e) = events.try_recv() {
                        burst.push(e);
                    }
                    for e in burst {
                        for cmd in app.on_event(e, now_hhmm()) {
                            control.command(cmd);
                        }
                    }
                    dirty = true;
                }
                None => {
                    node_running = false;
                    if quitting || app.fatal.is_none() {
                        break Ok(());
                    }
                    dirty = true;
                }
            },
            k = keys.recv() => match k {
                Some(TermEvent::Key(key)) => {
                    match app.on_key(key) {
                        Some(Action::Node(cmd)) => { control.command(cmd); }
                        Some(Action::Quit) => {
                            if !node_running {
                                break Ok(());
                            }
                            quitting = true;
                            control.command(Command::Quit);
                        }
                        None => {}
                    }
                    dirty = true;
                }
                Some(TermEvent::Resize(..)) => dirty = true,
                Some(_) => {}
                None => break Ok(()),
            },
            _ = signals.recv() => {
                if quitting || !node_running {
                    break Ok(());
                }
                quitting = true;
                control.command(Command::Quit);
            }
            _ = tick.tick() => {
                if dirty {
                    if let Err(e) = terminal.draw(|f| draw::draw(f, &app)) {
                        break Err(e.into());
                    }
                    dirty = false;
                }
            }
        }
    };
    ratatui::restore();
    result?;
    let fatal = app.fatal.clone();
    let joined = control.join().await;
    if let Some(msg) = fatal {
        eprintln!("p2pchat: {msg}");
        return Ok(ExitCode::FAILURE);
    }
    match joined {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => {
            eprintln!("p2pchat: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}
