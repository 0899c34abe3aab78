//! The ONTAP REST query language (filters, `fields=`, `order_by`, `max_records` paging) applied
//! to records held as JSON objects, so the ONTAP-shaped endpoints answer like ONTAP does.

use serde_json::{json, Map, Number, Value};
use std::cmp::Ordering;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// ONTAP's code for a query parameter the endpoint does not know ("Unexpected argument").
pub const CODE_UNEXPECTED_ARGUMENT: &str = "262179";
/// ONTAP's code for a query parameter whose value cannot be used ("The value ... is invalid").
pub const CODE_INVALID_VALUE: &str = "262197";
/// ONTAP's code for "entry doesn't exist".
pub const CODE_NOT_FOUND: &str = "4";

/// The deepest dotted path accepted anywhere; deeper names cannot be schema fields, and the bound
/// keeps projection recursion shallow whatever the schema or the query says.
const MAX_DEPTH: usize = 16;

/// Longest piece of user input echoed back in an error message, so a hostile query cannot make
/// the error body as large as itself.
const MAX_ECHO: usize = 200;

/// An ONTAP-style error: HTTP status and the body
/// {"error": {"message", "code", "arguments": [{"code", "message"}], "target"}}.
#[derive(Debug, Clone, PartialEq)]
pub struct RestError {
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong, for people.
    pub message: String,
    /// ONTAP's numeric error code, as a string (`CODE_*`).
    pub code: String,
    /// The parameter or key the error is about, if one is.
    pub target: Option<String>,
    /// The values the message is about (the unknown name, the refused value, the field), in
    /// the order the message names them; each becomes `{"code", "message"}` in the body.
    pub arguments: Vec<String>,
}

impl RestError {
    /// An error with the given status, message, code and target, and no message arguments
    /// (add them with [`RestError::with_arguments`]).
    pub fn new(
        status: u16,
        message: impl Into<String>,
        code: impl Into<String>,
        target: Option<&str>,
    ) -> Self {
        RestError {
            status,
            message: message.into(),
            code: code.into(),
            target: target.map(str::to_string),
            arguments: Vec::new(),
        }
    }

    /// The same error with `arguments` as its message arguments (clipped like messages).
    pub fn with_arguments<S: AsRef<str>>(mut self, arguments: &[S]) -> Self {
        self.arguments = arguments.iter().map(|a| clip(a.as_ref())).collect();
        self
    }

    /// The response body. `arguments` is always an array (empty when the message has none),
    /// each argument carrying the error's code; `target` is left out when there is none.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        error.insert("message".into(), Value::String(self.message.clone()));
        error.insert("code".into(), Value::String(self.code.clone()));
        let arguments = self
            .arguments
            .iter()
            .map(|a| json!({"code": self.code, "message": a}))
            .collect();
        error.insert("arguments".into(), Value::Array(arguments));
        if let Some(target) = &self.target {
            error.insert("target".into(), Value::String(target.clone()));
        }
        json!({ "error": error })
    }

    /// 400 with the given message, code and target.
    pub fn bad_request(
        message: impl Into<String>,
        code: impl Into<String>,
        target: Option<&str>,
    ) -> Self {
        Self::new(400, message, code, target)
    }

    /// 404 with ONTAP's "entry doesn't exist" code; `target` names the key that found nothing.
    pub fn not_found(message: impl Into<String>, target: Option<&str>) -> Self {
        Self::new(404, message, CODE_NOT_FOUND, target)
    }

    /// 400 for a query parameter (a filter field) the endpoint lacks: ONTAP's 262179.
    pub fn unexpected_argument(name: &str) -> Self {
        Self::bad_request(
            format!("Unexpected argument \"{}\".", clip(name)),
            CODE_UNEXPECTED_ARGUMENT,
            Some(name),
        )
        .with_arguments(&[name])
    }

    /// 400 for a parameter the endpoint knows but whose value is unusable: ONTAP's 262197,
    /// with the parameter as the argument (callers that have the value add it).
    pub fn invalid_value(target: &str, message: impl Into<String>) -> Self {
        Self::bad_request(message, CODE_INVALID_VALUE, Some(target)).with_arguments(&[target])
    }

    /// 400 for a value `parameter` cannot take (a name in `fields=` or `order_by=` the records
    /// lack, an unknown `action`), in ONTAP's words: `The value "x" is invalid for field
    /// "fields".`, code 262197, target the parameter, arguments the value and the parameter.
    pub fn value_not_valid(parameter: &str, value: &str) -> Self {
        Self::invalid_value(
            parameter,
            format!(
                "The value \"{}\" is invalid for field \"{parameter}\".",
                clip(value)
            ),
        )
        .with_arguments(&[value, parameter])
    }
}

impl fmt::Display for RestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (code {}, HTTP {})",
            self.message, self.code, self.status
        )
    }
}

impl std::error::Error for RestError {}

/// Cuts user input for echoing in a message, on a character boundary.
fn clip(s: &str) -> String {
    match s.char_indices().nth(MAX_ECHO) {
        Some((at, _)) => format!("{}...", &s[..at]),
        None => s.to_string(),
    }
}

/// What a collection or single-record GET may be asked for.
#[derive(Debug, Clone, Copy)]
pub struct Schema<'a> {
    /// Every field a record can have, as dotted paths of leaves and objects: "id", "node",
    /// "node.name", "data.connection.port", ...
    pub fields: &'a [&'a str],
    /// The fields a record shows when `fields=` is absent (ONTAP shows only the identifying
    /// ones), e.g. ["id", "node", "uuid"]; `_links` is always kept.
    pub default_fields: &'a [&'a str],
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Leaf,
    Object,
}

/// The schema as a lookup table. A field is an object when another field lies under it; the
/// parents of listed fields count as known objects even when not listed themselves.
struct Index<'a> {
    kinds: HashMap<&'a str, Kind>,
}

impl<'a> Index<'a> {
    fn new(schema: &Schema<'a>) -> Self {
        let mut kinds = HashMap::new();
        for &field in schema.fields {
            kinds.entry(field).or_insert(Kind::Leaf);
            for (at, _) in field.match_indices('.') {
                kinds.insert(&field[..at], Kind::Object);
            }
        }
        Index { kinds }
    }

    fn kind(&self, name: &str) -> Option<Kind> {
        if depth(name) > MAX_DEPTH {
            return None;
        }
        self.kinds.get(name).copied()
    }
}

fn depth(name: &str) -> usize {
    name.bytes().filter(|&b| b == b'.').count() + 1
}

/// A number from a record or a filter. Integers stay exact (byte counts pass 2^53); anything
/// else compares as f64.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Num {
    Int(i128),
    Float(f64),
}

