//! Reading JSON lines or CSV records on a second core: one thread reads blocks of them and
//! parses them, the caller's thread decides them in input order. The reading thread also does, for each
//! event, whatever work can run ahead of deciding (`Prepare`: admitting it, for a batch).
//! Parsed events cannot cross threads borrowing the block they were parsed from, so each is
//! sent detached (its strings as spans of the block, or owned where they held escapes) and
//! attached again on arrival.

use std::borrow::Cow;
use std::io::{self, BufRead};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;

use super::event_csv::CsvColumns;
use super::event_json::parse_event;
use super::read::{
    classify_csv, classify_line, csv_reader, CsvRecord, Flow, Line, Position, RawText, Unit,
};
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

/// Work done on the reading thread for each event it parses, ahead of the caller's thread.
pub trait Prepare: Send {
    type Out: Send;
    fn prepare(&mut self, ev: &Event<'_>) -> Self::Out;
}

/// What the caller does with each unit and what was prepared for it.
pub type Handle<'f, O> = &'f mut dyn FnMut(Position, Unit<'_>, Option<O>) -> Flow;

/// How a parallel read ended.
pub struct ParallelEnd<P: Prepare> {
    /// Where reading ended and whether the caller stopped it, as `read::read_jsonl` says.
    pub read: io::Result<(Position, bool)>,
    /// The preparer, back from the reading thread.
    pub prepare: P,
    /// What was prepared for events the caller was never given, because it stopped (or
    /// failed) first, in input order.
    pub unused: Vec<P::Out>,
}

#[allow(
    clippy::large_enum_variant,
    reason = "kept in a block's vector; boxing the event would allocate per event"
)]
enum Parsed<O> {
    Skipped,
    Blank,
    Bad {
        line: u64,
        reason: String,
        raw: String,
    },
    Event {
        line: u64,
        source: Source,
        event: Detached,
        prepared: O,
    },
}

/// Where an event's text lies in its block: its strings are spans of that text.
enum Source {
    /// A JSON line: this span of the block's text.
    Line(usize, usize),
    /// A CSV record: the block's record of this index.
    Record(usize),
}

/// What was prepared for the events among `units`.
fn prepared_of<O>(
    units: impl IntoIterator<Item = (Position, Parsed<O>)>,
) -> impl Iterator<Item = O> {
    units.into_iter().filter_map(|(_, p)| match p {
        Parsed::Event { prepared, .. } => Some(prepared),
        _ => None,
    })
}

/// A line of a block being read: its number and span in the block's text, to parse once
/// the text is complete, or a unit already decided (skipped, blank, not UTF-8).
type Pending<O> = Result<(u64, usize, usize), Parsed<O>>;

struct Block<O> {
    /// JSON lines, one after another.
    text: String,
    /// CSV records; those beyond the block's units are kept for their buffers.
    records: Vec<csv::StringRecord>,
    units: Vec<(Position, Parsed<O>)>,
}

impl<O> Block<O> {
    fn new() -> Self {
        Block {
            text: String::new(),
            records: Vec::new(),
            units: Vec::with_capacity(BLOCK_LINES),
        }
    }
}

/// What the reading thread reuses from block to block.
struct Scratch<O> {
    line: Vec<u8>,
    lines: Vec<(Position, Pending<O>)>,
}

