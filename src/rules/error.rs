//! Located diagnostics for rule files: what is wrong is a [`Problem`], one variant per stable
//! code carrying the names and values its message shows; where it is, a [`Location`] from
//! the YAML reader (or from a script's position mapped through its scalar). `CODES` is
//! derived from the enum, so a code cannot exist without its variant. Rendering is the
//! caller's (`cli/check.rs`: human and JSON).

use std::fmt;
use std::path::{Path, PathBuf};

use super::span::Pos;

/// Where a problem is: a file, and a 1-based line and column (in characters) in it; line 0
/// is the file as a whole.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// A place in `file` the YAML reader gave.
    pub fn new(file: &Path, at: Pos) -> Location {
        Location {
            file: file.to_path_buf(),
            line: at.line,
            column: at.column,
        }
    }

    /// The file as a whole (it cannot be read, or the problem has no place in it).
    pub fn file(file: &Path) -> Location {
        Location::new(file, Pos::default())
    }
}

/// `file:line:col`, or `file` for the file as a whole.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        Ok(())
    }
}

/// `a`, `b`, `c`: names as a message lists them.
fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_working_day(calendar: &str, year: &Option<i32>) -> String {
    match year {
        None => format!("calendar `{calendar}` has no working day: its `weekend` lists all seven days"),
        Some(year) => format!("calendar `{calendar}` has no working day in {year}: each day of it is a weekend day or a holiday"),
    }
}

fn known_params(known: &[String]) -> String {
    if known.is_empty() {
        ", and this rule has none".into()
    } else {
        format!(": {}", quoted(known))
    }
}

fn unknown_calendar(name: &Option<String>) -> String {
    match name {
        Some(name) => format!(
            "unknown calendar `{name}`; calendars are declared in the manifest's `calendars`"
        ),
        None => "`working_days_after` needs a `calendar` declared in the manifest".into(),
    }
}

