//! Reading JSON lines or CSV records on a second core: one thread reads blocks of them and
//! parses them, the caller's thread decides them in input order. The reading thread also does, for each
//! event, whatever work can run ahead of deciding (`Prepare`: admitting it, for a batch).
//! A block owns its text and the units parsed from it, which borrow that text
//! (`ParsedBlock`), so events cross threads as parsed, and the caller's thread reads them in
//! place.

use std::io::{self, BufRead};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;

use super::event_csv::CsvColumns;
use super::read::{classify_csv, classify_line, csv_reader, json_unit, Flow, Line, Position, Unit};
use crate::model::Event;

/// Lines per block: enough to amortize the hand-over, few enough that a block's text and
/// events (a few hundred bytes a line) are still in the caches when the other thread comes
/// to them. Blocks of 2048 lines (about 1.4 MB, past a core's 1 MiB L2) took both threads
/// together about 15% more CPU time on the 1,000,000-event bench than blocks of 128.
const BLOCK_LINES: usize = 128;
/// Blocks in flight between the threads.
const IN_FLIGHT: usize = 8;

/// Events a caller is shown ahead of deciding them (`Consume::ahead`).
pub const RUN: usize = 16;

/// Work done on the reading thread for each event it parses, ahead of the caller's thread.
pub trait Prepare: Send {
    type Out: Send;
    fn prepare(&mut self, ev: &Event<'_>) -> Self::Out;

    /// Prepares consecutive events (those of a block), in order, into `out`: a preparer may
    /// look ahead of the event it prepares (to prefetch its tables, say).
    fn prepare_run(&mut self, events: &[&Event<'_>], out: &mut Vec<Self::Out>) {
        out.extend(events.iter().map(|ev| self.prepare(ev)));
    }
}

/// Prepares the events among `units`.
fn prepare_units<P: Prepare>(prep: &mut P, units: &[(Position, Unit<'_>)], out: &mut Vec<P::Out>) {
    let events: Vec<&Event<'_>> = units
        .iter()
        .filter_map(|(_, unit)| match unit {
            Unit::Event { event, .. } => Some(event),
            _ => None,
        })
        .collect();
    prep.prepare_run(&events, out);
}

/// What the caller's thread does with the units, in input order.
pub trait Consume<O> {
    /// Handles one unit, with what was prepared for it if it is an event.
    fn unit(&mut self, at: Position, unit: &Unit<'_>, prepared: Option<O>) -> Flow;

    /// Called with what was prepared for the next few events (up to `RUN`), a run before
    /// they are given: a consumer may prefetch what it will look up for them, so that their
    /// cache misses overlap instead of stalling one event at a time.
    fn ahead(&mut self, _next: &[O]) {}
}

impl<O, F: FnMut(Position, &Unit<'_>, Option<O>) -> Flow> Consume<O> for F {
    fn unit(&mut self, at: Position, unit: &Unit<'_>, prepared: Option<O>) -> Flow {
        self(at, unit, prepared)
    }
}

/// What the caller does with each unit and what was prepared for it.
pub type Handle<'f, O> = &'f mut dyn Consume<O>;

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

/// The text a block's units borrow: JSON lines one after another, or CSV records (those
/// beyond the block's units are kept for their buffers).
#[derive(Default)]
struct BlockText {
    text: String,
    records: Vec<csv::StringRecord>,
}

/// The units of a block, in input order.
type Units<'a> = Vec<(Position, Unit<'a>)>;

self_cell::self_cell!(
    /// A block's text and the units parsed from it.
    struct ParsedBlock {
        owner: BlockText,
        #[covariant]
        dependent: Units,
    }
);

/// A block on its way to the caller: its units, and what was prepared for each of its
/// events, in order.
struct Block<O> {
    parsed: ParsedBlock,
    prepared: Vec<O>,
}

/// A decided block's buffers, handed back for the reader to fill again: fresh buffers of
/// this size would be fresh pages for the kernel to zero, block after block.
struct Buffers<O> {
    text: BlockText,
    units: Units<'static>,
    prepared: Vec<O>,
}

impl<O> Default for Buffers<O> {
    fn default() -> Self {
        Buffers {
            text: BlockText::default(),
            units: Vec::with_capacity(BLOCK_LINES),
            prepared: Vec::with_capacity(BLOCK_LINES),
        }
    }
}

impl<O> Block<O> {
    /// The buffers of a decided block, to fill again. Run on the reading thread, which
    /// made the block: its events' allocations are freed where they were made.
    fn into_buffers(self) -> Buffers<O> {
        let Block {
            mut parsed,
            mut prepared,
        } = self;
        let units = parsed.with_dependent_mut(|_, units| recycled(std::mem::take(units)));
        prepared.clear();
        Buffers {
            text: parsed.into_owner(),
            units,
            prepared,
        }
    }
}

/// The vector emptied, its allocation kept for units of any text: the collect reuses the
/// allocation in place, since the element type differs only in lifetime.
fn recycled(mut units: Units<'_>) -> Units<'static> {
    units.clear();
    units.into_iter().map(|(at, _)| (at, Unit::Blank)).collect()
}

/// A line of a block being read: its number and span in the block's text, to parse once
/// the text is complete, or a unit already known (skipped, blank, not UTF-8).
type Pending = Result<(u64, usize, usize), Unit<'static>>;

/// What the JSON reader reuses from block to block.
struct LineScratch {
    lines: Vec<(Position, Pending)>,
}

/// Appends the next line of `input` to `out`, its line end included, as `read_until` does;
/// the bytes read, 0 at the end of input. The line end is found by `memchr`'s vectorized
/// search: the standard library's was a twentieth of the reading thread.
fn read_line(input: &mut impl BufRead, out: &mut Vec<u8>) -> io::Result<usize> {
    let mut read = 0;
    loop {
        let (found, used) = {
            let available = match input.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            match memchr::memchr(b'\n', available) {
                Some(at) => {
                    out.extend_from_slice(available.get(..=at).unwrap_or_default());
                    (true, at + 1)
                }
                None => {
                    out.extend_from_slice(available);
                    (false, available.len())
                }
            }
        };
        input.consume(used);
        read += used;
        if found || used == 0 {
            return Ok(read);
        }
    }
}

/// The text of a block with a line that is not UTF-8: its lines checked one by one, those
/// that are not UTF-8 made `Unit::Bad` (as the sequential reader makes them) and left out of
/// the text, the spans of the others moved to where they now are.
fn only_utf8_lines(bytes: Vec<u8>, lines: &mut [(Position, Pending)]) -> String {
    let mut text = String::with_capacity(bytes.len());
    for (_, pending) in lines.iter_mut() {
        let Ok((line, start, end)) = *pending else {
            continue;
        };
        *pending = match classify_line(bytes.get(start..end).unwrap_or_default()) {
            Line::Bad { reason, raw } => Err(Unit::Bad {
                line,
                reason,
                raw,
                id: None,
            }),
            Line::Blank => Err(Unit::Blank),
            Line::Text(line_text) => {
                let start = text.len();
                text.push_str(line_text);
                Ok((line, start, text.len()))
            }
        };
    }
    text
}

/// Reads one block of JSON lines into `buffers`: the lines' text into one string, then each
/// line parsed from it and prepared. `None` at the end of input.
fn read_block<P: Prepare>(
    input: &mut impl BufRead,
    skip: u64,
    at: &mut Position,
    scratch: &mut LineScratch,
    prep: &mut P,
    buffers: Buffers<P::Out>,
) -> io::Result<Option<Block<P::Out>>> {
    let Buffers {
        mut text,
        units,
        mut prepared,
    } = buffers;
    let mut bytes = std::mem::take(&mut text.text).into_bytes();
    bytes.clear();
    bytes.reserve(BLOCK_LINES * 256);
    prepared.clear();
    let LineScratch { lines } = scratch;
    lines.clear();
    // Lines are read straight into the block's text, line ends and all, and the text is
    // checked to be UTF-8 once for the block rather than line by line.
    while lines.len() < BLOCK_LINES {
        let start = bytes.len();
        let n = read_line(input, &mut bytes)?;
        if n == 0 {
            break;
        }
        at.bytes += n as u64;
        at.unit += 1;
        let line = at.unit;
        if line == 1 {
            super::read::strip_bom(&mut bytes, start);
        }
        if line <= skip {
            bytes.truncate(start);
            lines.push((*at, Err(Unit::Skipped)));
            continue;
        }
        lines.push((*at, Ok((line, start, bytes.len()))));
    }
    text.text = match String::from_utf8(bytes) {
        Ok(checked) => checked,
        Err(e) => only_utf8_lines(e.into_bytes(), lines),
    };
    for (_, pending) in lines.iter_mut() {
        let Ok((line, start, end)) = *pending else {
            continue;
        };
        let line_text = text.text.get(start..end).unwrap_or_default();
        let line_text = line_text.trim_end_matches(['\n', '\r']);
        *pending = if line_text.trim().is_empty() {
            Err(Unit::Blank)
        } else {
            Ok((line, start, start + line_text.len()))
        };
    }
    if lines.is_empty() {
        return Ok(None);
    }
    let parsed = ParsedBlock::new(text, |text| {
        let mut units: Units<'_> = units;
        units.clear();
        units.extend(lines.drain(..).map(|(pos, pending)| {
            let unit = match pending {
                Err(unit) => unit,
                Ok((line, a, b)) => json_unit(line, text.text.get(a..b).unwrap_or_default()),
            };
            (pos, unit)
        }));
        prepare_units(prep, &units, &mut prepared);
        units
    });
    Ok(Some(Block { parsed, prepared }))
}

/// A CSV record of a block being read: where it ends, the line it starts on, and how
/// reading it went (`None`: skipped).
type PendingRecord = (Position, u64, Option<csv::Result<bool>>);

/// Reads one block of CSV records into `buffers`, each parsed and prepared, as
/// `read::read_csv` reads them. `None` at the end of input.
fn read_csv_block<P: Prepare>(
    input: &mut csv::Reader<impl io::Read>,
    columns: &CsvColumns,
    skip: u64,
    at: &mut Position,
    pending: &mut Vec<PendingRecord>,
    prep: &mut P,
    buffers: Buffers<P::Out>,
) -> io::Result<Option<Block<P::Out>>> {
    let Buffers {
        mut text,
        units,
        mut prepared,
    } = buffers;
    prepared.clear();
    pending.clear();
    let records = &mut text.records;
    while pending.len() < BLOCK_LINES {
        let n = pending.len();
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
        pending.push((*at, line, (at.unit > skip).then_some(read)));
    }
    if pending.is_empty() {
        return Ok(None);
    }
    let parsed = ParsedBlock::try_new(text, |text| -> io::Result<Units<'_>> {
        let mut units: Units<'_> = units;
        units.clear();
        for ((pos, line, read), record) in pending.drain(..).zip(&text.records) {
            let unit = match read {
                None => Unit::Skipped,
                Some(read) => classify_csv(columns, record, read, line)?,
            };
            units.push((pos, unit));
        }
        prepare_units(prep, &units, &mut prepared);
        Ok(units)
    })?;
    Ok(Some(Block { parsed, prepared }))
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
    let mut scratch = LineScratch {
        lines: Vec::with_capacity(BLOCK_LINES),
    };
    read_parallel(
        move |prep: &mut P, buffers| {
            read_block(&mut input, skip, &mut at, &mut scratch, prep, buffers)
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
    let mut pending = Vec::with_capacity(BLOCK_LINES);
    read_parallel(
        move |prep: &mut P, buffers| {
            read_csv_block(
                &mut input,
                &columns,
                skip,
                &mut at,
                &mut pending,
                prep,
                buffers,
            )
        },
        prepare,
        f,
    )
}

/// Runs `fill` (which reads the next block into the buffers it is given, `None` at the end
/// of input) on a second thread and hands the blocks' units to `f` in order.
fn read_parallel<P: Prepare>(
    mut fill: impl FnMut(&mut P, Buffers<P::Out>) -> io::Result<Option<Block<P::Out>>> + Send,
    prepare: P,
    f: Handle<'_, P::Out>,
) -> ParallelEnd<P> {
    let (tx, rx) = mpsc::sync_channel::<io::Result<Block<P::Out>>>(IN_FLIGHT);
    let (recycle, recycled) = mpsc::channel::<Block<P::Out>>();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        let reader = scope.spawn(move || {
            let mut prep = prepare;
            while !stop.load(Ordering::Relaxed) {
                let buffers = recycled
                    .try_recv()
                    .map(Block::into_buffers)
                    .unwrap_or_default();
                let sent = match fill(&mut prep, buffers) {
                    Ok(Some(block)) => tx.send(Ok(block)),
                    Ok(None) => break,
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
            unused.extend(block.prepared);
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

/// The run of up to `RUN` items of `items` from `from`.
fn run_at<O>(items: &[O], from: usize) -> &[O] {
    let rest = items.get(from..).unwrap_or_default();
    rest.get(..RUN).unwrap_or(rest)
}

/// Gives `f` the units of each block as it arrives, until the input ends or `f` stops or
/// fails; the prepared work of events left in the last block goes to `unused`.
fn hand_over<O>(
    rx: &mpsc::Receiver<io::Result<Block<O>>>,
    f: Handle<'_, O>,
    unused: &mut Vec<O>,
    recycle: &mpsc::Sender<Block<O>>,
) -> io::Result<(Position, bool)> {
    let mut last = Position::default();
    for block in rx {
        let Block {
            mut parsed,
            mut prepared,
        } = block?;
        let mut given = prepared.drain(..);
        f.ahead(run_at(given.as_slice(), 0));
        let mut since_ahead = RUN;
        let ended = parsed.with_dependent_mut(|_, units| {
            let mut ended = None;
            // Units are lent, not moved out: an event is a few hundred bytes.
            for &(at, ref unit) in units.iter() {
                last = at;
                let ready = match unit {
                    Unit::Event { .. } => {
                        if since_ahead == RUN {
                            f.ahead(run_at(given.as_slice(), RUN));
                            since_ahead = 0;
                        }
                        since_ahead += 1;
                        given.next()
                    }
                    _ => None,
                };
                let flow = f.unit(at, unit, ready);
                if !matches!(flow, Ok(std::ops::ControlFlow::Continue(()))) {
                    ended = Some(flow.map(|_| (at, true)));
                    break;
                }
            }
            ended
        });
        if let Some(ended) = ended {
            unused.extend(given);
            return ended;
        }
        drop(given);
        // The block goes back whole, to be emptied on the reading thread; if that has
        // finished, the block is simply dropped.
        let _ = recycle.send(Block { parsed, prepared });
    }
    Ok((last, false))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::ControlFlow;

    /// A unit as text, to compare readers.
    fn render(at: Position, u: &Unit<'_>) -> String {
        match u {
            Unit::Skipped => format!("{at:?} skipped"),
            Unit::Blank => format!("{at:?} blank"),
            Unit::Bad {
                line,
                reason,
                raw,
                id,
            } => format!("{at:?} bad {line} {reason} {raw} {id:?}"),
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
    fn lines_are_read_as_read_until_reads_them_across_buffer_ends() {
        let text = b"short\n\nlonger than the buffer\r\n\xff\xfe\nno line end";
        for capacity in [1, 2, 7, 64] {
            let mut ours = io::BufReader::with_capacity(capacity, &text[..]);
            let mut std = io::BufReader::with_capacity(capacity, &text[..]);
            loop {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let n = read_line(&mut ours, &mut a).unwrap();
                assert_eq!(n, std.read_until(b'\n', &mut b).unwrap(), "{capacity}");
                assert_eq!(a, b, "{capacity}");
                if n == 0 {
                    break;
                }
            }
        }
    }

    /// A closure as a consumer, its argument types spelt out for it.
    fn each(f: impl FnMut(Position, &Unit<'_>, Option<u32>) -> Flow) -> impl Consume<u32> {
        f
    }

    /// Records what it is given and what it is shown ahead.
    #[derive(Default)]
    struct Lookahead {
        given: Vec<u32>,
        /// Each preparation shown ahead, with how many had been given by then.
        shown: Vec<(u32, usize)>,
        largest: usize,
    }

    impl Consume<u32> for Lookahead {
        fn unit(&mut self, _: Position, _: &Unit<'_>, prepared: Option<u32>) -> Flow {
            self.given.extend(prepared);
            Ok(ControlFlow::Continue(()))
        }

        fn ahead(&mut self, next: &[u32]) {
            self.largest = self.largest.max(next.len());
            let given = self.given.len();
            self.shown.extend(next.iter().map(|&n| (n, given)));
        }
    }

    #[test]
    fn every_event_is_shown_ahead_once_before_it_is_given() {
        // Events and other lines mixed, across several blocks.
        let mut text = String::new();
        for i in 0..(3 * BLOCK_LINES + 77) {
            if i % 5 == 0 {
                text.push_str("not json\n");
            } else {
                text.push_str(&format!("{{\"id\":\"E{i}\",\"type\":\"t\",\"at\":\"2031-01-02T03:04:05Z\",\"customer\":\"C\",\"wallet\":\"W\"}}\n"));
            }
        }
        let mut seen = Lookahead::default();
        let end = read_jsonl_parallel(text.as_bytes(), 0, Count(0), &mut seen);
        end.read.unwrap();
        let events = end.prepare.0;
        assert!(events as usize > 2 * BLOCK_LINES);
        assert_eq!(seen.given, (1..=events).collect::<Vec<_>>());
        let shown: Vec<u32> = seen.shown.iter().map(|&(n, _)| n).collect();
        assert_eq!(shown, seen.given);
        assert!(seen.largest <= RUN && seen.largest > 1);
        // Shown while still to be given; apart from each block's first run, a run ahead.
        for &(n, given) in &seen.shown {
            assert!((n as usize) > given, "{n} shown after {given} were given");
        }
        let early = seen
            .shown
            .iter()
            .filter(|&&(n, given)| n as usize <= given + RUN);
        let blocks = text.lines().count().div_ceil(BLOCK_LINES);
        assert!(early.count() <= blocks * RUN);
    }

    #[test]
    fn recycled_units_keep_their_allocation() {
        let text = String::from("x");
        let mut units: Units<'_> = Vec::with_capacity(BLOCK_LINES);
        units.push((
            Position::default(),
            Unit::Bad {
                line: 1,
                reason: text.clone(),
                raw: text,
                id: None,
            },
        ));
        let units = recycled(units);
        assert!(units.is_empty());
        assert!(units.capacity() >= BLOCK_LINES, "{}", units.capacity());
    }

    #[test]
    fn parallel_reading_gives_the_same_units_as_sequential() {
        let mut text = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        for i in 0..5000 {
            // Blank lines, lines of spaces, CRLF line ends, and lines that are not UTF-8
            // in one block only (a block of lines that all are is read the fast way).
            match (i % 7, i / 7 % 4) {
                (0, 0) => text.push('\n'),
                (0, 1) => text.push_str("  \t\r\n"),
                (0, 2) if (2100..2500).contains(&i) => {
                    bytes.extend_from_slice(text.as_bytes());
                    bytes.extend_from_slice(b"{\"id\":\"\xff\xfe\"}\n");
                    text.clear();
                }
                (0, _) => text.push_str("not json\r\n"),
                (1, _) => text.push_str("not json\n"),
                (2, _) => text.push_str(&format!("{{\"id\":\"E\\u00{:02x}{i}\",\"type\":\"t\",\"at\":\"2031-01-02T03:04:05Z\",\"customer\":\"C{i}\",\"wallet\":\"W\"}}\n", 0x41 + i % 20)),
                _ => text.push_str(&format!("{{\"id\":\"E{i}\",\"type\":\"t\",\"at\":\"2031-01-02T03:04:05+08:00\",\"customer\":\"C{i}\",\"wallet\":\"W\",\"amount\":\"1.5\",\"coupons\":[\"a\",\"b\"],\"x\":\"y\"}}\n")),
            }
        }
        // The last line has no line end.
        text.push_str("{\"id\":\"last\"}");
        bytes.extend_from_slice(text.as_bytes());
        let text = bytes;
        // The input's buffer holding all of it, a few lines, or less than a line: lines
        // cross its ends.
        for (skip, capacity) in [
            (0, None),
            (10, None),
            (4999, None),
            (6000, None),
            (0, Some(7)),
            (10, Some(300)),
            (0, Some(4096)),
        ] {
            let mut seq = Vec::new();
            let a = super::super::read::read_jsonl(&text[..], skip, &mut |at, u| {
                seq.push(render(at, &u));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            let mut par = Vec::new();
            let mut numbers = Vec::new();
            let mut record = each(|at, u, n| {
                numbers.extend(n);
                par.push(render(at, u));
                Ok(ControlFlow::Continue(()))
            });
            let end = match capacity {
                None => read_jsonl_parallel(&text[..], skip, Count(0), &mut record),
                Some(capacity) => read_jsonl_parallel(
                    io::BufReader::with_capacity(capacity, &text[..]),
                    skip,
                    Count(0),
                    &mut record,
                ),
            };
            drop(record);
            assert_eq!(a, end.read.unwrap());
            assert_eq!(seq, par);
            assert!(end.unused.is_empty());
            assert_eq!(numbers, (1..=end.prepare.0).collect::<Vec<_>>());
            // Every event was prepared once, and only events.
            let events = seq.iter().filter(|u| u.contains(" event ")).count();
            assert_eq!(end.prepare.0 as usize, events);
            assert!(skip > 4000 || events > 2000, "{events} events");
            assert_eq!(seq.len(), 5001);
            let not_utf8 = seq.iter().filter(|u| u.contains("not UTF-8")).count();
            assert!(skip > 4000 || not_utf8 > 10, "{not_utf8} lines not UTF-8");
        }
        // Stopping early stops the reader too, and what it prepared beyond comes back.
        let mut given = Vec::new();
        let end = read_jsonl_parallel(
            &text[..],
            0,
            Count(0),
            &mut each(|_, _, p| {
                given.extend(p);
                Ok(if given.len() == 2000 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                })
            }),
        );
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
                seq.push(render(at, &u));
                Ok(ControlFlow::Continue(()))
            })
            .unwrap();
            let mut par = Vec::new();
            let end = read_csv_parallel(
                text.as_bytes(),
                skip,
                Count(0),
                &mut each(|at, u, _| {
                    par.push(render(at, u));
                    Ok(ControlFlow::Continue(()))
                }),
            );
            assert_eq!(a, end.read.unwrap());
            assert_eq!(seq.len(), 5000);
            assert_eq!(seq, par);
            let events = seq.iter().filter(|u| u.contains(" event ")).count();
            assert_eq!(end.prepare.0 as usize, events);
            assert!(skip > 4000 || events > 2000, "{events} events");
        }
        let end = read_csv_parallel(
            &b"id,type\n\xff\n"[..],
            0,
            Count(0),
            &mut each(|_, _, _| Ok(ControlFlow::Continue(()))),
        );
        assert!(end.read.is_ok(), "a bad record is a unit, not a failure");
    }
}