/// Reads one block into `block` (emptied first; its buffers are reused): the lines' text
/// into one string, then each line parsed from it and prepared. False at the end of input.
fn read_block<P: Prepare>(
    input: &mut impl BufRead,
    skip: u64,
    at: &mut Position,
    scratch: &mut Scratch<P::Out>,
    prep: &mut P,
    block: &mut Block<P::Out>,
) -> io::Result<bool> {
    let Block { text, units, .. } = block;
    text.clear();
    text.reserve(BLOCK_LINES * 256);
    units.clear();
    let Scratch {
        line: scratch,
        lines,
    } = scratch;
    lines.clear();
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
        let pending = match classify_line(scratch) {
            Line::Bad { reason, raw } => Err(Parsed::Bad { line, reason, raw }),
            Line::Blank => Err(Parsed::Blank),
            Line::Text(t) => {
                let start = text.len();
                text.push_str(t);
                Ok((line, start, text.len()))
            }
        };
        lines.push((*at, pending));
    }
    if lines.is_empty() {
        return Ok(false);
    }
    units.extend(lines.drain(..).map(|(pos, l)| {
        let parsed = match l {
            Err(p) => p,
            Ok((line, a, b)) => {
                let raw = text.get(a..b).unwrap_or_default();
                match parse_event(raw) {
                    Ok(ev) => Parsed::Event {
                        line,
                        source: Source::Line(a, b),
                        prepared: prep.prepare(&ev),
                        event: Detached::new(ev, text),
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
    }));
    Ok(true)
}

/// Reads CSV records into `block` (emptied first; its buffers are reused), each parsed and
/// prepared, as `read::read_csv` reads them. False at the end of input.
fn read_csv_block<P: Prepare>(
    input: &mut csv::Reader<impl io::Read>,
    columns: &CsvColumns,
    skip: u64,
    at: &mut Position,
    prep: &mut P,
    block: &mut Block<P::Out>,
) -> io::Result<bool> {
    let Block { records, units, .. } = block;
    units.clear();
    while units.len() < BLOCK_LINES {
        let n = units.len();
        if records.len() <= n {
            records.push(csv::StringRecord::new());
        }
        let Some(record) = records.get_mut(n) else {
            break;
        };
        let line = input.position().line() + 1;
        let read = input.read_record(record);
        if matches!(read, Ok(false)) {
            break;
        }
        at.unit += 1;
        at.bytes = input.position().byte();
        let parsed = if at.unit <= skip {
            Parsed::Skipped
        } else {
            match classify_csv(columns, record, read, line)? {
                CsvRecord::Blank => Parsed::Blank,
                CsvRecord::Event { line, event } => Parsed::Event {
                    line,
                    source: Source::Record(n),
                    prepared: prep.prepare(&event),
                    event: Detached::new(event, record.as_slice()),
                },
                CsvRecord::Bad { line, reason, raw } => Parsed::Bad { line, reason, raw },
            }
        };
        units.push((*at, parsed));
    }
    Ok(!units.is_empty())
}

/// Reads JSON lines as `read::read_jsonl` does, parsing and preparing on another thread;
/// `f` gets each event with what `prepare` made of it.
pub fn read_jsonl_parallel<P: Prepare>(
    input: impl BufRead + Send,
    skip: u64,
    prepare: P,
    f: Handle<'_, P::Out>,
) -> ParallelEnd<P> {
    let mut input = input;
    let mut at = Position::default();
    let mut scratch = Scratch {
        line: Vec::with_capacity(1024),
        lines: Vec::with_capacity(BLOCK_LINES),
    };
    read_parallel(
        move |prep: &mut P, block: &mut Block<P::Out>| {
            read_block(&mut input, skip, &mut at, &mut scratch, prep, block)
        },
        prepare,
        f,
    )
}

/// Reads CSV with a header row as `read::read_csv` does, parsing and preparing on another
/// thread; `f` gets each event with what `prepare` made of it.
pub fn read_csv_parallel<P: Prepare>(
    input: impl io::Read + Send,
    skip: u64,
    prepare: P,
    f: Handle<'_, P::Out>,
) -> ParallelEnd<P> {
    let (mut input, columns) = match csv_reader(input) {
        Ok(r) => r,
        Err(e) => {
            return ParallelEnd {
                read: Err(e),
                prepare,
                unused: Vec::new(),
            }
        }
    };
    let mut at = Position::default();
    read_parallel(
        move |prep: &mut P, block: &mut Block<P::Out>| {
            read_csv_block(&mut input, &columns, skip, &mut at, prep, block)
        },
        prepare,
        f,
    )
}

/// Runs `fill` (which reads the next block, false at the end of input) on a second thread
/// and hands the blocks' units to `f` in order.
fn read_parallel<P: Prepare>(
    mut fill: impl FnMut(&mut P, &mut Block<P::Out>) -> io::Result<bool> + Send,
    prepare: P,
    f: Handle<'_, P::Out>,
) -> ParallelEnd<P> {
    let (tx, rx) = mpsc::sync_channel::<io::Result<Block<P::Out>>>(IN_FLIGHT);
    // Blocks handed back once decided, for the reader to fill again: fresh buffers of this
    // size would be fresh pages for the kernel to zero, block after block.
    let (recycle, recycled) = mpsc::channel::<Block<P::Out>>();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        let reader = scope.spawn(move || {
            let mut prep = prepare;
            while !stop.load(Ordering::Relaxed) {
                let mut block = recycled.try_recv().unwrap_or_else(|_| Block::new());
                let sent = match fill(&mut prep, &mut block) {
                    Ok(true) => tx.send(Ok(block)),
                    Ok(false) => break,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        break;
                    }
                };
                // A closed channel: the deciding side stopped early.
                if sent.is_err() {
                    break;
                }
            }
            prep
        });
        let mut unused = Vec::new();
        let read = hand_over(&rx, f, &mut unused, &recycle);
        // Stopped early: the reader stops at its next block, and what it prepared for the
        // blocks in flight goes back unused.
        stop.store(true, Ordering::Relaxed);
        for block in rx.iter().flatten() {
            unused.extend(prepared_of(block.units));
        }
        let prepare = match reader.join() {
            Ok(p) => p,
            Err(panic) => std::panic::resume_unwind(panic),
        };
        ParallelEnd {
            read,
            prepare,
            unused,
        }
    })
}