/// Declares [`Problem`] and its code table at once, so that a code and its variant cannot
/// part: `code() ` and `CODES` are generated from the same list.
macro_rules! problems {
    ($( $(#[$attr:meta])* $code:literal => $variant:ident
        $({ $($fields:tt)* })? $(( $($tuple:tt)* ))? ),* $(,)?) => {
        /// What is wrong, one variant per stable code; `Display` is the message.
        #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
        pub enum Problem {
            $( $(#[$attr])* $variant $({ $($fields)* })? $(( $($tuple)* ))?, )*
        }

        impl Problem {
            /// The stable code tools and tests match on, e.g. `unknown_fact`.
            pub fn code(&self) -> &'static str {
                match self {
                    $( Problem::$variant { .. } => $code, )*
                }
            }
        }

        /// Every diagnostic code `check` reports, in one list: a code is stable once shipped
        /// (tools and tests match on it), and `tests/it/check.rs` asserts each of them at its
        /// exact file:line:col (a test fails if a code here has none).
        pub const CODES: &[&str] = &[$($code),*];
    };
}

problems! {
    #[error("rules `{first}` and `{second}` both count on `{counter}` for `{event_type}` events in phase `{phase}`, so which one decides first depends on their order")]
    "ambiguous_order" => AmbiguousOrder { first: String, second: String, counter: String, event_type: String, phase: String },
    #[error("`{key}: {value}` must be {want}")]
    "bad_amount" => BadAmount { key: &'static str, value: String, want: &'static str },
    #[error("accumulator `{name}`: {why}")]
    "bad_accumulator" => BadAccumulator { name: String, why: &'static str },
    #[error("condition `{name}` needs exactly one of `field`, `fact`, `sum_of`, `count_of`, `accumulator`, `working_day`, `value`, `all`, `any` or `script`")]
    "bad_condition" => BadCondition { name: String },
    #[error("a coupon has either a `face_value` or a `from_field`")]
    "bad_coupon" => BadCoupon,
    #[error("`credit_by` needs exactly one of `working_days_after` or `days_after`")]
    "bad_credit_by" => BadCreditBy,
    /// Why the value is not a decimal (`parse_decimal`'s reason).
    #[error("{0}")]
    "bad_decimal" => BadDecimal(String),
    /// The expression reader's message (`rules::expr`).
    #[error("`{text}`: {message}")]
    "bad_expression" => BadExpression { text: String, message: String },
    #[error("limit `{limit}`: {why}")]
    "bad_partial_fill" => BadPartialFill { limit: String, why: &'static str },
    #[error("`{fact}` must be a decimal fact kept per wallet")]
    "bad_fact_type" => BadFactType { fact: String },
    #[error("`{key}` needs {want}, not `{found}`")]
    "bad_field_type" => BadFieldType { key: &'static str, want: &'static str, found: String },
    #[error("{reason} (`{operand}` is compared as {ty})")]
    "bad_literal" => BadLiteral { reason: String, operand: String, ty: &'static str },
    #[error("`{key}: {value}` {reason}")]
    "bad_number" => BadNumber { key: &'static str, value: String, reason: &'static str },
    #[error("{0}")]
    "bad_operator" => BadOperator(OperatorMisuse),
    #[error("{0}")]
    "bad_rule_shape" => BadRuleShape(RuleShape),
    #[error("fact `{fact}` must be kept per `customer` or per `wallet`")]
    "bad_scope" => BadScope { fact: String },
    #[error("{0}")]
    "bad_update" => BadUpdate(UpdateMisuse),
    #[error("`{name}` is not a weekday name such as `saturday`")]
    "bad_weekday" => BadWeekday { name: String },
    /// Why the value is not a date (`parse_date`'s reason).
    #[error("{0}")]
    "bad_date" => BadDate(String),
    #[error("{0}")]
    "conflicting_keys" => ConflictingKeys(KeyConflict),
    #[error("counter `{counter}` is counted by `{window}` here and by `{first}` in a limit before; limits that share a counter (with the same `per`) share its `window`")]
    "counter_window" => CounterWindow { counter: String, window: String, first: String },
    #[error("rule id `{id}` is used by another rule file")]
    "duplicate_rule_id" => DuplicateRuleId { id: String },
    #[error("limit `{limit}` sets no bound: add `max_grants`, `max_coupons` or `max_value`")]
    "empty_limit" => EmptyLimit { limit: String },
    #[error("{0}")]
    "id_mismatch" => IdMismatch(IdMismatch),
    #[error("every condition of `when` needs a `name`")]
    "missing_name" => MissingName,
    #[error("{0}")]
    "never_holds" => NeverHolds(NeverHolds),
    #[error("condition `{condition}` names `{operand}` but no test such as `eq`, `in_list` or `between`")]
    "no_test" => NoTest { condition: String, operand: String },
    #[error("this file is not UTF-8 text: save it as UTF-8")]
    "not_utf8" => NotUtf8,
    #[error("`points` apply to `decides: redemption` rules only")]
    "points_not_allowed" => PointsNotAllowed,
    /// `owner` names the limit or condition, e.g. "limit `daily`".
    #[error("{owner}: only `decides: redemption` rules reject with a reason")]
    "reject_not_allowed" => RejectNotAllowed { owner: String },
    #[error("script of condition `{condition}` in rule `{rule}` breaks the sandbox's limits on a probe event (amount {amount}): {message}")]
    "script_limit" => ScriptLimit { condition: String, rule: String, amount: i64, message: String },
    #[error("script of condition `{condition}` in rule `{rule}` fails for a customer with no history (every fact absent): {message}")]
    "script_no_history" => ScriptNoHistory { condition: String, rule: String, message: String },
    /// A warning: the ruleset loads.
    #[error("the script of condition `{condition}` runs before condition `{next}`: their `reject` reasons differ and a redemption rejects with the first failed condition's, so the written order stays")]
    "script_runs_first" => ScriptRunsFirst { condition: String, next: String },
    #[error("script of condition `{condition}`: {message}")]
    "script_syntax" => ScriptSyntax { condition: String, message: String },
    #[error("at most 64 event types and 64 channels")]
    "too_many" => TooMany,
    /// A number past the most promo takes (`compile/bounds.rs`): beyond it the number
    /// could take the process down (an allocation, a day-by-day walk of centuries).
    #[error("`{key}: {value}` is more than {max}, the most promo takes")]
    "too_large" => TooLarge { key: &'static str, value: u64, max: u64 },
    /// `year` is `None` when the weekend lists all seven days, else the year its holidays
    /// that leaves no working day.
    #[error("{}", no_working_day(.calendar, .year))]
    "no_working_day" => NoWorkingDay { calendar: String, year: Option<i32> },
    #[error("unknown accumulator `{name}`; accumulators are declared in the manifest")]
    "unknown_accumulator" => UnknownAccumulator { name: String },
    #[error("{}", unknown_calendar(.name))]
    "unknown_calendar" => UnknownCalendar { name: Option<String> },
    #[error("unknown channel `{name}`")]
    "unknown_channel" => UnknownChannel { name: String },
    #[error("unknown event type `{name}`")]
    "unknown_event_type" => UnknownEventType { name: String },
    #[error("unknown fact `{name}`; facts are declared in the manifest")]
    "unknown_fact" => UnknownFact { name: String },
    #[error("unknown event field `{name}`; fields beyond the contract's are declared in the manifest's `extra_fields`")]
    "unknown_field" => UnknownField { name: String },
    #[error("unknown field `{found}`, expected one of {}", quoted(.expected))]
    "unknown_key" => UnknownKey { found: String, expected: Vec<String> },
    #[error("unknown list `{name}`; lists are declared in the manifest")]
    "unknown_list" => UnknownList { name: String },
    /// `known` lists the rule's params, for the message.
    #[error("unknown param `{name}`; a script's `params` are the rule's `params`{}", known_params(.known))]
    "unknown_param" => UnknownParam { name: String, known: Vec<String> },
    #[error("unknown phase `{name}`; the manifest's phases are {phases:?}")]
    "unknown_phase" => UnknownPhase { name: String, phases: Vec<String> },
    #[error("unknown time zone `{name}`; expected an IANA name such as `Europe/Paris`")]
    "unknown_timezone" => UnknownTimezone { name: String },
    #[error("unknown variant `{found}`, expected one of {}", quoted(.expected))]
    "unknown_value" => UnknownValue { found: String, expected: Vec<String> },
    /// `what` is what could not be done, e.g. "read `rules/ruleset.yaml`".
    #[error("cannot {what}: {reason}")]
    "unreadable" => Unreadable { what: String, reason: String },
    #[error("cannot read script `{}`: {reason}", .path.display())]
    "unreadable_script" => UnreadableScript { path: PathBuf, reason: String },
    /// The YAML reader's message, without its own " at line L, column C".
    #[error("{0}")]
    "yaml" => Yaml(String),
}

impl Problem {
    /// Whether `check` warns rather than refuses: the ruleset loads as written.
    pub fn is_warning(&self) -> bool {
        matches!(self, Problem::ScriptRunsFirst { .. })
    }
}

/// How an operator does not fit its operand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorMisuse {
    #[error(
        "`{op}` does not apply to the list `{operand}`; use `each_in`, `not_empty` or `count_of`"
    )]
    OnList { op: String, operand: String },
    #[error("`{op}` needs a number or a date, and `{operand}` is {ty}")]
    Unordered {
        op: String,
        operand: String,
        ty: &'static str,
    },
    #[error("`{op}` applies to list fields, and `{operand}` is {ty}")]
    NotList {
        op: String,
        operand: String,
        ty: &'static str,
    },
}

/// How a rule's `decides` and its blocks disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RuleShape {
    #[error("a `coupon_use` rule needs a `coupon_use` block and no `grant`")]
    CouponUseWithoutBlock,
    #[error("a `coupon_use` block needs `decides: coupon_use`")]
    BlockWithoutCouponUse,
    #[error("this rule grants nothing: add a `grant` block")]
    GrantsNothing,
    #[error("this `grant` lists no coupon: add `coupons` or `tiers`")]
    EmptyGrant,
}

/// How a fact's update does not fit the fact.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateMisuse {
    #[error(
        "update of fact `{fact}`: `add_field` and `set_field` need a `field`, other ops take none"
    )]
    FieldPresence { fact: String },
    #[error("update of fact `{fact}`: field `{field}` cannot update a fact; `at` gives a date, `amount` and `face_values` a decimal")]
    FieldGivesNothing { fact: String, field: String },
    #[error("update `{op}` does not apply to fact `{fact}` of type {ty}")]
    WrongType {
        op: &'static str,
        fact: String,
        ty: &'static str,
    },
}