impl Num {
    fn from_json(n: &Number) -> Option<Num> {
        if let Some(u) = n.as_u64() {
            Some(Num::Int(i128::from(u)))
        } else if let Some(i) = n.as_i64() {
            Some(Num::Int(i128::from(i)))
        } else {
            n.as_f64().map(Num::Float)
        }
    }

    /// Plain decimal notation only: `f64::from_str` would also take "inf" and "NaN".
    fn parse(s: &str) -> Option<Num> {
        if s.is_empty()
            || !s
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        {
            return None;
        }
        if let Ok(i) = s.parse::<i128>() {
            return Some(Num::Int(i));
        }
        s.parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(Num::Float)
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (a, b) => a.as_f64().partial_cmp(&b.as_f64()),
        }
    }

    fn text(self) -> String {
        match self {
            Num::Int(i) => i.to_string(),
            Num::Float(f) => f.to_string(),
        }
    }
}

/// One side of a filter comparison, kept in every form a record value might need.
#[derive(Debug, Clone)]
struct Operand {
    text: String,
    lower: String,
    num: Option<Num>,
}

impl Operand {
    fn new(text: &str) -> Self {
        Operand {
            text: text.to_string(),
            lower: text.to_lowercase(),
            num: Num::parse(text),
        }
    }

    fn boolean(&self) -> Option<bool> {
        match self.lower.as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        }
    }
}

/// A `*` pattern, lowercased, split at the stars. Matching is greedy leftmost, which is exact
/// for star-only patterns and needs no backtracking.
#[derive(Debug, Clone)]
struct Glob {
    parts: Vec<String>,
}

impl Glob {
    fn matches(&self, s: &str) -> bool {
        let (Some(first), Some(last)) = (self.parts.first(), self.parts.last()) else {
            return false;
        };
        if self.parts.len() < 2 {
            return s == first;
        }
        let Some(rest) = s.strip_prefix(first.as_str()) else {
            return false;
        };
        // Stripping the suffix from what follows the prefix keeps the two from overlapping.
        let Some(mut middle) = rest.strip_suffix(last.as_str()) else {
            return false;
        };
        for part in &self.parts[1..self.parts.len() - 1] {
            if part.is_empty() {
                continue;
            }
            match middle.find(part.as_str()) {
                Some(at) => middle = &middle[at + part.len()..],
                None => return false,
            }
        }
        true
    }
}

#[derive(Debug, Clone)]
enum Test {
    Null,
    Eq(Operand),
    Glob(Glob),
    /// `<` (false) or `<=` (true).
    Below(Operand, bool),
    /// `>` (false) or `>=` (true).
    Above(Operand, bool),
    Range(Operand, Operand),
}

/// One `|` alternative of a filter.
#[derive(Debug, Clone)]
struct Alt {
    negated: bool,
    test: Test,
}

/// A record value at a filter's path, normalised once per record so that thousands of
/// alternatives cost one comparison each.
enum Leaf {
    Missing,
    Str(String),
    Num(Num),
    Bool(bool),
    List(Vec<Leaf>),
    Other,
}

impl Leaf {
    fn of(value: Option<&Value>, in_list: bool) -> Leaf {
        match value {
            None | Some(Value::Null) => Leaf::Missing,
            Some(Value::String(s)) => Leaf::Str(s.to_lowercase()),
            Some(Value::Number(n)) => Num::from_json(n).map_or(Leaf::Other, Leaf::Num),
            Some(Value::Bool(b)) => Leaf::Bool(*b),
            // A list leaf matches when any element does; lists inside lists are not looked into.
            Some(Value::Array(items)) if !in_list => {
                Leaf::List(items.iter().map(|i| Leaf::of(Some(i), true)).collect())
            }
            Some(_) => Leaf::Other,
        }
    }

    fn order(&self, op: &Operand) -> Option<Ordering> {
        match self {
            Leaf::Str(s) => Some(s.as_str().cmp(op.lower.as_str())),
            Leaf::Num(n) => op.num.and_then(|m| n.compare(m)),
            _ => None,
        }
    }
}

impl Test {
    /// The test on a present scalar, or None when the operand cannot apply to it (a word
    /// against a number), so that negating it does not turn the mismatch into a match.
    /// `Query::try_collection` reports such operands instead.
    fn holds(&self, leaf: &Leaf) -> Option<bool> {
        let below = |ord: Ordering, inclusive: bool| {
            ord == Ordering::Less || (inclusive && ord == Ordering::Equal)
        };
        match self {
            Test::Null => Some(false),
            Test::Eq(op) => match leaf {
                Leaf::Str(s) => Some(*s == op.lower),
                Leaf::Num(_) => leaf.order(op).map(|ord| ord == Ordering::Equal),
                Leaf::Bool(b) => op.boolean().map(|o| o == *b),
                _ => None,
            },
            Test::Glob(glob) => match leaf {
                Leaf::Str(s) => Some(glob.matches(s)),
                Leaf::Num(n) => Some(glob.matches(&n.text())),
                Leaf::Bool(b) => Some(glob.matches(if *b { "true" } else { "false" })),
                _ => None,
            },
            Test::Below(op, inclusive) => leaf.order(op).map(|ord| below(ord, *inclusive)),
            Test::Above(op, inclusive) => {
                leaf.order(op).map(|ord| below(ord.reverse(), *inclusive))
            }
            Test::Range(lo, hi) => {
                let lo = leaf.order(lo)?;
                let hi = leaf.order(hi)?;
                Some(lo != Ordering::Less && hi != Ordering::Greater)
            }
        }
    }
}

impl Alt {
    fn matches(&self, leaf: &Leaf) -> bool {
        let positive = match leaf {
            Leaf::Missing => Some(matches!(self.test, Test::Null)),
            // A list is not null even when empty; it matches when any element does.
            Leaf::List(items) => Some(
                !matches!(self.test, Test::Null)
                    && items.iter().any(|i| self.test.holds(i) == Some(true)),
            ),
            _ => self.test.holds(leaf),
        };
        positive.is_some_and(|p| p != self.negated)
    }
}

/// `field=alt|alt|...`: true when any alternative is.
#[derive(Debug, Clone)]
struct Filter {
    field: String,
    alts: Vec<Alt>,
}

