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
        "/devices" => {
            const USAGE: &str = "usage: /devices [revoke ID]";
            match (words.next(), words.next(), words.next()) {
                (None, _, _) => Ok(Some(Command::Devices { revoke: None })),
                (Some("revoke"), Some(id), None) => {
                    let id = id.parse::<u32>().map_err(|_| USAGE.to_string())?;
                    Ok(Some(Command::Devices {
                        revoke: Some(p2pchat_proto::NodeId(id)),
                    }))
                }
                _ => Err(USAGE.into()),
            }
        }
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
            const USAGE: &str = "usage: /history [USER] [--last N] [--before ID]";
            let mut with = None;
            let mut last = None;
            let mut before = None;
            while let Some(w) = words.next() {
                match w {
                    "--last" => last = Some(count(words.next()).ok_or(USAGE)?),
                    "--before" => before = Some(words.next().ok_or(USAGE)?.to_string()),
                    _ if with.is_none() && !w.starts_with("--") => with = Some(w.to_string()),
                    _ => return Err(USAGE.into()),
                }
            }
            Ok(Some(Command::History { with, last, before }))
        }
        "/search" => {
            const USAGE: &str = "usage: /search TEXT [--in USER] [--last N]";
            let mut query = Vec::new();
            let mut with = None;
            let mut last = None;
            while let Some(w) = words.next() {
                match w {
                    "--in" => with = Some(words.next().ok_or(USAGE)?.to_string()),
                    "--last" => last = Some(count(words.next()).ok_or(USAGE)?),
                    _ => query.push(w),
                }
            }
            if query.is_empty() {
                return Err(USAGE.into());
            }
            Ok(Some(Command::Search {
                query: query.join(" "),
                with,
                last,
            }))
        }
        other => Err(format!(
            "unknown command {other}; commands: /msg USER TEXT, /peers, /history [USER] [--last N] [--before ID], /search TEXT [--in USER] [--last N], /devices [revoke ID], /status, /quit"
        )),
    }
}

/// A positive count (`--last N`).
fn count(word: Option<&str>) -> Option<usize> {
    word?.parse::<usize>().ok().filter(|&n| n > 0)
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
                last: Some(5),
                before: None
            }))
        );
        assert_eq!(
            parse("/history"),
            Ok(Some(Command::History {
                with: None,
                last: None,
                before: None
            }))
        );
        assert_eq!(
            parse("/history --before 3.7 --last 20"),
            Ok(Some(Command::History {
                with: None,
                last: Some(20),
                before: Some("3.7".into())
            }))
        );
        assert!(parse("/history --before").is_err());
        assert!(parse("/history --last 0").is_err());
        assert_eq!(
            parse("/search lunch  plans --in bob --last 3"),
            Ok(Some(Command::Search {
                query: "lunch plans".into(),
                with: Some("bob".into()),
                last: Some(3)
            }))
        );
        assert!(parse("/search").is_err());
        assert_eq!(
            parse("/devices").expect("ok"),
            Some(Command::Devices { revoke: None })
        );
        assert_eq!(
            parse("/devices revoke 7").expect("ok"),
            Some(Command::Devices {
                revoke: Some(p2pchat_proto::NodeId(7))
            })
        );
        assert!(parse("/devices revoke").is_err());
        assert!(parse("/devices revoke x").is_err());
        assert!(parse("/devices drop 7").is_err());
        assert!(parse("/search --in bob").is_err());
        assert!(parse("/history --last x").is_err());
        assert!(parse("/frobnicate").is_err());
        assert_eq!(parse("/quit"), Ok(Some(Command::Quit)));
    }
}