/// Two keys written together that exclude each other.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyConflict {
    #[error("event type `{event_type}` has both `channel` and `channel_field`; keep one")]
    Channel { event_type: String },
    #[error("`min_spend_by_face_value` goes with `from_field`")]
    MinSpendByFaceValue,
    #[error("`count` goes with a fixed `face_value`")]
    Count,
}

/// An id that differs from the name it must have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdMismatch {
    #[error(
        "rule id `{id}` differs from its file name `{stem}.yaml`; a rule's id is its file name"
    )]
    Rule { id: String, stem: String },
    #[error("calendar id `{declared}` differs from the manifest's name `{name}` for this file")]
    Calendar { declared: String, name: String },
}

/// A test no value passes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NeverHolds {
    #[error("`in: []` lists no value, so the condition never holds")]
    EmptyIn,
    #[error("`between: [{lo}, {hi}]` is empty: its first bound is after its second, so the condition never holds")]
    ReversedBetween { lo: String, hi: String },
}

/// One problem found in a rule file: what, where, and what may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub at: Location,
    pub problem: Problem,
    pub help: Option<String>,
    /// The clause of the promotion's terms the faulty part encodes, where it names one.
    pub clause: Option<String>,
}

impl Diagnostic {
    /// A problem at a place, with no help or clause yet.
    pub fn new(at: Location, problem: Problem) -> Diagnostic {
        Diagnostic {
            at,
            problem,
            help: None,
            clause: None,
        }
    }