impl Filter {
    fn parse(field: &str, value: &str) -> Result<Filter, RestError> {
        let alts = value
            .split('|')
            .map(|alt| parse_alt(field, alt))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter {
            field: field.to_string(),
            alts,
        })
    }

    fn matches(&self, record: &Value) -> bool {
        let leaf = Leaf::of(lookup(record, &self.field), false);
        self.alts.iter().any(|alt| alt.matches(&leaf))
    }

    /// Rejects operands that cannot apply to the values the records hold at this field. Types
    /// come from the data because the schema carries none; a field holding any string accepts
    /// every operand, since strings compare with anything.
    fn check_types(&self, records: &[Value]) -> Result<(), RestError> {
        let (mut strings, mut numbers, mut booleans) = (false, false, false);
        for record in records {
            let mut note = |v: &Value| match v {
                Value::String(_) => strings = true,
                Value::Number(_) => numbers = true,
                Value::Bool(_) => booleans = true,
                _ => {}
            };
            match lookup(record, &self.field) {
                Some(Value::Array(items)) => items.iter().for_each(&mut note),
                Some(v) => note(v),
                None => {}
            }
        }
        if strings || !(numbers || booleans) {
            return Ok(());
        }
        let expected = match (numbers, booleans) {
            (true, true) => "a number, true or false",
            (true, false) => "a number",
            _ => "true or false",
        };
        let fits = |op: &Operand, ordered: bool| {
            (numbers && op.num.is_some()) || (booleans && !ordered && op.boolean().is_some())
        };
        for alt in &self.alts {
            let bad = match &alt.test {
                Test::Null | Test::Glob(_) => None,
                Test::Eq(op) => Some(op).filter(|op| !fits(op, false)),
                Test::Below(op, _) | Test::Above(op, _) => Some(op).filter(|op| !fits(op, true)),
                Test::Range(lo, hi) => [lo, hi].into_iter().find(|op| !fits(op, true)),
            };
            if let Some(op) = bad {
                return Err(RestError::invalid_value(
                    &self.field,
                    format!(
                        "Invalid value \"{}\" in the query for field \"{}\": expected {}.",
                        clip(&op.text),
                        self.field,
                        expected
                    ),
                )
                .with_arguments(&[op.text.as_str(), self.field.as_str()]));
            }
        }
        Ok(())
    }
}

fn parse_alt(field: &str, alt: &str) -> Result<Alt, RestError> {
    let (negated, body) = match alt.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, alt),
    };
    let operand = |text: &str| {
        if text.is_empty() {
            Err(RestError::invalid_value(
                field,
                format!(
                    "Invalid query \"{}\" for field \"{}\": an operator needs a value.",
                    clip(alt),
                    field
                ),
            ))
        } else {
            Ok(Operand::new(text))
        }
    };
    // Two-character operators first, so "<=5" is not read as "<" of "=5".
    let test = if body == "null" {
        Test::Null
    } else if let Some(rest) = body.strip_prefix("<=") {
        Test::Below(operand(rest)?, true)
    } else if let Some(rest) = body.strip_prefix(">=") {
        Test::Above(operand(rest)?, true)
    } else if let Some(rest) = body.strip_prefix('<') {
        Test::Below(operand(rest)?, false)
    } else if let Some(rest) = body.strip_prefix('>') {
        Test::Above(operand(rest)?, false)
    } else if let Some((lo, hi)) = body.split_once("..") {
        Test::Range(operand(lo)?, operand(hi)?)
    } else if body.contains('*') {
        Test::Glob(Glob {
            parts: body.to_lowercase().split('*').map(str::to_string).collect(),
        })
    } else {
        Test::Eq(Operand::new(body))
    };
    Ok(Alt { negated, test })
}

/// The value at a dotted path, if every step is an object holding the next name.
fn lookup<'v>(record: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.')
        .take(MAX_DEPTH)
        .try_fold(record, |value, name| value.as_object()?.get(name))
}

/// The requested paths as a tree; `whole` marks a node whose entire value is shown.
#[derive(Debug, Clone, Default)]
struct Trie {
    whole: bool,
    children: BTreeMap<String, Trie>,
}

impl Trie {
    fn insert(&mut self, path: &str) {
        if depth(path) > MAX_DEPTH {
            return;
        }
        let mut node = self;
        for name in path.split('.') {
            if node.whole {
                return;
            }
            node = node.children.entry(name.to_string()).or_default();
        }
        node.whole = true;
        node.children.clear();
    }

    /// Recursion follows the tree, so it is at most `MAX_DEPTH` deep.
    fn project(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut out = Map::new();
                for (name, child) in &self.children {
                    if let Some(v) = map.get(name) {
                        let shown = if child.whole {
                            v.clone()
                        } else {
                            child.project(v)
                        };
                        out.insert(name.clone(), shown);
                    }
                }
                Value::Object(out)
            }
            // Objects in a list are projected alike; a list in a list is shown whole, so that
            // nesting in the data cannot deepen the recursion.
            Value::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|i| match i {
                        Value::Array(_) => i.clone(),
                        _ => self.project(i),
                    })
                    .collect(),
            ),
            // A null (or any scalar) where an object was expected is shown as it is.
            other => other.clone(),
        }
    }
}

#[derive(Debug, Clone)]
enum Projection {
    All,
    Paths(Trie),
}

#[derive(Debug, Clone)]
struct SortKey {
    field: String,
    descending: bool,
}

/// A record value reduced to what ordering needs; nulls (and missing fields) rank first.
#[derive(Debug)]
enum Rank {
    Null,
    Bool(bool),
    Num(Num),
    Str(String, String),
    Other,
}

impl Rank {
    fn of(value: Option<&Value>) -> Rank {
        match value {
            None | Some(Value::Null) => Rank::Null,
            Some(Value::Bool(b)) => Rank::Bool(*b),
            Some(Value::Number(n)) => Num::from_json(n).map_or(Rank::Other, Rank::Num),
            Some(Value::String(s)) => Rank::Str(s.to_lowercase(), s.clone()),
            Some(_) => Rank::Other,
        }
    }

    fn tier(&self) -> u8 {
        match self {
            Rank::Null => 0,
            Rank::Bool(_) => 1,
            Rank::Num(_) => 2,
            Rank::Str(..) => 3,
            Rank::Other => 4,
        }
    }

    fn compare(&self, other: &Rank) -> Ordering {
        match (self, other) {
            (Rank::Bool(a), Rank::Bool(b)) => a.cmp(b),
            (Rank::Num(a), Rank::Num(b)) => a.compare(*b).unwrap_or(Ordering::Equal),
            // Case-insensitive like the filters, with the exact text breaking ties.
            (Rank::Str(a, a_exact), Rank::Str(b, b_exact)) => {
                a.cmp(b).then_with(|| a_exact.cmp(b_exact))
            }
            _ => self.tier().cmp(&other.tier()),
        }
    }
}

/// A parsed, validated ONTAP query.
#[derive(Debug, Clone)]
pub struct Query {
    /// The pairs as received, for `_links` hrefs.
    pairs: Vec<(String, String)>,
    filters: Vec<Filter>,
    projection: Projection,
    order: Vec<SortKey>,
    max_records: Option<usize>,
    offset: usize,
    return_records: bool,
}

