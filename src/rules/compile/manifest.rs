//! The manifest: its event types, facts and their updates, calendars and script limits.

use super::*;

/// The manifest's event types, each with where its channel comes from.
pub(super) fn event_types(
    m: &RawManifest,
    msrc: &SourceFile,
    d: &mut Diagnostics,
) -> Vec<EventType> {
    let channel =
        |name: &str, t: &RawEventType, d: &mut Diagnostics| match (&t.channel, &t.channel_field) {
            (Some(c), Some(_)) => {
                let conflict = KeyConflict::Channel {
                    event_type: name.to_string(),
                };
                d.at(msrc, c.pos(), Problem::ConflictingKeys(conflict));
                ChannelSource::None
            }
            (Some(c), None) => match m.channels.iter().position(|x| *x == **c) {
                Some(i) => ChannelSource::Fixed(i),
                None => {
                    d.at_with_help(
                        msrc,
                        c.pos(),
                        Problem::UnknownChannel {
                            name: c.to_string(),
                        },
                        did_you_mean(c, m.channels.iter().map(String::as_str)),
                    );
                    ChannelSource::None
                }
            },
            (None, Some(f)) => ChannelSource::Field(Field::from_name(f)),
            (None, None) => ChannelSource::None,
        };
    m.events
        .iter()
        .map(|(name, t)| EventType {
            name: name.clone(),
            requires: t.requires.iter().map(|f| Field::from_name(f)).collect(),
            channel: channel(name, t, d),
        })
        .collect()
}

/// The manifest's facts, each with its slot within its scope.
pub(super) fn facts(ctx: &Context, d: &mut Diagnostics) -> Vec<Fact> {
    let msrc = ctx.manifest_src;
    let mut slots: BTreeMap<bool, usize> = BTreeMap::new();
    let mut facts = Vec::new();
    for (index, (name, f)) in ctx.manifest.facts.iter().enumerate() {
        if *f.scope == RawScope::All {
            let fact = name.clone();
            d.at(msrc, f.scope.pos(), Problem::BadScope { fact });
        }
        // Slots count per wallet, or per customer (where a bad `all` is counted too).
        let slot = slots.entry(*f.scope == RawScope::Wallet).or_insert(0);
        let updates = f
            .updates
            .iter()
            .map(|u| fact_update(ctx, index, name, f, u, d))
            .collect();
        facts.push(Fact {
            name: name.clone(),
            clause: f.clause.clone(),
            scope: (*f.scope).into(),
            slot: *slot,
            kind: f.kind.into(),
            snapshot: f.snapshot.clone(),
            updates,
        });
        *slot += 1;
    }
    facts
}

/// One update of fact `name` (the `index`th), checked against the fact's type.
pub(super) fn fact_update(
    ctx: &Context,
    index: usize,
    name: &str,
    f: &RawFact,
    u: &Sp<RawFactUpdate>,
    d: &mut Diagnostics,
) -> FactUpdate {
    let msrc = ctx.manifest_src;
    let on = ctx.type_mask(&u.on, msrc, d);
    let needs_field = matches!(*u.op, RawFactOp::AddField | RawFactOp::SetField);
    if needs_field != u.field.is_some() {
        let fact = name.to_string();
        let misuse = UpdateMisuse::FieldPresence { fact };
        d.at(msrc, u.op.pos(), Problem::BadUpdate(misuse));
    }
    let field = u.field.as_ref().map(|f| Field::from_name(f));
    // What an event field gives a fact: the engine reads the date of `at` and the decimal
    // of `amount` or of the sum of `face_values`; nothing else updates facts.
    let gives = match field {
        Some(Field::At) => Some(RawFactType::Date),
        Some(Field::Amount | Field::FaceValues) => Some(RawFactType::Decimal),
        _ => None,
    };
    if let (Some(written), Some(field), None) = (&u.field, &field, gives) {
        let misuse = UpdateMisuse::FieldGivesNothing {
            fact: name.to_string(),
            field: field.name().to_string(),
        };
        d.at(msrc, written.pos(), Problem::BadUpdate(misuse));
    }
    let fits = match *u.op {
        RawFactOp::Increment => f.kind == RawFactType::Count,
        RawFactOp::SetTrue | RawFactOp::SetFalse => f.kind == RawFactType::Flag,
        RawFactOp::EarliestDate | RawFactOp::LatestDate => f.kind == RawFactType::Date,
        RawFactOp::AddField => f.kind == RawFactType::Decimal && gives != Some(RawFactType::Date),
        RawFactOp::SetField => gives.is_none_or(|g| g == f.kind),
    };
    if !fits {
        let misuse = UpdateMisuse::WrongType {
            op: u.op.name(),
            fact: name.to_string(),
            ty: f.kind.name(),
        };
        d.at(msrc, u.op.pos(), Problem::BadUpdate(misuse));
    }
    FactUpdate {
        fact: index,
        on,
        op: (*u.op).into(),
        field,
    }
}

/// A working-day calendar file, named as the manifest names its path.
pub(super) fn compile_calendar(
    m: &RawManifest,
    cal: &Parsed<RawCalendar>,
    d: &mut Diagnostics,
) -> Calendar {
    let id = m
        .calendars
        .iter()
        .find(|(_, path)| cal.src.path.ends_with(path.as_str()))
        .map(|(id, _)| id.clone())
        .unwrap_or_default();
    if let Some(declared) = cal.raw.id.as_ref().filter(|declared| ***declared != id) {
        let mismatch = IdMismatch::Calendar {
            declared: declared.to_string(),
            name: id.clone(),
        };
        d.at(&cal.src, declared.pos(), Problem::IdMismatch(mismatch));
    }
    let mut weekend = Vec::new();
    for w in &cal.raw.weekend {
        match parse_weekday(w) {
            Some(day) => weekend.push(day),
            None => {
                let name = w.to_string();
                d.at(&cal.src, w.pos(), Problem::BadWeekday { name });
            }
        }
    }
    let mut holidays = Vec::new();
    for h in &cal.raw.holidays {
        match parse_date(&h.date) {
            Ok(day) => holidays.push(day),
            Err(e) => d.at(&cal.src, h.date.pos(), Problem::BadDate(e)),
        }
    }
    Calendar::new(id, &weekend, holidays)
}

/// The sandbox's limits: the manifest's, defaults where it sets none.
pub(super) fn script_limits(raw: &RawScriptLimits) -> ScriptLimits {
    let default = ScriptLimits::default();
    ScriptLimits {
        operations: raw
            .operations
            .as_deref()
            .copied()
            .unwrap_or(default.operations),
        call_depth: raw
            .call_depth
            .as_deref()
            .copied()
            .unwrap_or(default.call_depth),
        expr_depth: raw
            .expr_depth
            .as_deref()
            .copied()
            .unwrap_or(default.expr_depth),
        string_len: raw
            .string_len
            .as_deref()
            .copied()
            .unwrap_or(default.string_len),
        array_len: raw
            .array_len
            .as_deref()
            .copied()
            .unwrap_or(default.array_len),
        map_len: raw.map_len.as_deref().copied().unwrap_or(default.map_len),
    }
}