    /// The problem's stable code.
    pub fn code(&self) -> &'static str {
        self.problem.code()
    }

    /// `error`, or `warning` for a problem the ruleset loads with.
    pub fn severity(&self) -> &'static str {
        if self.problem.is_warning() {
            "warning"
        } else {
            "error"
        }
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (at, severity, code) = (&self.at, self.severity(), self.code());
        write!(f, "{at}: {severity}[{code}]: {}", self.problem)?;
        if let Some(help) = &self.help {
            write!(f, " (help: {help})")?;
        }
        if let Some(clause) = &self.clause {
            write!(f, " [{clause}]")?;
        }
        Ok(())
    }
}

/// Why a ruleset could not be loaded: every problem found, not just the first.
#[derive(Debug, thiserror::Error)]
pub struct RulesetError {
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for RulesetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

/// A rule file's text, kept to show the line a diagnostic points at and to read a
/// scalar's source (`super::scalar`); positions come from the YAML reader, never from
/// searching this text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    /// Line and column (1-based) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = self.text.get(..offset).unwrap_or(&self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

/// Collects diagnostics while a ruleset is compiled.
#[derive(Debug, Default)]
pub struct Diagnostics {
    pub list: Vec<Diagnostic>,
}

impl Diagnostics {
    /// Whether any problem is an error (not only warnings).
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| !d.problem.is_warning())
    }

    /// Records a problem at a position the YAML reader gave.
    pub fn at(&mut self, src: &SourceFile, at: Pos, problem: Problem) {
        self.push(Diagnostic::new(Location::new(&src.path, at), problem));
    }

    /// Like `at`, with a help line (e.g. a "did you mean").
    pub fn at_with_help(
        &mut self,
        src: &SourceFile,
        at: Pos,
        problem: Problem,
        help: Option<String>,
    ) {
        let diagnostic = Diagnostic {
            help,
            ..Diagnostic::new(Location::new(&src.path, at), problem)
        };
        self.push(diagnostic);
    }

    /// Records a problem, once: a problem reached again from another place (a manifest list
    /// every rule names) is the same problem, not a new one.
    pub fn push(&mut self, diagnostic: Diagnostic) {
        if !self.list.contains(&diagnostic) {
            self.list.push(diagnostic);
        }
    }

    /// Records a YAML syntax or shape error, at the error's place or, where the reader
    /// gives none, at the end of the file.
    pub fn yaml(&mut self, src: &SourceFile, err: &serde_saphyr::Error) {
        use serde_saphyr::Error as E;
        let err = err.without_snippet();
        let (line, column) = match err.location() {
            Some(l) if l.line() > 0 => (l.line() as usize, l.column() as usize),
            _ => src.line_col(src.text.trim_end().len()),
        };
        let at = Pos { line, column };
        let names = |e: &[&str]| e.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        // An unknown key or value: what the reader expected instead, with the closest.
        let (problem, help) = match err {
            E::SerdeUnknownField {
                field, expected, ..
            } => (
                Problem::UnknownKey {
                    found: field.to_string(),
                    expected: names(expected),
                },
                did_you_mean(field, expected.iter().copied()),
            ),
            E::SerdeUnknownVariant {
                variant, expected, ..
            } => (
                Problem::UnknownValue {
                    found: variant.to_string(),
                    expected: names(expected),
                },
                did_you_mean(variant, expected.iter().copied()),
            ),
            _ => {
                // The reader appends " at line L, column C"; the location is ours to print.
                let text = err.to_string();
                let message = match text.rfind(" at line ") {
                    Some(i) => text.get(..i).unwrap_or(&text).to_string(),
                    None => text,
                };
                (Problem::Yaml(message), None)
            }
        };
        self.at_with_help(src, at, problem, help);
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo, as a help line.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    closest(word, candidates).map(|c| format!("did you mean `{c}`?"))
}