impl Query {
    /// Parses the URL query pairs (already percent-decoded) against `schema`.
    pub fn parse(pairs: &[(String, String)], schema: &Schema) -> Result<Query, RestError> {
        Self::parse_as(pairs, schema, false)
    }

    /// Parses the query of a single-record GET: only `fields` and `return_timeout` apply there.
    /// Without `fields=` the record is shown whole, as ONTAP does for a single record.
    pub fn parse_single(pairs: &[(String, String)], schema: &Schema) -> Result<Query, RestError> {
        Self::parse_as(pairs, schema, true)
    }

    fn parse_as(
        pairs: &[(String, String)],
        schema: &Schema,
        single: bool,
    ) -> Result<Query, RestError> {
        let index = Index::new(schema);
        let mut query = Query {
            pairs: pairs.to_vec(),
            filters: Vec::new(),
            projection: Projection::All,
            order: Vec::new(),
            max_records: None,
            offset: 0,
            return_records: true,
        };
        // Repeated control parameters: the last one wins. Repeated filters are all applied.
        let mut fields = None;
        for (name, value) in pairs {
            match name.as_str() {
                "fields" => fields = Some(value.as_str()),
                "return_timeout" => parse_return_timeout(value)?,
                "max_records" if !single => query.max_records = Some(parse_max_records(value)?),
                "start.offset" if !single => query.offset = parse_offset(value)?,
                "return_records" if !single => query.return_records = parse_return_records(value)?,
                "order_by" if !single => query.order = parse_order(value, &index)?,
                _ => match index.kind(name) {
                    Some(Kind::Leaf) if !single => query.filters.push(Filter::parse(name, value)?),
                    Some(Kind::Object) if !single => return Err(object_field(name, "queried")),
                    // Filters and collection controls mean nothing for a single record.
                    _ => return Err(RestError::unexpected_argument(name)),
                },
            }
        }
        query.projection = match fields {
            Some(list) => parse_fields(list, schema, &index)?,
            None if single => Projection::All,
            None => Projection::Paths(defaults(schema)),
        };
        Ok(query)
    }

    /// The collection response: filter, order, page, project. `base` is the request path, used
    /// for `_links.self` and `_links.next` hrefs.
    ///
    /// An operand that cannot apply to the field's values (`<abc` on a number) matches nothing
    /// here; use [`Query::try_collection`] to answer it with ONTAP's 400 instead.
    pub fn collection(&self, records: Vec<Value>, base: &str) -> Value {
        let mut matched: Vec<Value> = records
            .into_iter()
            .filter(|record| self.filters.iter().all(|f| f.matches(record)))
            .collect();
        let total = matched.len();
        let mut links = Map::new();
        links.insert(
            "self".into(),
            json!({ "href": href(base, &self.pairs, None) }),
        );
        if !self.return_records {
            return json!({ "num_records": total, "_links": links });
        }
        if !self.order.is_empty() {
            matched = self.sort(matched);
        }
        let start = self.offset.min(total);
        let end = self
            .max_records
            .map_or(total, |max| start.saturating_add(max).min(total));
        if end < total {
            links.insert(
                "next".into(),
                json!({ "href": href(base, &self.pairs, Some(end)) }),
            );
        }
        let page: Vec<Value> = matched
            .iter()
            .skip(start)
            .take(end - start)
            .map(|record| self.project(record))
            .collect();
        json!({ "records": page, "num_records": end - start, "_links": links })
    }

    /// [`Query::collection`], but first checks each filter's operands against the values the
    /// records hold: `data.bytes_processed=<abc` is a 400 (code 262197) when that field holds
    /// numbers. The schema has no types, so this is the only place the check can be made.
    pub fn try_collection(&self, records: Vec<Value>, base: &str) -> Result<Value, RestError> {
        for filter in &self.filters {
            filter.check_types(&records)?;
        }
        Ok(self.collection(records, base))
    }

    /// One record projected by `fields=` (for GET of a single record; filters are not allowed
    /// there — parse_single rejects them).
    pub fn project(&self, record: &Value) -> Value {
        match &self.projection {
            Projection::All => record.clone(),
            Projection::Paths(trie) => trie.project(record),
        }
    }

    fn sort(&self, records: Vec<Value>) -> Vec<Value> {
        // Decorate once so the comparator neither walks paths nor lowercases strings.
        let mut keyed: Vec<(Vec<Rank>, Value)> = records
            .into_iter()
            .map(|record| {
                let ranks = self
                    .order
                    .iter()
                    .map(|key| Rank::of(lookup(&record, &key.field)))
                    .collect();
                (ranks, record)
            })
            .collect();
        // Stable, so ties keep the caller's order.
        keyed.sort_by(|(a, _), (b, _)| {
            self.order
                .iter()
                .zip(a.iter().zip(b.iter()))
                .map(|(key, (x, y))| {
                    let ord = x.compare(y);
                    if key.descending {
                        ord.reverse()
                    } else {
                        ord
                    }
                })
                .find(|ord| *ord != Ordering::Equal)
                .unwrap_or(Ordering::Equal)
        });
        keyed.into_iter().map(|(_, record)| record).collect()
    }
}

/// 400 for a filter or `order_by` naming an object: only leaves have comparable values.
fn object_field(name: &str, use_: &str) -> RestError {
    RestError::invalid_value(
        name,
        format!(
            "Field \"{}\" is an object and cannot be {use_}; use one of its fields.",
            clip(name)
        ),
    )
}

fn defaults(schema: &Schema) -> Trie {
    let mut trie = Trie::default();
    for field in schema.default_fields {
        trie.insert(field);
    }
    trie.insert("_links");
    trie
}

fn parse_fields(list: &str, schema: &Schema, index: &Index) -> Result<Projection, RestError> {
    let mut trie = defaults(schema);
    let mut all = false;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match name {
            // No field here is expensive, so `*` and `**` both mean everything.
            "*" | "**" => all = true,
            "_links" => {}
            _ if index.kind(name).is_some() => trie.insert(name),
            _ => return Err(RestError::value_not_valid("fields", name)),
        }
    }
    Ok(if all {
        Projection::All
    } else {
        Projection::Paths(trie)
    })
}

