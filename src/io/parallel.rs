//! Reading JSON lines on a second core: one thread reads blocks of lines and parses them,
//! the caller's thread decides them in input order. Parsed events cannot cross threads
//! borrowing the block they were parsed from, so each is sent detached (its strings as
//! spans of the block, or owned where they held escapes) and attached again on arrival.

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::sync::mpsc;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;

use super::event_json::parse_event;
use super::read::{Flow, Position, RawText, Unit};
use crate::model::Event;

/// Lines per block: large enough to amortize the hand-over, small enough to keep memory flat.
const BLOCK_LINES: usize = 2048;
/// Blocks in flight between the threads.
const IN_FLIGHT: usize = 4;

/// A string of a detached event: a span of its block, or its own text.
enum Text {
    Span(usize, usize),
    Own(String),
}

impl Text {
    /// A span if `s` lies within `block` (it was borrowed from it), else a copy.
    fn detach(s: &str, block: &str) -> Text {
        let start = (s.as_ptr() as usize).wrapping_sub(block.as_ptr() as usize);
        if start <= block.len() && s.len() <= block.len() - start {
            return Text::Span(start, start + s.len());
        }
        Text::Own(s.to_string())
    }

    fn attach(self, block: &str) -> Cow<'_, str> {
        match self {
            Text::Span(a, b) => Cow::Borrowed(block.get(a..b).unwrap_or_default()),
            Text::Own(s) => Cow::Owned(s),
        }
    }
}

/// An event with its strings as spans of its block.
struct Detached {
    id: Text,
    kind: Text,
    at: DateTime<FixedOffset>,
    customer: Text,
    wallet: Text,
    card_product: Option<Text>,
    card_role: Option<Text>,
    merchant: Option<Text>,
    amount: Option<Decimal>,
    channel: Option<Text>,
    coupons: Option<Vec<Text>>,
    face_values: Option<Vec<Decimal>>,
    extra: Vec<(Text, serde_json::Value)>,
}

impl Detached {
    fn new(ev: Event<'_>, block: &str) -> Detached {
        let t = |s: &Cow<'_, str>| Text::detach(s, block);
        let o = |s: &Option<Cow<'_, str>>| s.as_ref().map(t);
        Detached {
            id: t(&ev.id),
            kind: t(&ev.kind),
            at: ev.at,
            customer: t(&ev.customer),
            wallet: t(&ev.wallet),
            card_product: o(&ev.card_product),
            card_role: o(&ev.card_role),
            merchant: o(&ev.merchant),
            amount: ev.amount,
            channel: o(&ev.channel),
            coupons: ev.coupons.as_ref().map(|c| c.iter().map(t).collect()),
            face_values: ev.face_values,
            extra: ev.extra.into_iter().map(|(k, v)| (t(&k), v)).collect(),
        }
    }

    /// The event again, its strings borrowed from `block` (or moved out where owned).
    fn attach(self, block: &str) -> Event<'_> {
        let t = |t: Text| t.attach(block);
        Event {
            id: t(self.id),
            kind: t(self.kind),
            at: self.at,
            customer: t(self.customer),
            wallet: t(self.wallet),
            card_product: self.card_product.map(t),
            card_role: self.card_role.map(t),
            merchant: self.merchant.map(t),
            amount: self.amount,
            channel: self.channel.map(t),
            coupons: self.coupons.map(|c| c.into_iter().map(t).collect()),
            face_values: self.face_values,
            extra: self.extra.into_iter().map(|(k, v)| (t(k), v)).collect(),
        }
    }
}

#[allow(
    clippy::large_enum_variant,
    reason = "kept in a block's vector; boxing the event would allocate per event"
)]
enum Parsed {
    Skipped,
    Blank,
    Bad {
        line: u64,
        reason: String,
        raw: String,
    },
    Event {
        line: u64,
        raw: (usize, usize),
        event: Detached,
    },
}

/// A line of a block being read: its number and span in the block's text, to parse once
/// the text is complete, or a unit already decided (skipped, blank, not UTF-8).
type Pending = Result<(u64, usize, usize), Parsed>;

struct Block {
    text: String,
    units: Vec<(Position, Parsed)>,
}

