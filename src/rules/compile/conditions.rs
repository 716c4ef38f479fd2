//! The conditions of `when`: operands, tests and their literals, scripts.

use super::*;

/// Whose conditions these are: a rule file's, or an accumulator's filter in the manifest.
pub(super) struct Owner<'a> {
    pub src: &'a SourceFile,
    /// The rule's id, or `accumulator NAME`: named in script errors.
    pub id: String,
    /// The script files the owner names, as the loader read them.
    pub scripts: &'a BTreeMap<String, ScriptFile>,
    /// The rule's params, which expressions read as `params.NAME`.
    pub params: &'a BTreeMap<String, Value>,
}

impl<'a> Owner<'a> {
    pub(super) fn rule(p: &'a Parsed<RawRule>) -> Self {
        Owner {
            src: &p.src,
            id: p.raw.id.to_string(),
            scripts: &p.scripts,
            params: &p.raw.params,
        }
    }
}

/// One named condition of `when`; its problems are tied to the clause it encodes.
pub(super) fn compile_condition(
    index: usize,
    c: &Sp<RawCondition>,
    rule: &Owner,
    rejects_allowed: bool,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Option<Condition> {
    let src = rule.src;
    let Some(name) = c.name.as_deref().cloned() else {
        d.at(src, c.pos(), Problem::MissingName);
        return None;
    };
    if let (Some(reject), false) = (&c.reject, rejects_allowed) {
        let owner = format!("condition `{name}`");
        d.at(src, reject.pos(), Problem::RejectNotAllowed { owner });
    }
    let before = d.list.len();
    let test = compile_test(c, rule, &name, ctx, scripts, d);
    if let Some(clause) = &c.clause {
        // Tie each problem to the sentence of the terms the condition encodes.
        for diag in d.list.iter_mut().skip(before) {
            diag.clause
                .get_or_insert_with(|| format!("condition `{name}` encodes: {}", **clause));
        }
    }
    Some(Condition {
        index,
        name,
        clause: c.clause.as_deref().cloned(),
        test: test?,
        reject: c.reject.as_deref().map(|r| Arc::from(r.as_str())),
        shared: None,
    })
}

/// A list of named conditions (a rule's `when`, a tier's, an accumulator's filter).
pub(super) fn compile_conditions(
    list: &[Sp<RawCondition>],
    owner: &Owner,
    rejects_allowed: bool,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Vec<Condition> {
    list.iter()
        .enumerate()
        .filter_map(|(i, c)| compile_condition(i, c, owner, rejects_allowed, ctx, scripts, d))
        .collect()
}

/// The condition's operand, its type and name, or `None` when it has none or an unknown fact.
pub(super) fn operand(
    c: &Sp<RawCondition>,
    owner: &Owner,
    ctx: &Context,
    d: &mut Diagnostics,
) -> Option<(Operand, Ty, String)> {
    let src = owner.src;
    let list_field = |f: &Sp<String>, key: &'static str, want: Ty, d: &mut Diagnostics| {
        let field = ctx.field_at(f, src, d);
        let ok = match want {
            Ty::DecimalList => field_type(&field) == Ty::DecimalList,
            _ => field_type(&field).is_list(),
        };
        if !ok {
            let example = if want == Ty::DecimalList {
                "a list of decimals such as `face_values`"
            } else {
                "a list field such as `coupons`"
            };
            let problem = Problem::BadFieldType {
                key,
                want: example,
                found: f.to_string(),
            };
            d.at(src, f.pos(), problem);
        }
        field
    };
    if let Some(f) = &c.field {
        if let Some((operand, ty)) = date_part(f) {
            return Some((operand, ty, f.to_string()));
        }
        let field = ctx.field_at(f, src, d);
        let ty = field_type(&field);
        Some((Operand::Field(field), ty, f.to_string()))
    } else if let Some(f) = &c.fact {
        let fi = ctx.fact_at(f, src, d)?;
        let ty = fact_type(ctx.facts.get(fi)?.kind);
        Some((Operand::Fact(fi), ty, f.to_string()))
    } else if let Some(f) = &c.sum_of {
        let field = list_field(f, "sum_of", Ty::DecimalList, d);
        Some((Operand::SumOf(field), Ty::Decimal, f.to_string()))
    } else if let Some(f) = &c.count_of {
        let field = list_field(f, "count_of", Ty::TextList, d);
        Some((Operand::CountOf(field), Ty::Int, f.to_string()))
    } else if let Some(a) = &c.accumulator {
        let (ai, is_count) = ctx.accumulator_at(a, src, d)?;
        let ty = if is_count { Ty::Int } else { Ty::Decimal };
        Some((Operand::Accumulator(ai), ty, a.to_string()))
    } else if let Some(cal) = &c.working_day {
        let ci = ctx.calendar_at(cal, src, d)?;
        Some((
            Operand::WorkingDay(ci),
            Ty::Bool,
            format!("working_day {}", **cal),
        ))
    } else if let Some(text) = &c.value {
        let expr = compile_expr(text, owner, ctx, false, d)?;
        Some((Operand::Value(expr), Ty::Decimal, text.to_string()))
    } else {
        None
    }
}

/// The parts of the event's local date and time a condition may test as `field: at.PART`.
fn date_part(f: &str) -> Option<(Operand, Ty)> {
    Some(match f {
        "at.weekday" => (Operand::Weekday, Ty::Weekday),
        "at.day" => (Operand::DayOfMonth, Ty::Int),
        "at.time" => (Operand::TimeOfDay, Ty::Time),
        _ => return None,
    })
}

/// Where each character of an inline script is in the rule file, line by line of the
/// script; empty when the scalar's source could not be read back to the script.
pub(super) fn script_lines(src: &SourceFile, text: &Sp<String>) -> Vec<Vec<Pos>> {
    let Some(positions) = text
        .offset()
        .and_then(|o| crate::rules::scalar::char_positions(&src.text, o, text))
    else {
        return Vec::new();
    };
    let mut lines = vec![Vec::new()];
    for (c, p) in text.chars().zip(positions) {
        if let Some(line) = lines.last_mut() {
            line.push(p);
        }
        if c == '\n' {
            lines.push(Vec::new());
        }
    }
    lines
}

/// A script condition, written inline or in a file beside the rule file.
pub(super) fn compile_script(
    c: &Sp<RawCondition>,
    rule: &Owner,
    name: &str,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Option<Test> {
    let src = rule.src;
    let (text, file, at, lines) = if let Some(text) = &c.script {
        let at = text.pos();
        let lines = script_lines(src, text);
        (text.as_str(), src.path.clone(), at, lines)
    } else {
        // The loader read the file, or reported why it could not.
        let file = rule.scripts.get(c.script_file.as_deref()?.as_str())?;
        let start = Pos { line: 1, column: 1 };
        (file.text.as_str(), file.path.clone(), start, Vec::new())
    };
    let origin = ScriptOrigin {
        file,
        first_line: at.line,
        first_column: at.column,
        lines,
        rule: rule.id.clone(),
        condition: name.to_string(),
    };
    match scripts.compile(text, origin.clone()) {
        Ok(i) => {
            check_script_names(text, &origin, rule, ctx, d);
            Some(Test::Script(i))
        }
        Err(e) => {
            let problem = Problem::ScriptSyntax {
                condition: name.to_string(),
                message: e.message,
            };
            d.push(Diagnostic::new(e.at, problem));
            None
        }
    }
}

pub(super) fn compile_test(
    c: &Sp<RawCondition>,
    rule: &Owner,
    name: &str,
    ctx: &Context,
    scripts: &mut Scripts,
    d: &mut Diagnostics,
) -> Option<Test> {
    let src = rule.src;
    let kinds = [
        c.field.is_some(),
        c.fact.is_some(),
        c.sum_of.is_some(),
        c.count_of.is_some(),
        c.accumulator.is_some(),
        c.working_day.is_some(),
        c.value.is_some(),
        c.all.is_some(),
        c.any.is_some(),
        c.script.is_some(),
        c.script_file.is_some(),
    ];
    if kinds.iter().filter(|x| **x).count() != 1 {
        let name = name.to_string();
        d.at(src, c.pos(), Problem::BadCondition { name });
        return None;
    }
    let mut sub = |list: &Vec<Sp<RawCondition>>| -> Vec<Test> {
        list.iter()
            .filter_map(|c| compile_test(c, rule, name, ctx, scripts, d))
            .collect()
    };
    if let Some(list) = &c.all {
        return Some(Test::All(sub(list)));
    }
    if let Some(list) = &c.any {
        return Some(Test::Any(sub(list)));
    }
    if c.script.is_some() || c.script_file.is_some() {
        return compile_script(c, rule, name, ctx, scripts, d);
    }
    let (operand, ty, operand_name) = operand(c, rule, ctx, d)?;
    let tests = Tests {
        src,
        ty,
        operand: &operand_name,
        ctx,
    };
    let ops = tests.ops(c, d);
    if tests_named(c) == 0 {
        let problem = Problem::NoTest {
            condition: name.to_string(),
            operand: operand_name,
        };
        d.at(src, c.pos(), problem);
        return None;
    }
    // A test already reported (a bad operator or literal) leaves the condition out.
    (ops.len() == tests_named(c)).then_some(Test::Compare { operand, ops })
}

/// How many tests a condition names (each `in_list` or `not_in_list` counts as one).
pub(super) fn tests_named(c: &RawCondition) -> usize {
    [
        c.eq.is_some(),
        c.ne.is_some(),
        c.in_.is_some(),
        c.not_in.is_some(),
        c.in_list.is_some(),
        c.not_in_list.is_some(),
        c.gt.is_some(),
        c.gte.is_some(),
        c.lt.is_some(),
        c.lte.is_some(),
        c.between.is_some(),
        c.present.is_some(),
        c.not_empty.is_some(),
        c.each_in.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count()
}

/// Makes a test of a list of literals (`in`, `not_in`, `each_in`).
pub(super) type MakeListOp = fn(Vec<Literal>) -> Op;

/// A written list of literals, and each of them, with their places.
pub(super) type Literals = Sp<Vec<Sp<Value>>>;

/// The tests of one compare condition: its operand's name and type, to check literals against.
pub(super) struct Tests<'a> {
    src: &'a SourceFile,
    ty: Ty,
    operand: &'a str,
    ctx: &'a Context<'a>,
}

impl Tests<'_> {
    /// Whether `op` applies to the operand; reports at `at` when it does not.
    fn applies(&self, op: &str, at: Pos, d: &mut Diagnostics) -> bool {
        let (ty, needle) = (self.ty, self.operand);
        let (op, operand) = (op.to_string(), needle.to_string());
        let misuse = if ty.is_list() && !matches!(op.as_str(), "each_in" | "not_empty") {
            OperatorMisuse::OnList { op, operand }
        } else if matches!(op.as_str(), "gt" | "gte" | "lt" | "lte" | "between") && !ty.is_ordered()
        {
            let ty = ty.describe();
            OperatorMisuse::Unordered { op, operand, ty }
        } else if matches!(op.as_str(), "each_in" | "not_empty") && !ty.is_list() {
            let ty = ty.describe();
            OperatorMisuse::NotList { op, operand, ty }
        } else {
            return true;
        };
        d.at(self.src, at, Problem::BadOperator(misuse));
        false
    }

    /// A literal of the operand's type, or a `bad_literal` at `at`.
    fn literal(&self, v: &Value, at: Pos, d: &mut Diagnostics) -> Option<Literal> {
        literal(v, self.ty)
            .map_err(|e| {
                let problem = Problem::BadLiteral {
                    reason: e,
                    operand: self.operand.to_string(),
                    ty: self.ty.element().describe(),
                };
                d.at(self.src, at, problem);
            })
            .ok()
    }

    /// Reports a test that no value passes: the rule it belongs to could never decide.
    fn never_holds(&self, at: Pos, why: NeverHolds, d: &mut Diagnostics) {
        d.at_with_help(
            self.src,
            at,
            Problem::NeverHolds(why),
            Some(
                "check the values against the terms; a rule that can never decide is a mistake"
                    .into(),
            ),
        );
    }

    /// The literals of a written list, each checked at its own place.
    fn literals(&self, vs: &[Sp<Value>], d: &mut Diagnostics) -> Option<Vec<Literal>> {
        let out: Vec<Literal> = vs
            .iter()
            .filter_map(|v| self.literal(v, v.pos(), d))
            .collect();
        (out.len() == vs.len()).then_some(out)
    }

    /// The literals of the manifest's list a condition names. A value of the list that is
    /// not of the operand's type is reported once, at its line of the manifest, however
    /// many conditions name the list.
    fn named_list(&self, l: &Sp<String>, d: &mut Diagnostics) -> Option<Vec<Literal>> {
        let vs = self.ctx.list_at(l, self.src, d)?;
        let in_manifest = Tests {
            src: self.ctx.manifest_src,
            ..*self
        };
        let out: Vec<Literal> = vs
            .iter()
            .filter_map(|v| in_manifest.literal(v, v.pos(), d))
            .collect();
        (out.len() == vs.len()).then_some(out)
    }

    fn ops(&self, c: &RawCondition, d: &mut Diagnostics) -> Vec<Op> {
        let mut ops = Vec::new();
        let mut one =
            |v: &Option<Sp<Value>>, op: &str, make: fn(Literal) -> Op, d: &mut Diagnostics| {
                if let Some(v) = v {
                    if self.applies(op, v.pos(), d) {
                        ops.extend(self.literal(v, v.pos(), d).map(make));
                    }
                }
            };
        one(&c.eq, "eq", Op::Eq, d);
        one(&c.ne, "ne", Op::Ne, d);
        one(&c.gt, "gt", Op::Gt, d);
        one(&c.gte, "gte", Op::Gte, d);
        one(&c.lt, "lt", Op::Lt, d);
        one(&c.lte, "lte", Op::Lte, d);
        let lists: [(&Option<Literals>, &str, MakeListOp); 3] = [
            (&c.in_, "in", |ls| Op::In(InList::new(ls))),
            (&c.not_in, "not_in", |ls| Op::NotIn(InList::new(ls))),
            (&c.each_in, "each_in", Op::EachIn),
        ];
        for (vs, op, make) in lists {
            if let Some(vs) = vs {
                if op == "in" && vs.is_empty() {
                    self.never_holds(vs.pos(), NeverHolds::EmptyIn, d);
                } else if self.applies(op, vs.pos(), d) {
                    ops.extend(self.literals(vs, d).map(make));
                }
            }
        }
        let named: [(&Option<Sp<String>>, &str, MakeListOp); 2] = [
            (&c.in_list, "in_list", |ls| Op::In(InList::new(ls))),
            (&c.not_in_list, "not_in_list", |ls| {
                Op::NotIn(InList::new(ls))
            }),
        ];
        for (l, op, make) in named {
            if let Some(l) = l {
                if self.applies(op, l.pos(), d) {
                    ops.extend(self.named_list(l, d).map(make));
                }
            }
        }
        if let Some((a, b)) = &c.between {
            if self.applies("between", a.pos(), d) {
                let (lo, hi) = (self.literal(a, a.pos(), d), self.literal(b, b.pos(), d));
                if let (Some(lo), Some(hi)) = (lo, hi) {
                    if lo.order(&hi) == Some(std::cmp::Ordering::Greater) {
                        let (lo, hi) = (scalar_text(a), scalar_text(b));
                        let why = NeverHolds::ReversedBetween { lo, hi };
                        self.never_holds(a.pos(), why, d);
                    } else {
                        ops.push(Op::Between(lo, hi));
                    }
                }
            }
        }
        if let Some(p) = &c.present {
            ops.push(Op::Present(**p));
        }
        if let Some(n) = &c.not_empty {
            if self.applies("not_empty", n.pos(), d) {
                ops.push(Op::NotEmpty(**n));
            }
        }
        ops
    }
}