fn parse_order(value: &str, index: &Index) -> Result<Vec<SortKey>, RestError> {
    let mut keys = Vec::new();
    for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        // Field names never hold '+', so a plus that escaped form decoding still separates.
        let mut words = item
            .split(|c: char| c.is_whitespace() || c == '+')
            .filter(|w| !w.is_empty());
        let (Some(field), direction, None) = (words.next(), words.next(), words.next()) else {
            return Err(RestError::invalid_value(
                "order_by",
                format!(
                    "Invalid order_by \"{}\": expected \"field [asc|desc]\".",
                    clip(item)
                ),
            ));
        };
        let descending = match direction {
            None => false,
            Some(d) if d.eq_ignore_ascii_case("asc") => false,
            Some(d) if d.eq_ignore_ascii_case("desc") => true,
            Some(d) => {
                return Err(RestError::invalid_value(
                    "order_by",
                    format!(
                        "Invalid order_by direction \"{}\": expected asc or desc.",
                        clip(d)
                    ),
                ))
            }
        };
        match index.kind(field) {
            Some(Kind::Leaf) => keys.push(SortKey {
                field: field.to_string(),
                descending,
            }),
            Some(Kind::Object) => return Err(object_field(field, "ordered by")),
            None => return Err(RestError::value_not_valid("order_by", field)),
        }
    }
    Ok(keys)
}

fn parse_max_records(value: &str) -> Result<usize, RestError> {
    match value.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(RestError::invalid_value(
            "max_records",
            format!(
                "Invalid value \"{}\" for max_records: expected an integer of at least 1.",
                clip(value)
            ),
        )
        .with_arguments(&[value, "max_records"])),
    }
}

fn parse_offset(value: &str) -> Result<usize, RestError> {
    value.parse::<usize>().map_err(|_| {
        RestError::invalid_value(
            "start.offset",
            format!(
                "Invalid value \"{}\" for start.offset: expected a non-negative integer.",
                clip(value)
            ),
        )
        .with_arguments(&[value, "start.offset"])
    })
}

fn parse_return_records(value: &str) -> Result<bool, RestError> {
    if value.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if value.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(RestError::invalid_value(
            "return_records",
            format!(
                "Invalid value \"{}\" for return_records: expected true or false.",
                clip(value)
            ),
        )
        .with_arguments(&[value, "return_records"]))
    }
}

/// Records are answered from memory at once, so the timeout is only validated.
fn parse_return_timeout(value: &str) -> Result<(), RestError> {
    match value.parse::<u32>() {
        Ok(n) if n <= 120 => Ok(()),
        _ => Err(RestError::invalid_value(
            "return_timeout",
            format!(
                "Invalid value \"{}\" for return_timeout: expected an integer from 0 to 120.",
                clip(value)
            ),
        )
        .with_arguments(&[value, "return_timeout"])),
    }
}

/// `base?query`, the query re-encoded from `pairs`; with `offset`, any `start.offset` is replaced
/// by that one, placed last.
fn href(base: &str, pairs: &[(String, String)], offset: Option<usize>) -> String {
    let offset = offset.map(|n| ("start.offset".to_string(), n.to_string()));
    let mut out = base.to_string();
    let kept = pairs
        .iter()
        .filter(|(name, _)| offset.is_none() || name != "start.offset")
        .chain(offset.iter());
    for (i, (name, value)) in kept.enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        encode(name, &mut out);
        out.push('=');
        encode(value, &mut out);
    }
    out
}

