//! Parsing the chat commands shared by script mode and the interactive front ends.

use p2pchat_core::Command;

/// Parses one input line. `Ok(None)` for a blank line; `Err` explains a bad command.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.trim_end_matches(['\r', '\n']);
    if line.trim().is_empty() {
        return Ok(None);
    }
    if !line.starts_with('/') {
        return Ok(Some(Command::Say(line.to_string())));
    }
    let mut words = line.split_whitespace();
    let head = words.next().unwrap_or_default();
    match head {
        "/quit" | "/exit" => Ok(Some(Command::Quit)),
        "/peers" => Ok(Some(Command::Peers)),
        "/status" => Ok(Some(Command::Status)),
        "/msg" => {
            let rest = line["/msg".len()..].trim_start();
            let (to, text) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if to.is_empty() || text.trim().is_empty() {
                return Err("usage: /msg USER TEXT".into());
            }
            Ok(Some(Command::Msg {
                to: to.to_string(),
                text: text.to_string(),
            }))
        }
        "/history" => {
            let mut with = None;
            let mut last = None;
            while let Some(w) = words.next() {
                if w == "--last" {
                    let n = words
                        .next()
                        .and_then(|n| n.parse::<usize>().ok())
                        .ok_or("usage: /history [USER] [--last N]")?;
                    last = Some(n);
                } else if with.is_none() {
                    with = Some(w.to_string());
                } else {
                    return Err("usage: /history [USER] [--last N]".into());
                }
            }
            Ok(Some(Command::History { with, last }))
        }
        other => Err(format!(
            "unknown command {other}; commands: /msg USER TEXT, /peers, /history [USER] [--last N], /status, /quit"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_commands() {
        assert_eq!(
            parse("hello there"),
            Ok(Some(Command::Say("hello there".into())))
        );
        assert_eq!(parse("   "), Ok(None));
        assert_eq!(
            parse("/msg bob  hi  you"),
            Ok(Some(Command::Msg {
                to: "bob".into(),
                text: " hi  you".into()
            }))
        );
        assert!(parse("/msg bob").is_err());
        assert_eq!(
            parse("/history bob --last 5"),
            Ok(Some(Command::History {
                with: Some("bob".into()),
                last: Some(5)
            }))
        );
        assert_eq!(
            parse("/history"),
            Ok(Some(Command::History {
                with: None,
                last: None
            }))
        );
        assert!(parse("/history --last x").is_err());
        assert!(parse("/frobnicate").is_err());
        assert_eq!(parse("/quit"), Ok(Some(Command::Quit)));
    }
}