/// Gives `f` the units of each block as it arrives, until the input ends or `f` stops or
/// fails; the prepared work of units left in the last block goes to `unused`.
fn hand_over<O>(
    rx: &mpsc::Receiver<io::Result<Block<O>>>,
    f: Handle<'_, O>,
    unused: &mut Vec<O>,
    recycle: &mpsc::Sender<Block<O>>,
) -> io::Result<(Position, bool)> {
    let mut last = Position::default();
    for block in rx {
        let mut block = block?;
        let Block {
            text,
            records,
            units,
        } = &mut block;
        let (text, records) = (&*text, &*records);
        let mut units = units.drain(..);
        for (at, parsed) in units.by_ref() {
            last = at;
            let (unit, prepared) = match parsed {
                Parsed::Skipped => (Unit::Skipped, None),
                Parsed::Blank => (Unit::Blank, None),
                Parsed::Bad { line, reason, raw } => (Unit::Bad { line, reason, raw }, None),
                Parsed::Event {
                    line,
                    source,
                    event,
                    prepared,
                } => {
                    let (base, raw) = match source {
                        Source::Line(a, b) => (
                            text.as_str(),
                            RawText::Line(text.get(a..b).unwrap_or_default()),
                        ),
                        Source::Record(i) => match records.get(i) {
                            Some(r) => (r.as_slice(), RawText::Record(r)),
                            None => ("", RawText::Line("")),
                        },
                    };
                    (
                        Unit::Event {
                            line,
                            event: event.attach(base),
                            raw,
                        },
                        Some(prepared),
                    )
                }
            };
            let flow = f(at, unit, prepared);
            if !matches!(flow, Ok(std::ops::ControlFlow::Continue(()))) {
                unused.extend(prepared_of(units));
                return flow.map(|_| (at, true));
            }
        }
        drop(units);
        // The reader may have finished; then the block is simply dropped.
        let _ = recycle.send(block);
    }
    Ok((last, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    /// A unit as text, to compare readers.
    fn render(at: Position, u: Unit<'_>) -> String {
        match u {
            Unit::Skipped => format!("{at:?} skipped"),
            Unit::Blank => format!("{at:?} blank"),
            Unit::Bad { line, reason, raw } => format!("{at:?} bad {line} {reason} {raw}"),
            Unit::Event { line, event, raw } => {
                format!("{at:?} event {line} {event:?} {}", raw.text())
            }
        }
    }

    /// Numbers the events it prepares.
    struct Count(u32);

    impl Prepare for Count {
        type Out = u32;
        fn prepare(&mut self, _: &Event<'_>) -> u32 {
            self.0 += 1;
            self.0
        }
    }

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
        for skip in [0, 10, 4999, 6000] {
            let mut seq = Vec::new();
            let a = super::super::read::read_jsonl(text.as_bytes(), skip, &mut |at, u| {
                seq.push(render(at, u));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            let mut par = Vec::new();
            let mut numbers = Vec::new();
            let end = read_jsonl_parallel(text.as_bytes(), skip, Count(0), &mut |at, u, n| {
                numbers.extend(n);
                par.push(render(at, u));
                Ok(ControlFlow::Continue(()))
            });
            assert_eq!(a, end.read.unwrap());
            assert_eq!(seq, par);
            assert!(end.unused.is_empty());
            assert_eq!(numbers, (1..=end.prepare.0).collect::<Vec<_>>());
            // Every event was prepared once, and only events.
            let events = seq.iter().filter(|u| u.contains(" event ")).count();
            assert_eq!(end.prepare.0 as usize, events);
            assert!(skip > 4000 || events > 2000, "{events} events");
            assert_eq!(seq.len(), 5000);
        }
        // Stopping early stops the reader too, and what it prepared beyond comes back.
        let mut given = Vec::new();
        let end = read_jsonl_parallel(text.as_bytes(), 0, Count(0), &mut |_, _, p| {
            given.extend(p);
            Ok(if given.len() == 2000 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            })
        });
        let (at, stopped) = end.read.unwrap();
        assert!(stopped);
        assert!(at.unit > 2000 && at.unit < 5000);
        assert!(!end.unused.is_empty());
        given.extend(end.unused);
        assert_eq!(given, (1..=end.prepare.0).collect::<Vec<_>>());
    }

    #[test]
    fn parallel_csv_gives_the_same_units_as_sequential() {
        let mut text = String::from("id,type,at,customer,wallet,amount,coupons,note\n");
        for i in 0..5000 {
            match i % 9 {
                0 => text.push_str(",,,,,,,\n"),
                1 => text.push_str("too,few\n"),
                2 => text.push_str(&format!("E{i},t,not a time,C{i},W,,,\n")),
                3 => text.push_str(&format!(
                    "\"E,{i}\",t,2031-01-02T03:04:05Z,C{i},W,2.5,a;b,\"q\"\"uoted\"\n"
                )),
                _ => text.push_str(&format!("E{i},t,2031-01-02T03:04:05+08:00,C{i},W,1.5,,x\n")),
            }
        }
        for skip in [0, 10, 4999, 6000] {
            let mut seq = Vec::new();
            let a = super::super::read::read_csv(text.as_bytes(), skip, &mut |at, u| {
                seq.push(render(at, u));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            let mut par = Vec::new();
            let end = read_csv_parallel(text.as_bytes(), skip, Count(0), &mut |at, u, _| {
                par.push(render(at, u));
                Ok(ControlFlow::Continue(()))
            });
            assert_eq!(a, end.read.unwrap());
            assert_eq!(seq.len(), 5000);
            assert_eq!(seq, par);
            let events = seq.iter().filter(|u| u.contains(" event ")).count();
            assert_eq!(end.prepare.0 as usize, events);
            assert!(skip > 4000 || events > 2000, "{events} events");
        }
        let end = read_csv_parallel(&b"id,type\n\xff\n"[..], 0, Count(0), &mut |_, _, _| {
            Ok(ControlFlow::Continue(()))
        });
        assert!(end.read.is_ok(), "a bad record is a unit, not a failure");
    }
}