/// Percent-encodes all but unreserved characters and the few that read well in ONTAP hrefs.
/// Spaces become %20, never `+`, so no decoder can take them for a literal plus.
fn encode(s: &str, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~!*,:/@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: &str = "/api/protocols/ndmp/sessions";
    const FIELDS: &[&str] = &[
        "id",
        "uuid",
        "node",
        "node.name",
        "node.uuid",
        "client_address",
        "data_path",
        "encrypted",
        "data",
        "data.state",
        "data.operation",
        "data.bytes_processed",
        "data.connection",
        "data.connection.type",
        "data.connection.port",
        "mover",
        "mover.state",
        "mover.bytes_moved",
    ];
    const DEFAULTS: &[&str] = &["id", "node", "uuid"];
    const N: u64 = 30;
    /// Mixed case on purpose: string matching is case-insensitive.
    const STATES: [&str; 4] = ["active", "IDLE", "halted", "listen"];

    fn schema() -> Schema<'static> {
        Schema {
            fields: FIELDS,
            default_fields: DEFAULTS,
        }
    }

    fn state_of(i: u64) -> Option<&'static str> {
        (!i.is_multiple_of(7)).then(|| STATES[(i % 4) as usize])
    }

    fn bytes_processed(i: u64) -> Option<u64> {
        (!i.is_multiple_of(5)).then_some(i * 1000)
    }

    /// Session `i`, 1-based. Some fields are JSON null, `data_path` is missing for some.
    fn record(i: u64) -> Value {
        let mut r = json!({
            "id": i,
            "uuid": format!("5e55{i:04x}-0000-4000-8000-0000000000{i:02x}"),
            "node": {
                "name": if i % 2 == 1 { "Node-A" } else { "node-b" },
                "uuid": format!("ee00{:04x}-0000-4000-8000-000000000000", i % 2),
            },
            "client_address": format!("10.0.{}.{}", i % 3, i),
            "encrypted": i.is_multiple_of(4),
            "data": {
                "state": state_of(i),
                "operation": match i % 3 { 0 => Some("backup"), 1 => Some("recover"), _ => None },
                "bytes_processed": bytes_processed(i),
                "connection": {
                    "type": if i.is_multiple_of(2) { "tcp" } else { "local" },
                    "port": (i.is_multiple_of(2)).then_some(10000 + i),
                },
            },
            "mover": {
                "state": if i.is_multiple_of(2) { "active" } else { "idle" },
                "bytes_moved": i * 1_000_000_000_000,
            },
            "_links": { "self": { "href": format!("{BASE}/{i}") } },
        });
        match i % 3 {
            0 => r["data_path"] = json!(format!("/srv/vol{i}")),
            1 => r["data_path"] = json!(format!("/export/ABCdata{i}/x")),
            _ if i.is_multiple_of(2) => r["data_path"] = Value::Null,
            _ => {}
        }
        r
    }

    fn records() -> Vec<Value> {
        (1..=N).map(record).collect()
    }

    fn decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).unwrap()
    }

    /// A raw query string as a server would hand it over: split, then percent-decoded.
    fn pairs(q: &str) -> Vec<(String, String)> {
        q.split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (decode(k), decode(v))
            })
            .collect()
    }

    fn get(q: &str) -> Value {
        let query = Query::parse(&pairs(q), &schema()).unwrap_or_else(|e| panic!("{q}: {e}"));
        query
            .try_collection(records(), BASE)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
    }

    fn parse_err(q: &str) -> RestError {
        Query::parse(&pairs(q), &schema()).expect_err(q)
    }

    fn ids(body: &Value) -> Vec<u64> {
        body["records"]
            .as_array()
            .expect("records")
            .iter()
            .map(|r| r["id"].as_u64().expect("id"))
            .collect()
    }

    fn expect(q: &str, keep: impl Fn(u64) -> bool) {
        let body = get(q);
        let want: Vec<u64> = (1..=N).filter(|&i| keep(i)).collect();
        assert!(
            !want.is_empty() && want.len() < N as usize,
            "{q}: weak test"
        );
        assert_eq!(ids(&body), want, "{q}");
        assert_eq!(body["num_records"], json!(want.len()), "{q}");
    }

    fn assert_error(e: &RestError, status: u16, code: &str, target: &str) {
        assert_eq!(
            (e.status, e.code.as_str(), e.target.as_deref()),
            (status, code, Some(target)),
            "{e}"
        );
        assert_eq!(e.body()["error"]["code"], json!(code));
        assert_eq!(e.body()["error"]["target"], json!(target));
    }

    #[test]
    fn exact_strings_ignore_case() {
        expect("node.name=node-a", |i| i % 2 == 1);
        expect("node.name=NODE-B", |i| i.is_multiple_of(2));
        expect("data.state=idle", |i| state_of(i) == Some("IDLE"));
        expect("client_address=10.0.1.4", |i| i == 4);
    }

    #[test]
    fn exact_numbers_and_booleans() {
        expect("id=12", |i| i == 12);
        expect("data.bytes_processed=7000", |i| i == 7);
        expect("data.bytes_processed=7e3", |i| i == 7);
        expect("mover.bytes_moved=3000000000000", |i| i == 3);
        expect("encrypted=true", |i| i.is_multiple_of(4));
        expect("encrypted=FALSE", |i| i % 4 != 0);
    }

    #[test]
    fn negation_includes_records_without_the_field() {
        expect("data.state=!active", |i| state_of(i) != Some("active"));
        expect("encrypted=!true", |i| i % 4 != 0);
        expect("id=!1", |i| i != 1);
    }

    #[test]
    fn alternatives_each_with_their_own_operator() {
        expect("id=3|5|29", |i| [3, 5, 29].contains(&i));
        expect("data.state=halted|listen", |i| {
            matches!(state_of(i), Some("halted" | "listen"))
        });
        expect("id=<3|>28", |i| !(3..=28).contains(&i));
        expect("data.state=active|!halted", |i| {
            state_of(i) != Some("halted")
        });
        expect("data.bytes_processed=null|1000..2000", |i| {
            i <= 2 || i.is_multiple_of(5)
        });
    }

    #[test]
    fn wildcards() {
        expect("data_path=/srv/*", |i| i.is_multiple_of(3));
        expect("data_path=*/x", |i| i % 3 == 1);
        expect("data_path=*abc*", |i| i % 3 == 1);
        expect("data_path=/EXPORT/*data1*/*", |i| {
            i % 3 == 1 && (i == 1 || (10..20).contains(&i))
        });
        expect("client_address=10.0.*.2*", |i| {
            i == 2 || (20..30).contains(&i)
        });
        expect("node.name=*-a", |i| i % 2 == 1);
        // On numbers a pattern matches the decimal text.
        expect("id=2*", |i| i == 2 || (20..30).contains(&i));
    }

    #[test]
    fn glob_prefix_and_suffix_do_not_overlap() {
        let Test::Glob(glob) = parse_alt("f", "a*a").unwrap().test else {
            panic!("not a glob");
        };
        assert!(!glob.matches("a"));
        assert!(glob.matches("aa"));
        assert!(glob.matches("abca"));
        assert!(!glob.matches("ab"));
    }

    #[test]
    fn comparisons_on_numbers_and_strings() {
        expect("data.bytes_processed=<5000", |i| i < 5);
        expect("data.bytes_processed=<=5000", |i| i < 5);
        expect("data.bytes_processed=>=28000", |i| i == 28 || i == 29);
        expect("id=>27", |i| i > 27);
        expect("id=<=2", |i| i <= 2);
        expect("data.connection.port=>10025", |i| {
            i.is_multiple_of(2) && i > 25
        });
        expect("mover.bytes_moved=>29500000000000", |i| i == 30);
        // Strings compare lexicographically, ignoring case.
        expect("node.name=<node-b", |i| i % 2 == 1);
        expect("node.name=>=NODE-B", |i| i.is_multiple_of(2));
    }

    #[test]
    fn ranges_are_inclusive() {
        expect("id=5..8", |i| (5..=8).contains(&i));
        expect("mover.bytes_moved=2000000000000..4000000000000", |i| {
            (2..=4).contains(&i)
        });
        expect("data.state=a..i", |i| {
            matches!(state_of(i), Some("active" | "halted"))
        });
        expect("id=!5..28", |i| !(5..=28).contains(&i));
    }

    #[test]
    fn null_matches_missing_and_json_null() {
        expect("data.bytes_processed=null", |i| i.is_multiple_of(5));
        expect("data.bytes_processed=!null", |i| i % 5 != 0);
        expect("data_path=null", |i| i % 3 == 2);
        expect("data_path=!null", |i| i % 3 != 2);
        expect("data.state=null", |i| i.is_multiple_of(7));
    }

    #[test]
    fn filters_are_anded_and_see_unprojected_fields() {
        expect("node.name=node-a&data.operation=backup", |i| {
            i % 2 == 1 && i.is_multiple_of(3)
        });
        expect("id=>10&id=<15", |i| i > 10 && i < 15);
        let body = get("fields=uuid&data.state=halted");
        let want: Vec<u64> = (1..=N).filter(|&i| state_of(i) == Some("halted")).collect();
        assert_eq!(ids(&body), want);
        for r in body["records"].as_array().unwrap() {
            assert!(r.get("data").is_none(), "data was not requested: {r}");
        }
    }

    fn keys(r: &Value) -> Vec<&str> {
        r.as_object().unwrap().keys().map(String::as_str).collect()
    }

    #[test]
    fn default_fields_are_the_identifying_ones() {
        let body = get("id=3");
        let r = &body["records"][0];
        assert_eq!(keys(r), ["_links", "id", "node", "uuid"]);
        assert_eq!(r["node"], record(3)["node"]);
        assert_eq!(r["_links"]["self"]["href"], json!(format!("{BASE}/3")));
    }

    #[test]
    fn fields_leaf_gives_only_its_path() {
        let body = get("fields=data.state,mover.bytes_moved&id=6|7");
        let r = &body["records"];
        assert_eq!(
            keys(&r[0]),
            ["_links", "data", "id", "mover", "node", "uuid"]
        );
        assert_eq!(r[0]["data"], json!({"state": "halted"}));
        assert_eq!(r[0]["mover"], json!({"bytes_moved": 6_000_000_000_000u64}));
        assert_eq!(r[1]["data"], json!({"state": null}));
        // A missing field is left out, a null one is shown.
        let body = get("fields=data_path&id=4|5|8");
        assert_eq!(body["records"][0]["data_path"], json!("/export/ABCdata4/x"));
        assert!(body["records"][1].get("data_path").is_none());
        assert_eq!(body["records"][2]["data_path"], Value::Null);
    }

    #[test]
    fn fields_object_gives_the_whole_object() {
        let body = get("fields=data.connection&id=2");
        assert_eq!(
            body["records"][0]["data"],
            json!({"connection": {"type": "tcp", "port": 10002}})
        );
        let body = get("fields=data,data.state&id=2");
        assert_eq!(body["records"][0]["data"], record(2)["data"]);
    }

    #[test]
    fn fields_star_gives_everything() {
        for q in ["fields=*", "fields=**", "fields=id,*", "fields=%2A%2A"] {
            let body = get(q);
            assert_eq!(body["records"], Value::Array(records()), "{q}");
            assert_eq!(body["num_records"], json!(N), "{q}");
        }
    }

    #[test]
    fn order_by_one_field_nulls_first() {
        let body = get("order_by=data.bytes_processed");
        let nulls: Vec<u64> = (1..=N).filter(|i| i.is_multiple_of(5)).collect();
        let values: Vec<u64> = (1..=N).filter(|i| i % 5 != 0).collect();
        assert_eq!(ids(&body), [nulls.clone(), values.clone()].concat());
        for q in [
            "order_by=data.bytes_processed%20desc",
            "order_by=data.bytes_processed+DESC",
            "order_by=data.bytes_processed%2Bdesc",
        ] {
            let body = get(q);
            let desc: Vec<u64> = values.iter().rev().copied().collect();
            // Descending reverses the order, so nulls go last (and keep the caller's order).
            assert_eq!(ids(&body), [desc, nulls.clone()].concat(), "{q}");
        }
    }

    #[test]
    fn order_by_several_fields() {
        let body = get("order_by=node.name desc,id desc");
        let evens = (1..=N).rev().filter(|i| i.is_multiple_of(2));
        let odds = (1..=N).rev().filter(|i| i % 2 == 1);
        assert_eq!(ids(&body), evens.chain(odds).collect::<Vec<_>>());

        let body = get("order_by=data.state asc, id desc&id=<=12");
        // null, active, halted, IDLE (case-insensitive), listen; ties by id descending.
        assert_eq!(ids(&body), [7, 12, 8, 4, 10, 6, 2, 9, 5, 1, 11, 3]);
    }

    #[test]
    fn no_order_by_keeps_the_callers_order() {
        let mut rs = records();
        rs.reverse();
        let q = Query::parse(&pairs("node.name=node-a"), &schema()).unwrap();
        let body = q.collection(rs, BASE);
        assert_eq!(
            ids(&body),
            (1..=N).rev().filter(|i| i % 2 == 1).collect::<Vec<_>>()
        );
    }

    /// Follows `_links.next` from `first` to the end; returns every page's ids.
    fn pages(first: &str) -> Vec<Vec<u64>> {
        let mut href = format!("{BASE}?{first}");
        let mut out = Vec::new();
        for _ in 0..=N {
            let q = href
                .strip_prefix(&format!("{BASE}?"))
                .expect("href keeps base");
            let body = get(q);
            assert_eq!(body["_links"]["self"]["href"], json!(href));
            assert_eq!(body["num_records"], json!(ids(&body).len()));
            out.push(ids(&body));
            match body["_links"]["next"]["href"].as_str() {
                Some(next) => {
                    assert_eq!(next.matches("start.offset=").count(), 1, "{next}");
                    href = next.to_string();
                }
                None => return out,
            }
        }
        panic!("paging did not end");
    }

    #[test]
    fn paging_visits_everything_once_in_order() {
        let got = pages("max_records=7");
        assert_eq!(
            got.iter().map(Vec::len).collect::<Vec<_>>(),
            [7, 7, 7, 7, 2]
        );
        assert_eq!(got.concat(), (1..=N).collect::<Vec<_>>());

        let got = pages("node.name=node-a&order_by=id%20desc&max_records=4&fields=data.state");
        assert_eq!(
            got.concat(),
            (1..=N).rev().filter(|i| i % 2 == 1).collect::<Vec<_>>()
        );
        assert!(got.iter().all(|p| p.len() <= 4));

        // Exactly divisible: no trailing empty page.
        let got = pages("max_records=10");
        assert_eq!(got.len(), 3);
        assert_eq!(pages("max_records=100"), [(1..=N).collect::<Vec<_>>()]);
    }

    #[test]
    fn next_href_is_the_same_query_with_the_offset_replaced() {
        let body = get("data.state=active|halted&start.offset=1&max_records=2&order_by=id+desc");
        assert_eq!(
            body["_links"]["self"]["href"],
            json!(format!(
                "{BASE}?data.state=active%7Chalted&start.offset=1&max_records=2&order_by=id%20desc"
            ))
        );
        assert_eq!(
            body["_links"]["next"]["href"],
            json!(format!(
                "{BASE}?data.state=active%7Chalted&max_records=2&order_by=id%20desc&start.offset=3"
            ))
        );
        assert_eq!(get("").get("_links").unwrap()["self"]["href"], json!(BASE));
    }

    #[test]
    fn start_offset_alone() {
        let body = get("start.offset=28");
        assert_eq!(ids(&body), [29, 30]);
        assert!(body["_links"].get("next").is_none());
        let body = get("start.offset=99");
        assert_eq!(ids(&body), Vec::<u64>::new());
        assert_eq!(body["num_records"], json!(0));
    }

    #[test]
    fn return_records_false_counts_matches() {
        let body = get("return_records=false&node.name=node-b&max_records=2");
        assert_eq!(
            body,
            json!({"num_records": 15, "_links": {"self": {"href":
                format!("{BASE}?return_records=false&node.name=node-b&max_records=2")}}})
        );
        let body = get("return_records=true&max_records=3");
        assert_eq!(ids(&body), [1, 2, 3]);
        assert_eq!(body["num_records"], json!(3));
    }

    #[test]
    fn return_timeout_is_validated_only() {
        for good in ["0", "15", "120"] {
            assert_eq!(
                get(&format!("return_timeout={good}"))["num_records"],
                json!(N)
            );
            Query::parse_single(&pairs(&format!("return_timeout={good}")), &schema()).unwrap();
        }
        for bad in ["121", "-1", "x", "", "1.5"] {
            let e = parse_err(&format!("return_timeout={bad}"));
            assert_error(&e, 400, "262197", "return_timeout");
        }
    }

    #[test]
    fn errors_for_unknown_names() {
        let e = parse_err("bogus=1");
        assert_error(&e, 400, "262179", "bogus");
        assert_eq!(
            e.body(),
            json!({"error": {
                "message": "Unexpected argument \"bogus\".",
                "code": "262179",
                "arguments": [{"code": "262179", "message": "bogus"}],
                "target": "bogus",
            }})
        );
        assert_error(&parse_err("data.nope=1"), 400, "262179", "data.nope");
        let e = parse_err("fields=id,data.nope");
        assert_error(&e, 400, "262197", "fields");
        assert_eq!(
            e.body(),
            json!({"error": {
                "message": "The value \"data.nope\" is invalid for field \"fields\".",
                "code": "262197",
                "arguments": [
                    {"code": "262197", "message": "data.nope"},
                    {"code": "262197", "message": "fields"},
                ],
                "target": "fields",
            }})
        );
        assert_error(
            &parse_err("order_by=id,nope%20desc"),
            400,
            "262197",
            "order_by",
        );
        let deep = vec!["a"; 20].join(".");
        assert_error(&parse_err(&format!("{deep}=1")), 400, "262179", &deep);
    }

    #[test]
    fn errors_for_bad_values() {
        assert_error(&parse_err("node=x"), 400, "262197", "node");
        assert_error(
            &parse_err("data.connection=!null"),
            400,
            "262197",
            "data.connection",
        );
        assert_error(&parse_err("order_by=node"), 400, "262197", "node");
        assert_error(
            &parse_err("order_by=id sideways"),
            400,
            "262197",
            "order_by",
        );
        assert_error(
            &parse_err("order_by=id asc desc"),
            400,
            "262197",
            "order_by",
        );
        for bad in ["0", "x", "-1", "", "1.0"] {
            assert_error(
                &parse_err(&format!("max_records={bad}")),
                400,
                "262197",
                "max_records",
            );
        }
        for bad in ["yes", "", "1"] {
            assert_error(
                &parse_err(&format!("return_records={bad}")),
                400,
                "262197",
                "return_records",
            );
        }
        assert_error(&parse_err("start.offset=-3"), 400, "262197", "start.offset");
        // Operators without an operand are malformed whatever the field holds.
        for bad in ["<", ">=", "5..", "..5", "1|<="] {
            assert_error(&parse_err(&format!("id={bad}")), 400, "262197", "id");
        }
    }

    #[test]
    fn errors_for_operands_of_the_wrong_type() {
        let cases: [(&str, &str, &[u64]); 6] = [
            ("data.bytes_processed=<abc", "data.bytes_processed", &[]),
            ("id=5..z", "id", &[]),
            ("id=seven", "id", &[]),
            ("id=1|!x", "id", &[1]),
            ("encrypted=maybe", "encrypted", &[]),
            ("encrypted=>true", "encrypted", &[]),
        ];
        for (q, target, lenient) in cases {
            let query = Query::parse(&pairs(q), &schema()).unwrap();
            let e = query.try_collection(records(), BASE).expect_err(q);
            assert_error(&e, 400, "262197", target);
            assert!(e.message.contains(target), "{e}");
            // The infallible form lets such an operand match nothing, negated or not.
            assert_eq!(ids(&query.collection(records(), BASE)), lenient, "{q}");
        }
        // A field holding strings takes any operand; one holding nothing yet cannot be judged.
        expect("client_address=>10.0.1", |i| i % 3 != 0);
        let query = Query::parse(&pairs("id=<abc"), &schema()).unwrap();
        assert_eq!(
            query.try_collection(Vec::new(), BASE).unwrap()["num_records"],
            json!(0)
        );
    }

    #[test]
    fn single_record_queries() {
        let e = Query::parse_single(&pairs("data.state=active"), &schema()).expect_err("filter");
        assert_error(&e, 400, "262179", "data.state");
        for control in [
            "max_records=1",
            "order_by=id",
            "return_records=false",
            "start.offset=1",
        ] {
            let e = Query::parse_single(&pairs(control), &schema()).expect_err(control);
            assert_eq!(e.code, "262179", "{control}");
        }
        let whole = Query::parse_single(&[], &schema()).unwrap();
        assert_eq!(whole.project(&record(9)), record(9));
        let some = Query::parse_single(&pairs("fields=data.bytes_processed"), &schema()).unwrap();
        assert_eq!(
            some.project(&record(9)),
            json!({"id": 9, "uuid": record(9)["uuid"], "node": record(9)["node"],
                   "data": {"bytes_processed": 9000}, "_links": record(9)["_links"]})
        );
        assert_error(
            &Query::parse_single(&pairs("fields=nope"), &schema()).expect_err("nope"),
            400,
            "262197",
            "fields",
        );
    }

    #[test]
    fn not_found_body() {
        let e = RestError::not_found("entry doesn't exist", Some("id"));
        assert_eq!(e.status, 404);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "entry doesn't exist", "code": "4",
                             "arguments": [], "target": "id"}})
        );
        let e = RestError::bad_request("nope", "1", None);
        assert_eq!(
            e.body(),
            json!({"error": {"message": "nope", "code": "1", "arguments": []}})
        );
    }

    #[test]
    fn huge_queries_stay_linear() {
        let many = (1..=10_000)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join("|");
        assert_eq!(get(&format!("id={many}"))["num_records"], json!(N));
        let stars = "*".repeat(10_000);
        expect(&format!("data_path={stars}"), |i| i % 3 != 2);
        let pipes = "|".repeat(10_000);
        assert_eq!(get(&format!("data.state={pipes}"))["num_records"], json!(0));
        let long = "x".repeat(100_000);
        let e = parse_err(&format!("max_records={long}"));
        assert!(e.message.len() < 400, "echo is clipped");
    }

    proptest! {
        #[test]
        fn arbitrary_values_never_panic(
            value in "[a-zA-Z0-9!|*<>=.,_ \u{1c4}\u{130}-]{0,24}",
            field in prop::sample::select(FIELDS),
        ) {
            for q in [
                vec![(field.to_string(), value.clone())],
                vec![("fields".to_string(), value.clone())],
                vec![("order_by".to_string(), value.clone())],
                vec![
                    ("max_records".to_string(), value.clone()),
                    ("start.offset".to_string(), value.clone()),
                ],
            ] {
                if let Ok(query) = Query::parse(&q, &schema()) {
                    let _ = query.try_collection(records(), BASE);
                    let _ = query.collection(records(), BASE);
                }
                let _ = Query::parse_single(&q, &schema());
            }
        }
    }
}