/// Reads one block: the lines' text into one string, then each line parsed from it.
fn read_block(
    input: &mut impl BufRead,
    skip: u64,
    at: &mut Position,
    scratch: &mut Vec<u8>,
) -> io::Result<Option<Block>> {
    let mut text = String::with_capacity(BLOCK_LINES * 256);
    let mut lines: Vec<(Position, Pending)> = Vec::with_capacity(BLOCK_LINES);
    while lines.len() < BLOCK_LINES {
        scratch.clear();
        let n = input.read_until(b'\n', scratch)?;
        if n == 0 {
            break;
        }
        at.bytes += n as u64;
        at.unit += 1;
        let line = at.unit;
        if line <= skip {
            lines.push((*at, Err(Parsed::Skipped)));
            continue;
        }
        match std::str::from_utf8(scratch) {
            Err(e) => lines.push((
                *at,
                Err(Parsed::Bad {
                    line,
                    reason: format!("line is not UTF-8: {e}"),
                    raw: String::from_utf8_lossy(scratch).trim_end().to_string(),
                }),
            )),
            Ok(t) => {
                let t = t.trim_end_matches(['\n', '\r']);
                if t.trim().is_empty() {
                    lines.push((*at, Err(Parsed::Blank)));
                } else {
                    let start = text.len();
                    text.push_str(t);
                    lines.push((*at, Ok((line, start, text.len()))));
                }
            }
        }
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let units = lines
        .into_iter()
        .map(|(pos, l)| {
            let parsed = match l {
                Err(p) => p,
                Ok((line, a, b)) => {
                    let raw = text.get(a..b).unwrap_or_default();
                    match parse_event(raw) {
                        Ok(ev) => Parsed::Event {
                            line,
                            raw: (a, b),
                            event: Detached::new(ev, &text),
                        },
                        Err(reason) => Parsed::Bad {
                            line,
                            reason,
                            raw: raw.to_string(),
                        },
                    }
                }
            };
            (pos, parsed)
        })
        .collect();
    Ok(Some(Block { text, units }))
}

/// Reads JSON lines as `read::read_jsonl` does, parsing on another thread.
pub fn read_jsonl_parallel(
    input: impl BufRead + Send,
    skip: u64,
    f: &mut dyn FnMut(Position, Unit<'_>) -> Flow,
) -> io::Result<(Position, bool)> {
    let (tx, rx) = mpsc::sync_channel::<io::Result<Block>>(IN_FLIGHT);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut input = input;
            let mut at = Position::default();
            let mut scratch = Vec::with_capacity(1024);
            loop {
                let block = read_block(&mut input, skip, &mut at, &mut scratch);
                let end = !matches!(block, Ok(Some(_)));
                let sent = match block {
                    Ok(Some(b)) => tx.send(Ok(b)),
                    Ok(None) => break,
                    Err(e) => tx.send(Err(e)),
                };
                // A closed channel: the deciding side stopped early.
                if sent.is_err() || end {
                    break;
                }
            }
        });
        let mut last = Position::default();
        for block in rx {
            let Block { text, units } = block?;
            for (at, parsed) in units {
                last = at;
                let unit = match parsed {
                    Parsed::Skipped => Unit::Skipped,
                    Parsed::Blank => Unit::Blank,
                    Parsed::Bad { line, reason, raw } => Unit::Bad { line, reason, raw },
                    Parsed::Event { line, raw, event } => Unit::Event {
                        line,
                        event: event.attach(&text),
                        raw: RawText::Line(text.get(raw.0..raw.1).unwrap_or_default()),
                    },
                };
                if f(at, unit)?.is_break() {
                    return Ok((at, true));
                }
            }
        }
        Ok((last, false))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    #[test]
    fn parallel_reading_gives_the_same_units_as_sequential() {
        let mut text = String::new();
        for i in 0..5000 {
            match i % 7 {
                0 => text.push('\n'),
                1 => text.push_str("not json\n"),
                2 => text.push_str(&format!("{{\"id\":\"E\\u00{:02x}{i}\",\"type\":\"t\",\"at\":\"2031-01-02T03:04:05Z\",\"customer\":\"C{i}\",\"wallet\":\"W\"}}\n", 0x41 + i % 20)),
                _ => text.push_str(&format!("{{\"id\":\"E{i}\",\"type\":\"t\",\"at\":\"2031-01-02T03:04:05+08:00\",\"customer\":\"C{i}\",\"wallet\":\"W\",\"amount\":\"1.5\",\"coupons\":[\"a\",\"b\"],\"x\":\"y\"}}\n")),
            }
        }
        let render = |at: Position, u: Unit<'_>| match u {
            Unit::Skipped => format!("{at:?} skipped"),
            Unit::Blank => format!("{at:?} blank"),
            Unit::Bad { line, reason, raw } => format!("{at:?} bad {line} {reason} {raw}"),
            Unit::Event { line, event, raw } => {
                format!("{at:?} event {line} {event:?} {}", raw.text())
            }
        };
        for skip in [0, 10, 4999, 6000] {
            let mut seq = Vec::new();
            let a = super::super::read::read_jsonl(text.as_bytes(), skip, &mut |at, u| {
                seq.push(render(at, u));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            let mut par = Vec::new();
            let b = read_jsonl_parallel(text.as_bytes(), skip, &mut |at, u| {
                par.push(render(at, u));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            assert_eq!(a, b);
            assert_eq!(seq, par);
        }
        // Stopping early stops the reader too.
        let mut n = 0;
        let (at, stopped) = read_jsonl_parallel(text.as_bytes(), 0, &mut |_, _| {
            n += 1;
            Ok(if n == 3000 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        })
        .unwrap();
        assert!(stopped);
        assert_eq!(at.unit, 3000);
    }
}