/// The closest of `candidates` to `word`, if close enough to be a likely typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev.get(j).copied().unwrap_or(0) + usize::from(ca != *cb);
            let del = prev.get(j + 1).copied().unwrap_or(0) + 1;
            let ins = cur.get(j).copied().unwrap_or(0) + 1;
            cur.push(sub.min(del).min(ins));
        }
        prev = cur;
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_each_names_its_variant() {
        let mut seen = std::collections::BTreeSet::new();
        for code in CODES {
            assert!(seen.insert(code), "{code} twice");
            assert!(
                code.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{code}"
            );
        }
        let problem = Problem::UnknownFact { name: "x".into() };
        assert_eq!(problem.code(), "unknown_fact");
        assert!(CODES.contains(&problem.code()));
    }

    #[test]
    fn a_diagnostic_reads_file_line_column_code_and_message() {
        let at = Location::new(Path::new("r.yaml"), Pos { line: 3, column: 7 });
        let d = Diagnostic::new(at, Problem::BadRuleShape(RuleShape::GrantsNothing));
        assert_eq!(
            d.to_string(),
            "r.yaml:3:7: error[bad_rule_shape]: this rule grants nothing: add a `grant` block"
        );
        let whole = Diagnostic::new(Location::file(Path::new("r.yaml")), Problem::NotUtf8);
        assert!(whole.to_string().starts_with("r.yaml: error[not_utf8]: "));
    }

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(
            did_you_mean("visit_cuont", ["visit_count", "loyalty_level"]),
            Some("did you mean `visit_count`?".into())
        );
        assert_eq!(did_you_mean("zzz", ["visit_count"]), None);
    }
}
